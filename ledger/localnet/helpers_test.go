package localnet_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-config/configtx"
	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/localnet"
)

// testLog is a journal of leaves with its origin, note verifier key and
// a signer for checkpoints of any of its sizes.
type testLog struct {
	origin, vkey string
	signer       note.Signer
	hashes       hashes
}

type hashes []tlog.Hash

func (h hashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = h[x]
	}
	return out, nil
}

func newTestLog(t *testing.T, origin string, size int64) *testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{origin: origin, vkey: vkey, signer: signer}
	for i := range size {
		add, err := tlog.StoredHashes(i, []byte(fmt.Sprintf("record %d", i)), tl.hashes)
		if err != nil {
			t.Fatal(err)
		}
		tl.hashes = append(tl.hashes, add...)
	}
	return tl
}

// checkpoint is the signed checkpoint of the first size leaves.
func (tl *testLog) checkpoint(size int64) string {
	root, err := tlog.TreeHash(size, tl.hashes)
	if err != nil {
		panic(err)
	}
	signed, err := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: tl.origin, Size: uint64(size), Hash: root[:]}.Marshal())}, tl.signer)
	if err != nil {
		panic(err)
	}
	return string(signed)
}

// scrape reads one gauge for a channel from an operations endpoint.
func scrape(ctx context.Context, endpoint, name, channel string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+endpoint+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, `channel="`+channel+`"`) {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("no %s for %s at %s", name, channel, endpoint)
}

// mustGateway connects the official Go gateway client to mspID's peer as
// mspID's admin, with TLS verified against mspID's TLS CA.
func mustGateway(t *testing.T, n *localnet.Network, mspID string) *client.Gateway {
	t.Helper()
	return mustGatewayAs(t, n, mspID, "admin")
}

// mustGatewayAs is mustGateway as mspID's admin or client (User1).
func mustGatewayAs(t *testing.T, n *localnet.Network, mspID, role string) *client.Gateway {
	t.Helper()
	cfg := n.ClientConfig(mspID)
	if role == "client" {
		cfg.Cert, cfg.Key = n.C.ClientPaths(mspID)
	}
	return mustGatewayConfig(t, cfg)
}

// mustGatewayConfig connects the official Go gateway client as cfg says:
// its peer's endpoint and TLS CA, its identity.
func mustGatewayConfig(t *testing.T, cfg fabric.Config) *client.Gateway {
	t.Helper()
	caPEM, err := os.ReadFile(cfg.TLSCACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: cfg.ServerName})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	certPEM, err := os.ReadFile(cfg.Cert)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.CertificateFromPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.NewX509Identity(cfg.MSPID, cert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(cfg.Key)
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.PrivateKeyFromPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(conn),
		client.WithEvaluateTimeout(30*time.Second), client.WithEndorseTimeout(60*time.Second),
		client.WithSubmitTimeout(30*time.Second), client.WithCommitStatusTimeout(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw
}

// submitWith endorses fn on the named organizations' peers only, submits
// it and returns the result and the commit status (nil when endorsing or
// submitting failed; the test then fails).
func submitWith(t *testing.T, contract *client.Contract, orgs []string, fn string, args ...string) ([]byte, *client.Status) {
	t.Helper()
	var a []string
	for _, v := range args {
		if v != "" {
			a = append(a, v)
		}
	}
	if fn == "Anchor" && len(a) == 1 {
		a = append(a, "[]") // no consistency proof for a first anchor
	}
	prop, err := contract.NewProposal(fn, client.WithArguments(a...), client.WithEndorsingOrganizations(orgs...))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := prop.Endorse()
	if err != nil {
		t.Fatalf("endorse %s on %v: %v", fn, orgs, err)
	}
	commit, err := tx.Submit()
	if err != nil {
		t.Fatalf("submit %s: %v", fn, err)
	}
	st, err := commit.Status()
	if err != nil {
		t.Fatalf("commit status of %s: %v", fn, err)
	}
	return tx.Result(), st
}

func hasAppOrg(config *cb.Config, mspID string) bool {
	tx := configtx.New(config)
	app, err := tx.Application().Configuration()
	if err != nil {
		return false
	}
	for _, o := range app.Organizations {
		if o.Name == mspID {
			return true
		}
	}
	return false
}
