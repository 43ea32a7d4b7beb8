package localnet_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/app/cli"
	"github.com/tani-platform/tani/ledger/consortium"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/fabricca"
	"github.com/tani-platform/tani/ledger/localnet"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
)

// envFile reads a KEY=VALUE settings file as `set -a; . FILE` would.
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "export "))
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			vars[k] = v
		}
	}
	return vars
}

// clientFromEnvFile is the Fabric client `tani up` builds from an
// organization's tani-<MSP>.env, unmodified.
func clientFromEnvFile(t *testing.T, n *localnet.Network, mspID string) *fabric.Client {
	t.Helper()
	vars := envFile(t, filepath.Join(n.C.Dir, "tani-"+mspID+".env"))
	cfg, err := cli.ParseUp(nil, io.Discard, func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Fabric.Endpoint == "" {
		t.Fatalf("tani-%s.env sets no endpoint: %v", mspID, vars)
	}
	fc, err := fabric.Dial(cfg.Fabric, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	return fc
}

func randomOrigin(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b) + ".tani.local/ledger"
}

// TestSharedNetwork checks the network `make test` runs, made from `tani
// network init` output as it is: each organization's settings file
// reaches its peer, each gateway gathers endorsements of other
// organizations (the 2-of-3 policy), gossip links every peer, each
// organization's CA enrolls identities the channel accepts, and the
// orderer's admin API wants a client certificate.
func TestSharedNetwork(t *testing.T) {
	n := localnettest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("EveryEnvFileAnchorsThroughItsPeer", func(t *testing.T) {
		for _, o := range n.C.Orgs {
			t.Run(o.MSPID, func(t *testing.T) {
				fc := clientFromEnvFile(t, n, o.MSPID)
				tl := newTestLog(t, randomOrigin(t, "shared-"+strings.ToLower(o.MSPID)), 4)
				if err := fc.RegisterLog(ctx, tl.origin, tl.vkey); err != nil {
					t.Fatalf("register through %s: %v", o.MSPID, err)
				}
				mustSync(t, ctx, n)
				a, err := fc.Anchor(ctx, []byte(tl.checkpoint(4)), nil, nil)
				if err != nil {
					t.Fatalf("anchor through %s (a majority of organizations must endorse): %v", o.MSPID, err)
				}
				st, err := fc.TransactionStatus(ctx, a.TxID)
				if err != nil || !st.Successful {
					t.Errorf("got status %+v, %v, want the anchor valid", st, err)
				}
			})
		}
	})

	t.Run("GossipLinksEveryPeer", func(t *testing.T) {
		for _, o := range n.C.Orgs {
			v, err := scrape(ctx, o.OperationsEndpoint, "gossip_membership_total_peers_known", n.C.Channel)
			if err != nil {
				t.Fatal(err)
			}
			if int(v) != len(n.C.Orgs)-1 {
				t.Errorf("%s's peer knows %v peers, want %d (the anchor peers of the genesis block)", o.MSPID, v, len(n.C.Orgs)-1)
			}
		}
	})

	t.Run("CAEnrollsAClientTheChannelAccepts", func(t *testing.T) {
		o, _ := n.C.Org("BankMSP")
		cl, registrar, err := n.CAClient(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		name := "officer-" + hex.EncodeToString([]byte(time.Now().Format("150405.000000")))
		secret, err := cl.Register(ctx, registrar, fabricca.Registration{Name: name, Type: "client"})
		if err != nil {
			t.Fatal(err)
		}
		e, err := cl.Enroll(ctx, fabricca.EnrollRequest{Name: name, Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		der, err := x509.MarshalPKCS8PrivateKey(e.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cert, e.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := n.ClientConfig("BankMSP")
		cfg.Cert, cfg.Key = cert, key
		fc, err := fabric.Dial(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer fc.Close()
		if _, err := fc.LatestAnchor(ctx, "ca-enrolled.example/log"); err != nil {
			t.Errorf("a client enrolled by BankMSP's CA is refused by the channel: %v", err)
		}
		t.Run("ErrWrongSecret", func(t *testing.T) {
			_, err := cl.Enroll(ctx, fabricca.EnrollRequest{Name: name, Secret: "not-" + secret})
			var caErr *fabricca.Error
			if err == nil || !asCAError(err, &caErr) || caErr.Status != http.StatusUnauthorized {
				t.Errorf("got %v, want the CA's 401", err)
			}
		})
	})

	t.Run("OrdererAdminWantsAClientCertificate", func(t *testing.T) {
		node := n.C.Orderer.Nodes[0]
		pool := x509.NewCertPool()
		b, err := os.ReadFile(n.C.TLSCAPath(n.C.Orderer.MSPID))
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(b)
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
		if resp, err := cl.Get("https://" + node.AdminEndpoint + "/participation/v1/channels"); err == nil {
			resp.Body.Close()
			t.Errorf("got %s without a client certificate, want the TLS handshake refused", resp.Status)
		}
		st, err := n.C.OrdererChannel(ctx, node)
		if err != nil || st == nil || st.Status != "active" {
			t.Errorf("with the orderer admin's client certificate: got %+v, %v, want the channel active", st, err)
		}
	})
}

// TestMembership is the Managed Blockchain membership flow on a network
// of its own: a second bank gets its own CA, is proposed, is not admitted
// on one vote of three (Tani refuses to submit, and the orderer refuses
// the update when forced), is admitted on two, its peer joins, the
// endorsement policy grows to three of four, and the new member endorses
// an anchor.
func TestMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Fabric network")
	}
	n := localnettest.MustStart(t, consortium.InitConfig{Orgs: []string{"TaniMSP", "BankMSP", "DistributorMSP"}})
	c := n.C
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	m, err := c.Candidate("Bank2MSP", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.EnrollMember(ctx, m); err != nil {
		t.Fatalf("enroll the new member through its CA: %v", err)
	}
	if _, err := os.Stat(c.CAKeyPath("Bank2MSP")); err == nil {
		t.Error("the new member's CA key is in the consortium directory, want it kept by its CA server")
	}
	p, err := c.Propose(consortium.ProposeConfig{Action: consortium.AddMember, Member: m, By: "TaniMSP"})
	if err != nil {
		t.Fatal(err)
	}
	if p, err = c.Vote(p.ID, "TaniMSP", true); err != nil {
		t.Fatal(err)
	}

	t.Run("OneVoteOfThreeIsNotApplied", func(t *testing.T) {
		if _, err := c.Apply(ctx, p.ID); err == nil || !strings.Contains(err.Error(), "not submitted") {
			t.Errorf("got %v, want Tani to refuse to submit", err)
		}
		env, submitter, err := c.Envelope(p.ID)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Broadcast(ctx, submitter, env)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("got %v submitting one signature of three, want the orderer's refusal", err)
		}
		t.Logf("orderer: %v", err)
		if has := memberOnChain(t, ctx, c, "Bank2MSP"); has {
			t.Error("the channel configuration holds Bank2MSP after one vote of three")
		}
	})

	t.Run("TwoVotesOfThreeAdmitTheMember", func(t *testing.T) {
		if p, err = c.Vote(p.ID, "BankMSP", true); err != nil || p.Status != consortium.StatusApproved {
			t.Fatalf("got %v, %v after two yes votes, want approved", p.Status, err)
		}
		if p, err = c.Apply(ctx, p.ID); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if !memberOnChain(t, ctx, c, "Bank2MSP") {
			t.Fatal("the channel configuration lacks Bank2MSP after the update was applied")
		}
		if want := "OutOf(3, 'TaniMSP.peer', 'BankMSP.peer', 'DistributorMSP.peer', 'Bank2MSP.peer')"; c.EndorsementPolicy != want || c.ChaincodeSequence != 2 {
			t.Errorf("got policy %s at sequence %d, want %s at 2", c.EndorsementPolicy, c.ChaincodeSequence, want)
		}
	})

	t.Run("NewMemberJoinsAndEndorses", func(t *testing.T) {
		if err := n.Up(ctx); err != nil {
			t.Fatalf("bring the new member up: %v", err)
		}
		gw := mustGateway(t, n, "Bank2MSP")
		tl := newTestLog(t, randomOrigin(t, "bank2"), 2)
		contract := gw.GetNetwork(c.Channel).GetContract(c.Chaincode)
		if _, err := contract.SubmitTransaction("RegisterLog", tl.origin, tl.vkey); err != nil {
			t.Fatalf("register through Bank2MSP's gateway: %v", err)
		}
		mustSync(t, ctx, n)
		// Three of four, the new member among them: valid.
		res, st := submitWith(t, contract, []string{"Bank2MSP", "TaniMSP", "DistributorMSP"}, "Anchor", tl.checkpoint(2), "")
		if st == nil || !st.Successful {
			t.Fatalf("anchor endorsed by Bank2MSP, TaniMSP and DistributorMSP: got %s, status %+v, want valid", res, st)
		}
		// Two of four are no longer enough: the policy counts the new member.
		tl2 := newTestLog(t, randomOrigin(t, "bank2-two"), 1)
		if _, err := contract.SubmitTransaction("RegisterLog", tl2.origin, tl2.vkey); err != nil {
			t.Fatal(err)
		}
		mustSync(t, ctx, n)
		_, st = submitWith(t, contract, []string{"Bank2MSP", "TaniMSP"}, "Anchor", tl2.checkpoint(1), "")
		if st == nil || st.Successful || st.Code.String() != "ENDORSEMENT_POLICY_FAILURE" {
			t.Errorf("anchor endorsed by two of four: got status %+v, want ENDORSEMENT_POLICY_FAILURE", st)
		}
	})

	t.Run("ThreeVotesOfFourRemoveAMember", func(t *testing.T) {
		r, err := c.Propose(consortium.ProposeConfig{Action: consortium.RemoveMember, Member: consortium.Org{MSPID: "DistributorMSP"}, By: "Bank2MSP"})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"Bank2MSP", "TaniMSP", "BankMSP"} {
			if r, err = c.Vote(r.ID, v, true); err != nil {
				t.Fatal(err)
			}
		}
		if r, err = c.Apply(ctx, r.ID); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if memberOnChain(t, ctx, c, "DistributorMSP") {
			t.Fatal("the channel configuration still holds DistributorMSP")
		}
		if err := n.StopMember("DistributorMSP", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := n.Up(ctx); err != nil {
			t.Fatalf("commit the policy without DistributorMSP: %v", err)
		}
		if want := "OutOf(2, 'TaniMSP.peer', 'BankMSP.peer', 'Bank2MSP.peer')"; c.EndorsementPolicy != want || c.ChaincodeSequence != 3 {
			t.Errorf("got policy %s at sequence %d, want %s at 3", c.EndorsementPolicy, c.ChaincodeSequence, want)
		}
		contract := mustGateway(t, n, "Bank2MSP").GetNetwork(c.Channel).GetContract(c.Chaincode)
		tl := newTestLog(t, randomOrigin(t, "after-removal"), 1)
		if _, err := contract.SubmitTransaction("RegisterLog", tl.origin, tl.vkey); err != nil {
			t.Fatal(err)
		}
		mustSync(t, ctx, n)
		if _, st := submitWith(t, contract, []string{"Bank2MSP", "TaniMSP"}, "Anchor", tl.checkpoint(1), ""); st == nil || !st.Successful {
			t.Errorf("anchor endorsed by two of the three remaining members: got %+v, want valid", st)
		}
	})
}

// mustSync waits until every peer has every block: the next transaction
// is endorsed by other organizations' peers.
func mustSync(t *testing.T, ctx context.Context, n *localnet.Network) {
	t.Helper()
	if err := n.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
}

func memberOnChain(t *testing.T, ctx context.Context, c *consortium.Consortium, mspID string) bool {
	t.Helper()
	config, _, err := c.FetchConfig(ctx, "TaniMSP")
	if err != nil {
		t.Fatal(err)
	}
	return hasAppOrg(config, mspID)
}

func asCAError(err error, target **fabricca.Error) bool { return errors.As(err, target) }
