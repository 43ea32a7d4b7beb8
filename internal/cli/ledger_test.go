package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/cli"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// anchored is a journal anchored on a devnet, the flags with which a
// bank's client reaches that devnet, and files for the commands.
type anchored struct {
	j      *ledger.Journal
	dbURL  string
	a      *anchor.Anchorer
	flags  []string // -fabric.* of BankMSP's client identity
	env    map[string]string
	dir    string
	key    string // the log's public key file
	nextID int
}

func mustAnchored(t *testing.T) *anchored {
	t.Helper()
	cc, err := chaincode.New()
	if err != nil {
		t.Fatal(err)
	}
	n := devnettest.MustStart(t, devnet.Chaincode{Name: "anchor", Policy: devnet.MajorityPolicy(devnet.DefaultOrgs), CC: cc})
	admin, err := n.Identity("TaniMSP", "admin")
	if err != nil {
		t.Fatal(err)
	}
	fc, err := fabric.Dial(fabric.DevnetConfig(n.ConnectionInfo(), admin, "anchor"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	j, pool := ledgertest.MustJournalPool(t)
	f := &anchored{j: j, dbURL: pool.Config().ConnString(), a: anchor.New(anchor.Config{}, j, fc, nil), dir: t.TempDir()}
	if err := f.a.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	bank, err := n.Identity("BankMSP", "client")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fabric.DevnetConfig(n.ConnectionInfo(), bank, "anchor")
	f.env = map[string]string{
		"TANI_FABRIC_ENDPOINT": cfg.Endpoint, "TANI_FABRIC_SERVER_NAME": cfg.ServerName, "TANI_FABRIC_TLS_CA_CERT": cfg.TLSCACert,
		"TANI_FABRIC_MSP_ID": cfg.MSPID, "TANI_FABRIC_CERT": cfg.Cert, "TANI_FABRIC_KEY_FILE": cfg.Key,
	}
	f.flags = []string{"-fabric.endpoint", cfg.Endpoint, "-fabric.server-name", cfg.ServerName, "-fabric.tls-ca-cert", cfg.TLSCACert,
		"-fabric.msp-id", cfg.MSPID, "-fabric.cert", cfg.Cert, "-fabric.key-file", cfg.Key}
	f.key = f.write(t, "ledger.pub", []byte(j.VerifierKey()+"\n"))
	return f
}

func (f *anchored) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// receipt appends a record and returns its receipt, issued at once (so in
// a checkpoint not yet anchored), and the record's id.
func (f *anchored) receipt(t *testing.T) (*verify.Receipt, string) {
	t.Helper()
	ctx := context.Background()
	f.nextID++
	id := fmt.Sprintf("plot-%d", f.nextID)
	if _, err := f.j.Append(ctx, ledger.Revision{RecordID: id, Kind: "plot.mapped", Revision: 1, Payload: []byte(`{}`),
		OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), SignatureRef: "device:1"}); err != nil {
		t.Fatal(err)
	}
	r, err := f.j.Receipt(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	return r, id
}

func (f *anchored) anchorPending(t *testing.T) {
	t.Helper()
	if _, err := f.a.AnchorPending(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (f *anchored) receiptFile(t *testing.T, name string, r *verify.Receipt) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return f.write(t, name, b)
}

func runTani(env map[string]string, args ...string) (stdout, stderr string, code int) {
	var out, errOut strings.Builder
	code = cli.Main(context.Background(), args, &out, &errOut, func(k string) string { return env[k] })
	return out.String(), errOut.String(), code
}

// TestReceiptVerify runs `tani receipt verify` on receipts of an anchored
// journal: without Fabric settings it says that only the signature and
// the inclusion were checked and whether the receipt names an anchor; with
// them (flags or TANI_FABRIC_*) it checks the checkpoint on the chain,
// through a bank's own client identity.
func TestReceiptVerify(t *testing.T) {
	f := mustAnchored(t)
	ctx := context.Background()
	early, earlyID := f.receipt(t) // issued before its checkpoint is anchored
	f.anchorPending(t)
	named, err := f.j.Receipt(ctx, earlyID, 1) // the same leaf, in the now anchored checkpoint
	if err != nil {
		t.Fatal(err)
	}
	if named.Anchor == nil || early.Anchor != nil {
		t.Fatalf("got anchors %+v and %+v, want one receipt naming its anchor and one not", named.Anchor, early.Anchor)
	}
	never, _ := f.receipt(t) // its checkpoint is never anchored
	namedFile, earlyFile, neverFile := f.receiptFile(t, "named.json", named), f.receiptFile(t, "early.json", early), f.receiptFile(t, "never.json", never)
	wrongTx := *named
	wrongTx.Anchor = &verify.Anchor{Channel: "tani", Chaincode: "anchor", TxID: strings.Repeat("ab", 32), BlockNumber: named.Anchor.BlockNumber}
	wrongFile := f.receiptFile(t, "wrong.json", &wrongTx)

	offline := "checked: the log's signature and the inclusion proof only; the chain was NOT consulted"
	onChain := "checked: the log's signature, the inclusion proof, and the checkpoint on the chain (channel tani, chaincode anchor)"
	ok := func(t *testing.T, out, errOut string, code int, want ...string) {
		t.Helper()
		if code != 0 {
			t.Fatalf("got exit %d, stderr %q, want 0", code, errOut)
		}
		if !strings.HasPrefix(out, "OK: revision entry for record "+earlyID+" revision 1 is leaf 0") {
			t.Errorf("got %q, want OK naming %s", out, earlyID)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}
	t.Run("OKOfflineNamesTheAnchorUnchecked", func(t *testing.T) {
		out, errOut, code := runTani(nil, "receipt", "verify", namedFile, "-key", f.key)
		ok(t, out, errOut, code, offline, fmt.Sprintf("anchor: the receipt names tx %s, block %d on channel tani, chaincode anchor (not checked)", named.Anchor.TxID, named.Anchor.BlockNumber))
		if strings.Contains(out, onChain) {
			t.Errorf("got %q, want no claim of a check on the chain", out)
		}
	})
	t.Run("OKOfflineSaysThereIsNoAnchor", func(t *testing.T) {
		out, errOut, code := runTani(nil, "receipt", "verify", "-key", f.key, earlyFile)
		ok(t, out, errOut, code, offline, "anchor: none: the receipt's checkpoint was not anchored on Fabric when the receipt was issued")
	})
	t.Run("OKOnTheChain", func(t *testing.T) {
		out, errOut, code := runTani(nil, append([]string{"receipt", "verify", namedFile, "-key", f.key}, f.flags...)...)
		ok(t, out, errOut, code, onChain, fmt.Sprintf("anchor: the chain holds this checkpoint in tx %s, block %d, as the receipt names", named.Anchor.TxID, named.Anchor.BlockNumber))
	})
	t.Run("OKOnTheChainFromTheEnvironment", func(t *testing.T) {
		out, errOut, code := runTani(f.env, "receipt", "verify", namedFile, "-key", f.key)
		ok(t, out, errOut, code, onChain)
	})
	t.Run("OKAnchoredAfterTheReceiptWasIssued", func(t *testing.T) {
		out, errOut, code := runTani(f.env, "receipt", "verify", earlyFile, "-key", f.key)
		ok(t, out, errOut, code, onChain, fmt.Sprintf("anchor: the chain holds this checkpoint in tx %s, block %d, though the receipt names no anchor", named.Anchor.TxID, named.Anchor.BlockNumber))
	})
	t.Run("ErrCheckpointNotOnTheChain", func(t *testing.T) {
		out, errOut, code := runTani(f.env, "receipt", "verify", neverFile, "-key", f.key)
		want := fmt.Sprintf("its signature and inclusion proof verify, but its anchor does not: the receipt names no anchor, and the chain holds no anchor of %s at size %d; the latest anchored size is %d",
			f.j.Verifier().Name(), never.TreeSize, named.TreeSize)
		if code != 1 || out != "" || !strings.Contains(errOut, want) {
			t.Errorf("got exit %d, stdout %q, stderr %q, want 1 and %q", code, out, errOut, want)
		}
	})
	t.Run("ErrAnchorNamesAnotherTx", func(t *testing.T) {
		out, errOut, code := runTani(nil, append([]string{"receipt", "verify", wrongFile, "-key", f.key}, f.flags...)...)
		want := fmt.Sprintf("the chain anchored size %d in tx %s, the anchor names tx %s", named.TreeSize, named.Anchor.TxID, wrongTx.Anchor.TxID)
		if code != 1 || out != "" || !strings.Contains(errOut, want) {
			t.Errorf("got exit %d, stdout %q, stderr %q, want 1 and %q", code, out, errOut, want)
		}
	})
	t.Run("ErrReceiptAnchorNeedsFabricSettings", func(t *testing.T) {
		if _, errOut, code := runTani(nil, "receipt", "anchor", namedFile, "-key", f.key); code != 2 || !strings.Contains(errOut, "usage: tani receipt verify") {
			t.Errorf("got exit %d, %q, want usage (2)", code, errOut)
		}
	})
	t.Run("ErrUsage", func(t *testing.T) {
		for _, args := range [][]string{{"receipt"}, {"receipt", "check", namedFile}, {"receipt", "verify", namedFile}, {"receipt", "verify", "-key", f.key}} {
			if _, _, code := runTani(nil, args...); code != 2 {
				t.Errorf("%q: got exit %d, want usage (2)", args, code)
			}
		}
	})
}

// TestVerifyChainPolicy runs `tani verify` as an auditor would: with the
// -fabric.* settings of a bank's client it checks the journal against the
// chain; with none, and no devnet of `tani up` under -data-dir, it fails
// unless -chain=skip asks for a database-only audit.
func TestVerifyChainPolicy(t *testing.T) {
	f := mustAnchored(t)
	f.receipt(t)
	f.anchorPending(t)
	base := []string{"verify", "-database.url", f.dbURL, "-key", f.key, "-data-dir", t.TempDir()}
	t.Run("OKOnTheChain", func(t *testing.T) {
		out, errOut, code := runTani(nil, append(base, f.flags...)...)
		if code != 0 || !strings.HasSuffix(out, "OK: the journal extends every anchor the chain holds (largest anchored size 1)\n") {
			t.Errorf("got exit %d\n%s%s\nwant OK against the chain", code, out, errOut)
		}
	})
	t.Run("ErrNoChain", func(t *testing.T) {
		out, errOut, code := runTani(nil, base...)
		want := "chain: NOT consulted: no Fabric network is configured: -fabric.endpoint is empty and "
		if code != 1 || !strings.Contains(out, want) || !strings.Contains(errOut, "the chain was not consulted") {
			t.Errorf("got exit %d\n%s%s\nwant 1 and %q", code, out, errOut, want)
		}
	})
	t.Run("OKDatabaseOnly", func(t *testing.T) {
		out, errOut, code := runTani(nil, append(base, "-chain=skip")...)
		if code != 0 || !strings.HasSuffix(out, "OK (database only: the chain was not consulted)\n") {
			t.Errorf("got exit %d\n%s%s\nwant a database-only OK", code, out, errOut)
		}
	})
}
