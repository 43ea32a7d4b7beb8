package consortium_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/consortium"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/fabric"
)

var threeOrgs = []string{"TaniMSP", "BankMSP", "DistributorMSP"}

func mustInit(t *testing.T) *consortium.Consortium {
	t.Helper()
	c, err := consortium.Init(consortium.InitConfig{Dir: t.TempDir(), Orgs: threeOrgs})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	return c
}

func memberIDs(t *testing.T, c *consortium.Consortium) []string {
	t.Helper()
	ms, err := c.Members()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.MSPID)
	}
	return ids
}

func TestInit(t *testing.T) {
	c := mustInit(t)
	t.Run("Members", func(t *testing.T) {
		if got, want := memberIDs(t, c), []string{"BankMSP", "DistributorMSP", "TaniMSP"}; !slices.Equal(got, want) {
			t.Errorf("got members %v, want %v", got, want)
		}
		if c.EndorsementPolicy != devnet.MajorityPolicy(threeOrgs) {
			t.Errorf("got policy %s, want the majority", c.EndorsementPolicy)
		}
	})
	t.Run("GenesisBlockIsAChannelConfig", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(c.Dir, "channel-artifacts", "tani.block"))
		if err != nil {
			t.Fatal(err)
		}
		var block cb.Block
		if err := proto.Unmarshal(b, &block); err != nil {
			t.Fatal(err)
		}
		if block.Header.Number != 0 || len(block.Data.Data) != 1 {
			t.Errorf("got block %d with %d envelopes, want block 0 with one", block.Header.Number, len(block.Data.Data))
		}
	})
	t.Run("ErrExists", func(t *testing.T) {
		if _, err := consortium.Init(consortium.InitConfig{Dir: c.Dir, Orgs: threeOrgs}); err == nil || !strings.Contains(err.Error(), "already holds a consortium") {
			t.Errorf("got %v, want a refusal to overwrite", err)
		}
	})
	t.Run("ReloadsManifest", func(t *testing.T) {
		got, err := consortium.Load(c.Dir)
		if err != nil || len(got.Orgs) != 3 || got.Channel != "tani" {
			t.Errorf("got %+v, %v, want the three-org tani consortium", got, err)
		}
	})
	t.Run("UsableByTheDevnet", func(t *testing.T) {
		// The devnet started on the consortium directory serves the
		// consortium's identities: its admin can register a log.
		cc, err := chaincode.New()
		if err != nil {
			t.Fatal(err)
		}
		n := devnettest.MustStartConfig(t, devnet.Config{Dir: c.Dir}, devnet.Chaincode{Name: c.Chaincode, Policy: c.EndorsementPolicy, CC: cc})
		cert, key := c.AdminPaths("BankMSP")
		ci := n.ConnectionInfo()
		fc, err := fabric.Dial(fabric.Config{Endpoint: ci.Endpoint, ServerName: ci.ServerName, TLSCACert: c.TLSCAPath("TaniMSP"),
			MSPID: "BankMSP", Cert: cert, Key: key, Channel: c.Channel, Chaincode: c.Chaincode}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer fc.Close()
		if err := fc.RegisterLog(context.Background(), "consortium.example/log", "consortium.example/log+0a1b2c3d+AQID"); err == nil || !strings.Contains(err.Error(), "invalid public key") {
			// Reaching the chaincode's own validation proves the devnet
			// accepted the consortium's admin as an admin of BankMSP.
			t.Errorf("got %v, want the chaincode's key validation error", err)
		}
	})
}

func TestAddOrg(t *testing.T) {
	t.Run("OKWithMajority", func(t *testing.T) {
		c := mustInit(t)
		before, err := c.Config()
		if err != nil {
			t.Fatal(err)
		}
		u, err := c.AddOrg(consortium.AddOrgConfig{MSPID: "CoopMSP", Signers: []string{"TaniMSP", "BankMSP"}})
		if err != nil {
			t.Fatalf("add org: %v", err)
		}
		if got := memberIDs(t, c); !slices.Contains(got, "CoopMSP") || len(got) != 4 {
			t.Errorf("got members %v, want four including CoopMSP", got)
		}
		update, sigs := readUpdate(t, u.EnvelopePath)
		if err := consortium.VerifyAdminsMajority(before, update, sigs); err != nil {
			t.Errorf("the written envelope does not satisfy MAJORITY Admins: %v", err)
		}
		if _, err := os.Stat(filepath.Join(c.Dir, "connection-CoopMSP.json")); err != nil {
			t.Errorf("no connection profile for the new organization: %v", err)
		}
	})
	t.Run("ErrMinority", func(t *testing.T) {
		c := mustInit(t)
		_, err := c.AddOrg(consortium.AddOrgConfig{MSPID: "CoopMSP", Signers: []string{"TaniMSP", "TaniMSP"}})
		if err == nil || !strings.Contains(err.Error(), "needs signatures from 2 of the 3 member admins, got 1") {
			t.Errorf("got %v, want a majority error", err)
		}
		if got := memberIDs(t, c); slices.Contains(got, "CoopMSP") {
			t.Errorf("got members %v after a rejected update, want unchanged", got)
		}
	})
	t.Run("ErrSignerNotMember", func(t *testing.T) {
		c := mustInit(t)
		_, err := c.AddOrg(consortium.AddOrgConfig{MSPID: "CoopMSP", Signers: []string{"TaniMSP", "EvilMSP"}})
		if err == nil || !strings.Contains(err.Error(), "signer EvilMSP is not a member") {
			t.Errorf("got %v, want a non-member error", err)
		}
	})
	t.Run("ErrAlreadyMember", func(t *testing.T) {
		c := mustInit(t)
		_, err := c.AddOrg(consortium.AddOrgConfig{MSPID: "BankMSP", Signers: threeOrgs})
		if err == nil || !strings.Contains(err.Error(), "already a member") {
			t.Errorf("got %v, want an already-member error", err)
		}
	})
}

func TestVerifyAdminsMajority(t *testing.T) {
	c := mustInit(t)
	config, err := c.Config()
	if err != nil {
		t.Fatal(err)
	}
	sign := func(t *testing.T, mspID, role string, update []byte) *cb.ConfigSignature {
		t.Helper()
		cert, key := c.AdminPaths(mspID)
		if role == "client" {
			cert, key = c.ClientPaths(mspID)
		}
		id := &configtx.SigningIdentity{Certificate: mustCert(t, cert), PrivateKey: mustKey(t, key), MSPID: mspID}
		s, err := id.CreateConfigSignature(update)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	update := []byte("an update")
	t.Run("OK", func(t *testing.T) {
		if err := consortium.VerifyAdminsMajority(config, update, []*cb.ConfigSignature{sign(t, "TaniMSP", "admin", update), sign(t, "DistributorMSP", "admin", update)}); err != nil {
			t.Errorf("got %v, want two admin signatures accepted", err)
		}
	})
	t.Run("ErrClientIsNotAdmin", func(t *testing.T) {
		err := consortium.VerifyAdminsMajority(config, update, []*cb.ConfigSignature{sign(t, "TaniMSP", "admin", update), sign(t, "BankMSP", "client", update)})
		if err == nil || !strings.Contains(err.Error(), "is not an admin") {
			t.Errorf("got %v, want the client signature refused", err)
		}
	})
	t.Run("ErrSignedAnotherUpdate", func(t *testing.T) {
		err := consortium.VerifyAdminsMajority(config, update, []*cb.ConfigSignature{sign(t, "TaniMSP", "admin", update), sign(t, "BankMSP", "admin", []byte("other"))})
		if err == nil || !strings.Contains(err.Error(), "does not verify over this update") {
			t.Errorf("got %v, want the mismatched signature refused", err)
		}
	})
}

func readUpdate(t *testing.T, path string) ([]byte, []*cb.ConfigSignature) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env cb.Envelope
	var payload cb.Payload
	var cue cb.ConfigUpdateEnvelope
	if err := proto.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(env.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(payload.Data, &cue); err != nil {
		t.Fatal(err)
	}
	if len(env.Signature) == 0 || !bytes.Contains(payload.Header.SignatureHeader, []byte("TaniMSP")) && !bytes.Contains(payload.Header.SignatureHeader, []byte("BankMSP")) {
		t.Errorf("envelope is not signed by a signing admin")
	}
	return cue.ConfigUpdate, cue.Signatures
}

func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustKey(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCertificates checks the material `tani network init` and `add-org`
// write as a bank's SDK and Fabric's own nodes would: each peer's TLS
// certificate verifies for serverAuth, against the TLS CA in the
// organization's connection profile, under the host name of its endpoint
// and the extra hosts; users' TLS certificates for clientAuth; signing
// certificates as Fabric's MSP verifies them (Go's default, serverAuth).
func TestCertificates(t *testing.T) {
	hosts := []string{"peers.tani.example", "192.0.2.10"}
	c, err := consortium.Init(consortium.InitConfig{Dir: t.TempDir(), Orgs: threeOrgs, Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range c.Orgs {
		t.Run(o.MSPID, func(t *testing.T) {
			checkOrgCertificates(t, c, o, filepath.Join("peers", "peer0"), hosts, true)
		})
	}
	t.Run(c.Orderer.MSPID, func(t *testing.T) {
		checkOrgCertificates(t, c, c.Orderer, filepath.Join("orderers", "orderer0"), hosts, false)
	})
	t.Run("AddedOrg", func(t *testing.T) {
		u, err := c.AddOrg(consortium.AddOrgConfig{MSPID: "CoopMSP", Signers: []string{"TaniMSP", "BankMSP"}, Hosts: []string{"coop.example"}})
		if err != nil {
			t.Fatal(err)
		}
		checkOrgCertificates(t, c, u.Org, filepath.Join("peers", "peer0"), []string{"coop.example"}, true)
	})
}

func checkOrgCertificates(t *testing.T, c *consortium.Consortium, o consortium.Org, node string, hosts []string, profile bool) {
	t.Helper()
	dir := filepath.Join(c.Dir, "crypto", o.MSPID)
	tlsCA := x509.NewCertPool()
	if profile {
		// What an SDK user has: the connection profile's TLS CA.
		b, err := os.ReadFile(filepath.Join(c.Dir, "connection-"+o.MSPID+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Peers map[string]struct {
				URL        string `json:"url"`
				TLSCACerts struct {
					PEM string `json:"pem"`
				} `json:"tlsCACerts"`
			} `json:"peers"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		host, _, _ := strings.Cut(o.PeerEndpoint, ":")
		if !tlsCA.AppendCertsFromPEM([]byte(p.Peers[host].TLSCACerts.PEM)) || p.Peers[host].URL != "grpcs://"+o.PeerEndpoint {
			t.Fatalf("connection profile has no TLS CA or URL for %s: %+v", host, p.Peers)
		}
	} else {
		tlsCA.AddCert(mustCert(t, filepath.Join(dir, "tlsca", "ca.crt")))
	}
	signCA := x509.NewCertPool()
	signCA.AddCert(mustCert(t, filepath.Join(dir, "ca", "ca.crt")))
	for _, ca := range []string{"ca", "tlsca"} {
		cert := mustCert(t, filepath.Join(dir, ca, "ca.crt"))
		if slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !cert.IsCA {
			t.Errorf("%s: got extended key usage %v, CA %v, want serverAuth and clientAuth, CA:TRUE", ca, cert.ExtKeyUsage, cert.IsCA)
		}
	}

	server := mustCert(t, filepath.Join(dir, node, "tls", "server.crt"))
	host, _, _ := strings.Cut(o.PeerEndpoint, ":")
	for _, name := range append([]string{host, "localhost", "127.0.0.1"}, hosts...) {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: name, Roots: tlsCA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server TLS certificate for %s: %v", name, err)
		}
	}
	// Nodes use their TLS certificate as a client too (gossip, Raft).
	if _, err := server.Verify(x509.VerifyOptions{Roots: tlsCA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node TLS certificate as a client: %v", err)
	}
	for _, user := range []string{"Admin", "User1"} {
		client := mustCert(t, filepath.Join(dir, "users", user, "tls", "client.crt"))
		if _, err := client.Verify(x509.VerifyOptions{Roots: tlsCA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s TLS client certificate: %v", user, err)
		}
		sign := mustCert(t, filepath.Join(dir, "users", user, "msp", "signcerts", "cert.pem"))
		if sign.KeyUsage != x509.KeyUsageDigitalSignature || len(sign.ExtKeyUsage) != 0 {
			t.Errorf("%s signing certificate: got key usage %b, extended %v, want digital signature only", user, sign.KeyUsage, sign.ExtKeyUsage)
		}
		if _, err := sign.Verify(x509.VerifyOptions{Roots: signCA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s signing certificate as Fabric's MSP verifies it: %v", user, err)
		}
	}
}
