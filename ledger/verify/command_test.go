package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// TestReceiptCommandOffline checks what `tani receipt verify` says without
// Fabric settings: the offline checks pass or fail, and the output says
// that the chain was not consulted and whether the receipt names an anchor.
// The checks on the chain are tested with the devnet in internal/cli.
func TestReceiptCommandOffline(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	if _, err := j.Append(ctx, ledger.Revision{RecordID: "plot-1", Kind: "plot.mapped", Revision: 1, Payload: []byte(`{}`), OccurredAt: ledgerTime}); err != nil {
		t.Fatal(err)
	}
	r, err := j.Receipt(ctx, "plot-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, v any) string {
		t.Helper()
		data, ok := v.([]byte)
		if !ok {
			var err error
			if data, err = json.MarshalIndent(v, "", "  "); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("ledger.pub", []byte(j.VerifierKey()+"\n"))
	unanchored := write("unanchored.json", r)
	withAnchor := *r
	withAnchor.Anchor = &verify.Anchor{Channel: "tani", Chaincode: "anchor", TxID: "3f2a", BlockNumber: 7}
	anchored := write("anchored.json", &withAnchor)
	good, _ := os.ReadFile(unanchored)
	bad := write("bad.json", bytes.Replace(good, []byte(`"leaf_index": 0`), []byte(`"leaf_index": 1`), 1))
	run := func(file string) (string, error) {
		var out bytes.Buffer
		cmd := verify.ReceiptCommand{KeyFile: key}
		err := cmd.Run(ctx, file, &out)
		return out.String(), err
	}
	const offline = "checked: the log's signature and the inclusion proof only; the chain was NOT consulted"
	t.Run("OKUnanchored", func(t *testing.T) {
		out, err := run(unanchored)
		if err != nil || !strings.HasPrefix(out, "OK: revision entry for record plot-1 revision 1 is leaf 0") {
			t.Fatalf("got %q, %v; want OK naming plot-1", out, err)
		}
		for _, want := range []string{offline, "anchor: none: the receipt's checkpoint was not anchored on Fabric when the receipt was issued"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("OKAnchorNamedNotChecked", func(t *testing.T) {
		out, err := run(anchored)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{offline, "anchor: the receipt names tx 3f2a, block 7 on channel tani, chaincode anchor (not checked)"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		out, err := run(bad)
		if err == nil || !strings.Contains(err.Error(), "leaf index 1 is outside tree size 1") {
			t.Errorf("got %v, want a failure naming the leaf index", err)
		}
		if out != "" {
			t.Errorf("got output %q for a receipt that does not verify, want none", out)
		}
	})
	t.Run("ErrNoKey", func(t *testing.T) {
		cmd := verify.ReceiptCommand{}
		if err := cmd.Run(ctx, unanchored, new(bytes.Buffer)); err == nil {
			t.Error("got nil error without -key, want one")
		}
	})
}
