package consortium_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	t.Run("GenesisBlockHoldsAnchorPeers", func(t *testing.T) {
		// Without anchor peers gossip never links the organizations and
		// no gateway can gather a 2-of-3 endorsement.
		config := genesisConfig(t, c)
		tx := configtx.New(config)
		app := tx.Application()
		for _, o := range c.Orgs {
			got, err := app.Organization(o.MSPID).AnchorPeers()
			if err != nil {
				t.Fatal(err)
			}
			host, port := splitEndpoint(t, o.PeerEndpoint)
			if want := []configtx.Address{{Host: host, Port: port}}; !slices.Equal(got, want) {
				t.Errorf("%s: got anchor peers %v, want %v", o.MSPID, got, want)
			}
		}
	})
	t.Run("GenesisBlockDataHash", func(t *testing.T) {
		block := genesisBlock(t, c)
		sum := sha256.Sum256(bytes.Join(block.Data.Data, nil))
		if !bytes.Equal(block.Header.DataHash, sum[:]) {
			t.Errorf("block data hash %x does not match its data (%x)", block.Header.DataHash, sum)
		}
	})
	t.Run("EveryListenerHasItsOwnPort", func(t *testing.T) {
		seen := map[string]string{}
		add := func(owner, ep string) {
			if !strings.HasPrefix(ep, "127.0.0.1:") {
				t.Errorf("%s listens on %q, want loopback by default", owner, ep)
			}
			if prev, ok := seen[ep]; ok {
				t.Errorf("%s and %s share %s", prev, owner, ep)
			}
			seen[ep] = owner
		}
		for _, n := range c.Orderer.Nodes {
			add(n.Name, n.Endpoint)
			add(n.Name+" admin", n.AdminEndpoint)
			add(n.Name+" operations", n.OperationsEndpoint)
		}
		for _, o := range c.Orgs {
			add(o.MSPID, o.PeerEndpoint)
			add(o.MSPID+" chaincode listener", o.PeerChaincodeEndpoint)
			add(o.MSPID+" operations", o.OperationsEndpoint)
			add(o.MSPID+" CA", o.CAEndpoint)
			add(o.MSPID+" CA operations", o.CAOperationsEndpoint)
			add(o.MSPID+" chaincode server", o.ChaincodeEndpoint)
		}
		for ep, owner := range seen {
			if ep == "127.0.0.1:7051" || ep == "127.0.0.1:8080" {
				t.Errorf("%s takes %s, a Tani default", owner, ep)
			}
		}
	})
	t.Run("EnvFileNamesWhatExists", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(c.Dir, "tani-BankMSP.env"))
		if err != nil {
			t.Fatal(err)
		}
		o, _ := c.Org("BankMSP")
		vars := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
				vars[k] = v
			}
		}
		if vars["TANI_FABRIC_ENDPOINT"] != o.PeerEndpoint || vars["TANI_FABRIC_MSP_ID"] != "BankMSP" {
			t.Errorf("got %v, want BankMSP's peer endpoint %s", vars, o.PeerEndpoint)
		}
		for _, k := range []string{"TANI_FABRIC_TLS_CA_CERT", "TANI_FABRIC_CERT", "TANI_FABRIC_KEY_FILE"} {
			if _, err := os.Stat(vars[k]); err != nil || !filepath.IsAbs(vars[k]) {
				t.Errorf("%s=%q: want an absolute path to an existing file (%v)", k, vars[k], err)
			}
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

func TestProposal(t *testing.T) {
	propose := func(t *testing.T, c *consortium.Consortium) *consortium.Proposal {
		t.Helper()
		// The candidate's material, as its CA would have issued it.
		if err := devnet.GenerateMaterial(c.Dir, []string{"CoopMSP"}, nil); err != nil {
			t.Fatal(err)
		}
		m, err := c.Candidate("CoopMSP", "")
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Propose(consortium.ProposeConfig{Action: consortium.AddMember, Member: m, By: "TaniMSP"})
		if err != nil {
			t.Fatalf("propose: %v", err)
		}
		return p
	}
	t.Run("OKApprovedByMajority", func(t *testing.T) {
		c := mustInit(t)
		before, err := c.Config()
		if err != nil {
			t.Fatal(err)
		}
		p := propose(t, c)
		if p.Status != consortium.StatusOpen || !slices.Equal(p.Voters, threeOrgs) {
			t.Fatalf("got %s with voters %v, want open with the three members", p.Status, p.Voters)
		}
		if p, err = c.Vote(p.ID, "TaniMSP", true); err != nil || p.Status != consortium.StatusOpen {
			t.Fatalf("got %v, %v after one yes vote of three, want still open", p.Status, err)
		}
		if p, err = c.Vote(p.ID, "BankMSP", true); err != nil || p.Status != consortium.StatusApproved {
			t.Fatalf("got %v, %v after two yes votes of three, want approved", p.Status, err)
		}
		env, submitter, err := c.Envelope(p.ID)
		if err != nil {
			t.Fatal(err)
		}
		update, sigs := decodeUpdate(t, env)
		if err := consortium.VerifyAdminsMajority(before, update, sigs); err != nil {
			t.Errorf("the envelope does not satisfy MAJORITY Admins: %v", err)
		}
		if submitter != "TaniMSP" {
			t.Errorf("got submitter %s, want the first yes voter", submitter)
		}
		// Applying needs the ordering service; nothing changes before.
		if got := memberIDs(t, c); slices.Contains(got, "CoopMSP") {
			t.Errorf("got members %v before the update was applied, want unchanged", got)
		}
		if _, err := c.Apply(context.Background(), p.ID); !errors.Is(err, consortium.ErrOrdererUnreachable) {
			t.Errorf("got %v applying without an ordering service, want ErrOrdererUnreachable", err)
		}
	})
	t.Run("ErrMinorityNotSubmitted", func(t *testing.T) {
		c := mustInit(t)
		p := propose(t, c)
		if _, err := c.Vote(p.ID, "TaniMSP", true); err != nil {
			t.Fatal(err)
		}
		_, err := c.Apply(context.Background(), p.ID)
		if err == nil || !strings.Contains(err.Error(), "open with 1 of the 2 yes votes it needs: not submitted") {
			t.Errorf("got %v, want a refusal to submit", err)
		}
		env, _, err := c.Envelope(p.ID)
		if err != nil {
			t.Fatal(err)
		}
		update, sigs := decodeUpdate(t, env)
		before, _ := c.Config()
		if err := consortium.VerifyAdminsMajority(before, update, sigs); err == nil {
			t.Error("one signature of three satisfies MAJORITY Admins, want refused")
		}
	})
	t.Run("RejectedByMajority", func(t *testing.T) {
		c := mustInit(t)
		p := propose(t, c)
		for _, v := range []string{"BankMSP", "DistributorMSP"} {
			var err error
			if p, err = c.Vote(p.ID, v, false); err != nil {
				t.Fatal(err)
			}
		}
		if p.Status != consortium.StatusRejected {
			t.Errorf("got %s after two no votes of three, want rejected", p.Status)
		}
		if _, err := c.Vote(p.ID, "TaniMSP", true); err == nil || !strings.Contains(err.Error(), "not open for votes") {
			t.Errorf("got %v voting on a rejected proposal, want a refusal", err)
		}
	})
	t.Run("ErrVoteTwice", func(t *testing.T) {
		c := mustInit(t)
		p := propose(t, c)
		if _, err := c.Vote(p.ID, "BankMSP", true); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Vote(p.ID, "BankMSP", true); err == nil || !strings.Contains(err.Error(), "already voted") {
			t.Errorf("got %v, want a refusal of a second vote", err)
		}
	})
	t.Run("ErrNotAVoter", func(t *testing.T) {
		c := mustInit(t)
		p := propose(t, c)
		if _, err := c.Vote(p.ID, "CoopMSP", true); err == nil || !strings.Contains(err.Error(), "may not vote") {
			t.Errorf("got %v, want the candidate refused a vote on its own admission", err)
		}
	})
	t.Run("ErrProposerNotMember", func(t *testing.T) {
		c := mustInit(t)
		_, err := c.Propose(consortium.ProposeConfig{Action: consortium.RemoveMember, Member: consortium.Org{MSPID: "BankMSP"}, By: "EvilMSP"})
		if err == nil || !strings.Contains(err.Error(), "not a member") {
			t.Errorf("got %v, want a non-member proposer refused", err)
		}
	})
	t.Run("ErrAlreadyMember", func(t *testing.T) {
		c := mustInit(t)
		if _, err := c.Candidate("BankMSP", ""); err == nil || !strings.Contains(err.Error(), "already a member") {
			t.Errorf("got %v, want an already-member error", err)
		}
	})
	t.Run("ErrNoMaterial", func(t *testing.T) {
		c := mustInit(t)
		m, err := c.Candidate("CoopMSP", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Propose(consortium.ProposeConfig{Action: consortium.AddMember, Member: m, By: "TaniMSP"}); err == nil || !strings.Contains(err.Error(), "CA issues its identities") {
			t.Errorf("got %v, want a refusal without the member's certificates", err)
		}
	})
	t.Run("OKRemoveMember", func(t *testing.T) {
		c := mustInit(t)
		p, err := c.Propose(consortium.ProposeConfig{Action: consortium.RemoveMember, Member: consortium.Org{MSPID: "DistributorMSP"}, By: "BankMSP"})
		if err != nil {
			t.Fatal(err)
		}
		if p.Member.PeerEndpoint == "" {
			t.Errorf("got member %+v, want the removed member's endpoints recorded", p.Member)
		}
	})
	t.Run("CandidatesGetTheirOwnPorts", func(t *testing.T) {
		c := mustInit(t)
		p := propose(t, c)
		m, err := c.Candidate("Coop2MSP", "")
		if err != nil {
			t.Fatal(err)
		}
		if m.PeerEndpoint == p.Member.PeerEndpoint {
			t.Errorf("second candidate got %s, the first candidate's endpoint", m.PeerEndpoint)
		}
	})
}

func decodeUpdate(t *testing.T, env *cb.Envelope) ([]byte, []*cb.ConfigSignature) {
	t.Helper()
	var payload cb.Payload
	var cue cb.ConfigUpdateEnvelope
	if err := proto.Unmarshal(env.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(payload.Data, &cue); err != nil {
		t.Fatal(err)
	}
	if len(env.Signature) == 0 {
		t.Errorf("envelope is not signed")
	}
	return cue.ConfigUpdate, cue.Signatures
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
		o := consortium.Org{MSPID: c.Orderer.MSPID, PeerEndpoint: c.Orderer.Nodes[0].Endpoint}
		checkOrgCertificates(t, c, o, filepath.Join("orderers", "orderer0"), hosts, false)
	})
	t.Run("ServiceCertificates", func(t *testing.T) {
		// The CA server and the chaincode server present certificates of
		// the organization's TLS CA for their endpoints.
		for _, o := range c.Orgs {
			pool := x509.NewCertPool()
			pool.AddCert(mustCert(t, c.TLSCAPath(o.MSPID)))
			for svc, ep := range map[string]string{"ca": o.CAEndpoint, "chaincode": o.ChaincodeEndpoint} {
				cert, _ := c.ServiceTLSPaths(o.MSPID, svc)
				host, _, _ := strings.Cut(ep, ":")
				if _, err := mustCert(t, cert).Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
					t.Errorf("%s %s certificate for %s: %v", o.MSPID, svc, host, err)
				}
			}
		}
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
		name := o.PeerName()
		if !tlsCA.AppendCertsFromPEM([]byte(p.Peers[name].TLSCACerts.PEM)) || p.Peers[name].URL != "grpcs://"+o.PeerEndpoint {
			t.Fatalf("connection profile has no TLS CA or URL for %s: %+v", name, p.Peers)
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

func TestInitLayout(t *testing.T) {
	t.Run("ThreeOrderers", func(t *testing.T) {
		c, err := consortium.Init(consortium.InitConfig{Dir: t.TempDir(), Orgs: threeOrgs, Orderers: 3, BasePort: 23000})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Orderer.Nodes) != 3 || c.Orderer.Nodes[2].Endpoint != "127.0.0.1:23020" || c.Orgs[0].PeerEndpoint != "127.0.0.1:23030" {
			t.Fatalf("got orderers %+v, first peer %s, want three orderers at 23000-23020 and the first peer at 23030", c.Orderer.Nodes, c.Orgs[0].PeerEndpoint)
		}
		rafts := etcdRaftConsenters(t, genesisConfig(t, c))
		if len(rafts) != 3 {
			t.Errorf("got %d consenters in the genesis block, want 3", len(rafts))
		}
		for _, n := range c.Orderer.Nodes {
			if _, err := os.Stat(filepath.Join(c.NodeDir(c.Orderer.MSPID, n.Name), "tls", "server.crt")); err != nil {
				t.Errorf("%s has no TLS certificate: %v", n.Name, err)
			}
		}
	})
	t.Run("ErrTwoOrderers", func(t *testing.T) {
		if _, err := consortium.Init(consortium.InitConfig{Dir: t.TempDir(), Orgs: threeOrgs, Orderers: 2}); err == nil {
			t.Error("got a consortium with two orderers, want a refusal (Raft here has 1 or 3)")
		}
	})
	t.Run("NetworkFile", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "network.json")
		if err := os.WriteFile(file, []byte(`{"orderers":[{"endpoint":"orderer.example.net:7050"}],
			"orgs":[{"msp_id":"TaniMSP","peer_endpoint":"peer0.tani.example.net:7051"},
			        {"msp_id":"BankMSP","peer_endpoint":"peer0.bank.example.net:9051","ca_endpoint":"ca.bank.example.net:443"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := consortium.ReadLayout(file)
		if err != nil {
			t.Fatal(err)
		}
		c, err := consortium.Init(consortium.InitConfig{Dir: filepath.Join(dir, "net"), Layout: l})
		if err != nil {
			t.Fatal(err)
		}
		bank, _ := c.Org("BankMSP")
		if bank.CAEndpoint != "ca.bank.example.net:443" || bank.OperationsEndpoint != "peer0.bank.example.net:9053" {
			t.Errorf("got %+v, want the given CA endpoint and derived operations port", bank)
		}
		peer := mustCert(t, filepath.Join(c.NodeDir("BankMSP", "peer0"), "tls", "server.crt"))
		if err := peer.VerifyHostname("peer0.bank.example.net"); err != nil {
			t.Errorf("peer certificate: %v", err)
		}
		if _, err := c.Candidate("CoopMSP", ""); err == nil || !strings.Contains(err.Error(), "network file") {
			t.Errorf("got %v, want new members to need their endpoints given", err)
		}
	})
	t.Run("ErrUnknownField", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "network.json")
		if err := os.WriteFile(file, []byte(`{"orgs":[{"msp":"TaniMSP"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := consortium.ReadLayout(file); err == nil || !strings.Contains(err.Error(), "unknown field") {
			t.Errorf("got %v, want the misspelt field named", err)
		}
	})
	t.Run("ErrSharedPort", func(t *testing.T) {
		l := &consortium.Layout{Orderers: []consortium.OrdererNode{{Endpoint: "127.0.0.1:7050"}},
			Orgs: []consortium.Org{{MSPID: "TaniMSP", PeerEndpoint: "127.0.0.1:7051"}}}
		if _, err := consortium.Init(consortium.InitConfig{Dir: t.TempDir(), Layout: l}); err == nil || !strings.Contains(err.Error(), "both listen on 127.0.0.1:7051") {
			t.Errorf("got %v, want the orderer admin port and the peer refused on one port", err)
		}
	})
}

func genesisBlock(t *testing.T, c *consortium.Consortium) *cb.Block {
	t.Helper()
	b, err := os.ReadFile(c.GenesisBlockPath())
	if err != nil {
		t.Fatal(err)
	}
	var block cb.Block
	if err := proto.Unmarshal(b, &block); err != nil {
		t.Fatal(err)
	}
	return &block
}

func genesisConfig(t *testing.T, c *consortium.Consortium) *cb.Config {
	t.Helper()
	block := genesisBlock(t, c)
	var env cb.Envelope
	var payload cb.Payload
	var ce cb.ConfigEnvelope
	if err := proto.Unmarshal(block.Data.Data[0], &env); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(env.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(payload.Data, &ce); err != nil {
		t.Fatal(err)
	}
	return ce.Config
}

func etcdRaftConsenters(t *testing.T, config *cb.Config) []string {
	t.Helper()
	tx := configtx.New(config)
	ord, err := tx.Orderer().Configuration()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range ord.EtcdRaft.Consenters {
		out = append(out, net.JoinHostPort(c.Address.Host, strconv.Itoa(c.Address.Port)))
	}
	return out
}

func splitEndpoint(t *testing.T, ep string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(ep)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

// TestDeployNetworkExample keeps deploy/fabric/network.example.json a
// network file `tani network init -config` accepts.
func TestDeployNetworkExample(t *testing.T) {
	l, err := consortium.ReadLayout(filepath.Join("..", "..", "deploy", "fabric", "network.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := consortium.Init(consortium.InitConfig{Dir: t.TempDir(), Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Orderer.Nodes) != 3 || len(c.Orgs) != 3 {
		t.Errorf("got %d orderers and %d organizations, want 3 and 3", len(c.Orderer.Nodes), len(c.Orgs))
	}
}
