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

func TestRunReceiptCommand(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	if _, err := j.Append(ctx, ledger.Revision{RecordID: "plot-1", Kind: "plot.mapped", Revision: 1, Payload: []byte(`{}`), OccurredAt: ledgerTime}); err != nil {
		t.Fatal(err)
	}
	r, err := j.Receipt(ctx, "plot-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("ledger.pub", []byte(j.VerifierKey()+"\n"))
	good := write("good.json", receipt)
	bad := write("bad.json", bytes.Replace(receipt, []byte(`"leaf_index": 0`), []byte(`"leaf_index": 1`), 1))
	run := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := verify.RunReceiptCommand(ctx, args, &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	t.Run("OK", func(t *testing.T) {
		out, err := run("verify", good, "--key", key)
		if err != nil || !strings.HasPrefix(out, "OK: revision entry for record plot-1 revision 1 is leaf 0") {
			t.Errorf("got %q, %v; want OK naming plot-1", out, err)
		}
		if _, err := run("verify", "--key", key, good); err != nil {
			t.Errorf("flags before FILE: got %v, want OK", err)
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		_, err := run("verify", bad, "--key", key)
		if err == nil || !strings.Contains(err.Error(), "leaf index 1 is outside tree size 1") {
			t.Errorf("got %v, want a failure naming the leaf index", err)
		}
	})
	t.Run("ErrUsage", func(t *testing.T) {
		for _, args := range [][]string{nil, {"check", good}, {"verify", good}, {"verify", "--key", key}} {
			if _, err := run(args...); err == nil {
				t.Errorf("%q: got nil error, want usage error", args)
			}
		}
	})
}
