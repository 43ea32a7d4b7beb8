package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// mustBundle journals n revisions (and m other entries around them) and
// returns a bundle of the n, as lending builds one.
func mustBundle(t *testing.T) (*ledger.Journal, *verify.Bundle, []byte) {
	t.Helper()
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	var revs []ledger.Revision
	for i := range 9 {
		revs = append(revs, ledger.Revision{RecordID: fmt.Sprintf("rec-%d", i), Kind: "harvest.recorded", Revision: 1,
			Payload: fmt.Appendf(nil, `{"kg":%d}`, 1000+i), OccurredAt: ledgerTime})
	}
	app, err := j.Append(ctx, revs...)
	if err != nil {
		t.Fatal(err)
	}
	indexes := []int64{app[1].LeafIndex, app[4].LeafIndex, app[7].LeafIndex}
	_, receipts, err := j.Receipts(ctx, indexes)
	if err != nil {
		t.Fatal(err)
	}
	payloads, err := j.Payloads(ctx, indexes)
	if err != nil {
		t.Fatal(err)
	}
	byLeaf := map[uint64][]byte{}
	for idx, p := range payloads {
		byLeaf[uint64(idx)] = p
	}
	b, err := verify.NewBundle("farmer f-1 for organization o-1", time.Now(), receipts, byLeaf)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(b, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return j, b, data
}

func TestBundle(t *testing.T) {
	j, _, data := mustBundle(t)
	v, err := note.NewVerifier(j.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	parseVerify := func(data []byte) (*verify.BundleResult, error) {
		b, err := verify.ParseBundle(data)
		if err != nil {
			return nil, err
		}
		return b.Verify(v)
	}
	t.Run("OK", func(t *testing.T) {
		if !verify.IsBundle(data) {
			t.Fatal("IsBundle = false for a bundle")
		}
		res, err := parseVerify(data)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range res.Entries {
			got = append(got, e.RecordID)
		}
		if strings.Join(got, ",") != "rec-1,rec-4,rec-7" || len(res.Redacted) != 0 {
			t.Errorf("bundle proves %v (redacted %v), want rec-1, rec-4, rec-7", got, res.Redacted)
		}
	})
	mutate := func(f func(b map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	item := func(b map[string]any, i int) map[string]any { return b["items"].([]any)[i].(map[string]any) }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"ErrPayloadAltered", mutate(func(b map[string]any) { item(b, 1)["payload"] = "eyJrZyI6OTk5OX0=" }), "item 1 (leaf 4): the payload does not hash"},
		{"ErrItemClaimsAnotherRecord", mutate(func(b map[string]any) { item(b, 0)["record_id"] = "rec-2" }), "item 0 (leaf 1): the entry is revision harvest.recorded rec-1"},
		{"ErrProofOfAnotherLeaf", mutate(func(b map[string]any) { item(b, 2)["leaf_index"] = 6 }), "item 2 (leaf 6): inclusion proof does not lead"},
		{"ErrLeafTwice", mutate(func(b map[string]any) { b["items"] = append(b["items"].([]any), item(b, 0)) }), "leaf appears twice"},
		{"ErrTreeSizeClaimed", mutate(func(b map[string]any) { b["tree_size"] = 5 }), "bundle claims 5"},
		{"ErrUnknownMember", mutate(func(b map[string]any) { b["note"] = "trust me" }), "bundle fields are"},
		{"ErrOtherFormat", mutate(func(b map[string]any) { b["format"] = "tani.evidence-bundle/v0" }), "bundle format is"},
		{"ErrCaseVariantKey", bytes.Replace(data, []byte(`"subject"`), []byte(`"subject": "x", "Subject"`), 1), "bundle fields are"},
		{"ErrDuplicateKey", bytes.Replace(data, []byte(`"subject"`), []byte(`"subject": "x", "subject"`), 1), "Duplicate key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseVerify(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("ErrOtherLogKey", func(t *testing.T) {
		other := ledgertest.MustJournal(t)
		ov, _ := note.NewVerifier(other.VerifierKey())
		b, err := verify.ParseBundle(data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Verify(ov); err == nil {
			t.Error("a bundle verified with another log's key")
		}
	})
	t.Run("OKRedactedPayloadStillProves", func(t *testing.T) {
		ctx := context.Background()
		if _, err := j.Redact(ctx, "rec-4", 1, "erasure test"); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(data, &m)
		item(m, 1)["payload"] = nil
		redacted, _ := json.Marshal(m)
		res, err := parseVerify(redacted)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Redacted) != 1 || res.Redacted[0] != "rec-4/1" {
			t.Errorf("redacted = %v, want [rec-4/1]", res.Redacted)
		}
	})
}

// TestReceiptCommandBundle: `tani receipt verify BUNDLE` checks a bundle
// offline and says so; a tampered bundle fails naming the item.
func TestReceiptCommandBundle(t *testing.T) {
	j, _, data := mustBundle(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "ledger.pub")
	os.WriteFile(key, []byte(j.VerifierKey()+"\n"), 0o644)
	good := filepath.Join(dir, "bundle.json")
	os.WriteFile(good, data, 0o644)
	var out bytes.Buffer
	cmd := verify.ReceiptCommand{KeyFile: key}
	if err := cmd.Run(context.Background(), good, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"OK: evidence bundle (farmer f-1 for organization o-1) of 3 entries",
		"harvest.recorded rec-4 revision 1 (payload matches its hash)",
		"the chain was NOT consulted",
		"anchor: none",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, bytes.Replace(data, []byte(`"tree_size": 9`), []byte(`"tree_size": 8`), 1), 0o644)
	out.Reset()
	if err := cmd.Run(context.Background(), bad, &out); err == nil || out.Len() != 0 {
		t.Errorf("tampered bundle: got %v and output %q, want an error and no output", err, out.String())
	}
}
