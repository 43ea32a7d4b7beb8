package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/app/cli"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
)

// TestUpAnchorsOnTheDevnetByDefault runs `tani up` with no Fabric
// configuration: checkpoints must be anchored on the in-process devnet and
// the anchors must check out against that chain from a separate client.
func TestUpAnchorsOnTheDevnetByDefault(t *testing.T) {
	r := apptest.MustStart(t, "-target=anchor", "-anchor.interval=100ms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j := r.App.Journal()
	if _, err := j.Append(ctx, ledger.Revision{RecordID: "plot-1", Kind: "plot.mapped", Revision: 1, Payload: []byte(`{}`),
		OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), SignatureRef: "device:1"}); err != nil {
		t.Fatal(err)
	}
	cp, err := j.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the anchoring loop (it runs every 100ms) to record the anchor.
	polltest.Eventually(t, 30*time.Second, func() error {
		if cp, err = j.CheckpointAt(ctx, cp.Size); err != nil {
			t.Fatal(err)
		}
		if cp.Anchor == nil {
			return fmt.Errorf("checkpoint %d was not anchored", cp.Size)
		}
		return nil
	})
	if cp.Anchor.Channel != "tani" || cp.Anchor.Chaincode != "anchor" {
		t.Errorf("got anchor %+v, want channel tani, chaincode anchor", cp.Anchor)
	}
	// `tani verify` reaches the devnet the same way: configuration only.
	cfg := app.DevnetClientConfig(r.DataDir, r.App.FabricDevnetAddr())
	fc, err := fabric.Dial(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	chain, err := anchor.ReadChain(ctx, fc, j.Verifier().Name())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := j.Audit(ctx, ledger.AuditOptions{Chain: chain})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Anchors != 1 || rep.ChainAnchors != 1 {
		t.Errorf("got faults %v, %d of %d chain anchors matched, want none and 1 of 1", rep.Faults, rep.Anchors, rep.ChainAnchors)
	}

	verifyCmd := func() (string, int) {
		var out strings.Builder
		code := cli.Main(ctx, []string{"verify", "-data-dir", r.DataDir, "-ledger.key-file", r.LedgerKeyFile, "-database.url", r.DatabaseURL,
			"-fabric.devnet-listen", r.App.FabricDevnetAddr()}, &out, &out, func(string) string { return "" })
		return out.String(), code
	}
	t.Run("TaniVerifyChecksTheAnchor", func(t *testing.T) {
		if out, code := verifyCmd(); code != 0 || !strings.Contains(out, "1 chain anchors; 1 of 1 anchor references match the chain") {
			t.Errorf("got exit %d, %q, want 0 with one anchor checked", code, out)
		}
	})
	t.Run("TaniReceiptAnchorChecksTheChain", func(t *testing.T) {
		rec, err := j.Receipt(ctx, "plot-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		receiptFile, keyFile := filepath.Join(dir, "receipt.json"), filepath.Join(dir, "ledger.pub")
		if err := os.WriteFile(receiptFile, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(j.VerifierKey()), 0o644); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		code := cli.Main(ctx, []string{"receipt", "anchor", "-key", keyFile, "-fabric.endpoint", cfg.Endpoint, "-fabric.server-name", cfg.ServerName,
			"-fabric.tls-ca-cert", cfg.TLSCACert, "-fabric.msp-id", cfg.MSPID, "-fabric.cert", cfg.Cert, "-fabric.key-file", cfg.Key, receiptFile},
			&out, &out, func(string) string { return "" })
		if want := "in tx " + cp.Anchor.TxID; code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("got exit %d, %q, want 0 and %q", code, out.String(), want)
		}
	})
	t.Run("TaniVerifyReportsARewrittenAnchor", func(t *testing.T) {
		if _, err := r.DB.Exec(ctx, `UPDATE ledger.checkpoints SET anchor = jsonb_set(anchor, '{tx_id}', '"0000"')`); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("size %d: anchor reference rewritten: ledger.checkpoints names tx 0000 in block %d on tani/anchor, but the chain anchored size %d in tx %s",
			cp.Size, cp.Anchor.BlockNumber, cp.Size, cp.Anchor.TxID)
		if out, code := verifyCmd(); code != 1 || !strings.Contains(out, want) {
			t.Errorf("got exit %d, %q, want 1 with %q", code, out, want)
		}
	})
}

// TestUpAnchorsOnARealNetwork runs `tani up` configured only by TaniMSP's
// tani-TaniMSP.env from `tani network init` (as written) against the real
// Fabric network of the suite: checkpoints are anchored through TaniMSP's
// peer, endorsed by a majority of the organizations, and `tani verify`
// configured by BankMSP's settings checks them through BankMSP's peer.
func TestUpAnchorsOnARealNetwork(t *testing.T) {
	n := localnettest.Shared(t)
	tani := envFileVars(t, filepath.Join(n.C.Dir, "tani-TaniMSP.env"))
	bank := envFileVars(t, filepath.Join(n.C.Dir, "tani-BankMSP.env"))
	origin := fmt.Sprintf("e2e-%d.tani.local/ledger", time.Now().UnixNano())
	r := apptest.MustStartWithEnv(t, tani, "-target=anchor", "-anchor.interval=100ms", "-ledger.origin="+origin)
	if slices.Contains(r.App.Modules(), app.FabricDevnet) {
		t.Errorf("got modules %v with -fabric.endpoint set, want no %s", r.App.Modules(), app.FabricDevnet)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	j := r.App.Journal()
	var cp *ledger.Checkpoint
	for i := range 2 {
		if _, err := j.Append(ctx, ledger.Revision{RecordID: fmt.Sprintf("plot-%d", i), Kind: "plot.mapped", Revision: 1, Payload: []byte(`{}`),
			OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), SignatureRef: "device:1"}); err != nil {
			t.Fatal(err)
		}
		var err error
		if cp, err = j.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for cp.Anchor == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("checkpoint %d was not anchored on the real network: %v\nlogs:\n%s", cp.Size, ctx.Err(), strings.Join(r.Logs(), "\n"))
		case <-time.After(100 * time.Millisecond):
		}
		var err error
		if cp, err = j.CheckpointAt(ctx, cp.Size); err != nil {
			t.Fatal(err)
		}
	}
	verifyCmd := func() (string, int) {
		var out strings.Builder
		code := cli.Main(ctx, []string{"verify", "-data-dir", r.DataDir, "-ledger.key-file", r.LedgerKeyFile, "-database.url", r.DatabaseURL, "-ledger.origin", origin},
			&out, &out, func(k string) string { return bank[k] })
		return out.String(), code
	}
	t.Run("TaniVerifyThroughAnotherOrgsPeer", func(t *testing.T) {
		want := fmt.Sprintf("%d chain anchors; %d of %d anchor references match the chain", cp.Size, cp.Size, cp.Size)
		if out, code := verifyCmd(); code != 0 || !strings.Contains(out, want) {
			t.Errorf("got exit %d, %q, want 0 and %q, checked through BankMSP's peer", code, out, want)
		}
	})
	t.Run("TaniVerifyReportsARewrittenAnchor", func(t *testing.T) {
		if _, err := r.DB.Exec(ctx, `UPDATE ledger.checkpoints SET anchor = jsonb_set(anchor, '{tx_id}', '"0000"') WHERE size = $1`, cp.Size); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("size %d: anchor reference rewritten: ledger.checkpoints names tx 0000", cp.Size)
		if out, code := verifyCmd(); code != 1 || !strings.Contains(out, want) {
			t.Errorf("got exit %d, %q, want 1 with %q", code, out, want)
		}
	})
}

// envFileVars reads a KEY=VALUE settings file as `set -a; . FILE` would.
func envFileVars(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(line, "export "))
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			vars[k] = v
		}
	}
	return vars
}
