//go:build fabric_integration

package anchor_test

// The fabric_integration suite runs the anchoring scenarios against a real
// Fabric peer (or any gateway) with the anchor chaincode deployed:
//
//	FABRIC_GATEWAY_ENDPOINT=peer0.org1.example.com:7051 \
//	FABRIC_MSP_ID=Org1MSP FABRIC_CERT_PATH=.../Admin@.../signcerts/cert.pem \
//	FABRIC_KEY_PATH=.../Admin@.../keystore FABRIC_TLS_CA_CERT=.../tlsca.pem \
//	go test -tags fabric_integration -run Integration ./ledger/anchor
//
// The identity must be an organization admin (it registers a fresh log
// origin per run). FABRIC_SERVER_NAME, FABRIC_CHANNEL (default tani) and
// FABRIC_CHAINCODE (default anchor) are optional. Postgres is needed as for
// every ledger test.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/fabric"
)

func integrationClient(t *testing.T) *fabric.Client {
	t.Helper()
	cfg := fabric.Config{
		Endpoint: os.Getenv("FABRIC_GATEWAY_ENDPOINT"), ServerName: os.Getenv("FABRIC_SERVER_NAME"),
		TLSCACert: os.Getenv("FABRIC_TLS_CA_CERT"), MSPID: os.Getenv("FABRIC_MSP_ID"),
		Cert: os.Getenv("FABRIC_CERT_PATH"), Key: os.Getenv("FABRIC_KEY_PATH"),
		Channel: os.Getenv("FABRIC_CHANNEL"), Chaincode: os.Getenv("FABRIC_CHAINCODE"), Retries: fabric.DefaultRetries,
	}
	if cfg.Endpoint == "" || cfg.MSPID == "" || cfg.Cert == "" || cfg.Key == "" {
		t.Skip("set FABRIC_GATEWAY_ENDPOINT, FABRIC_MSP_ID, FABRIC_CERT_PATH and FABRIC_KEY_PATH to run against a real peer")
	}
	fc, err := fabric.Dial(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	return fc
}

// integrationFixture is a fresh journal with an origin never registered
// before, so runs against a long-lived network do not collide.
func integrationFixture(t *testing.T) *fixture {
	t.Helper()
	fc := integrationClient(t)
	pool := pgtest.MustDB(t, ledger.Migrations)
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	j, err := ledger.New(ledger.Config{Origin: "it-" + hex.EncodeToString(suffix) + ".tani.local/ledger", DataDir: t.TempDir(),
		CheckpointInterval: ledger.DefaultCheckpointInterval}, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := anchor.New(anchor.Config{}, j, fc, nil)
	if err := a.Register(context.Background()); err != nil {
		t.Fatalf("register: %v", err)
	}
	return &fixture{j: j, pool: pool, fc: fc, a: a}
}

func TestIntegrationAnchorEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := integrationFixture(t)
	s1 := f.grow(t, 3)
	s2 := f.grow(t, 5)
	if got, err := f.a.AnchorPending(ctx); err != nil || got != 2 {
		t.Fatalf("AnchorPending: got %d, %v, want 2", got, err)
	}
	f.wantChainOn(t, f.fc.Channel(), s1, s2)
	r, err := f.j.Receipt(ctx, "rec-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := anchor.VerifyReceipt(ctx, f.fc, r, f.j.Verifier()); err != nil {
		t.Errorf("receipt anchor: %v", err)
	}
	c, err := anchor.ReadChain(ctx, f.fc, f.j.Verifier().Name())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f.j.Audit(ctx, ledger.AuditOptions{Chain: c})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Anchors != 2 {
		t.Errorf("got faults %v, %d anchors, want none and 2", rep.Faults, rep.Anchors)
	}
}

func TestIntegrationForgedCheckpointRejected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := integrationFixture(t)
	f.grow(t, 2)
	if _, err := f.a.AnchorPending(ctx); err != nil {
		t.Fatal(err)
	}
	origin := f.j.Verifier().Name()
	skey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: origin, Size: 3, Hash: make([]byte, 32)}.Marshal())}, forger)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.fc.Anchor(ctx, forged, nil, nil)
	var ee *client.EndorseError
	if !errors.As(err, &ee) {
		t.Errorf("got %v, want the peers to refuse to endorse a forged checkpoint", err)
	}
}
