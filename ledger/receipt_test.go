package ledger_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

func mustReceiptJSON(t *testing.T, j *ledger.Journal, id string, revision int64) []byte {
	t.Helper()
	r, err := j.Receipt(context.Background(), id, revision)
	if err != nil {
		t.Fatalf("receipt %s/%d: %v", id, revision, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReceipt(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	for i := range 10 {
		if _, err := j.Append(ctx, rev(fmt.Sprintf("r%d", i), 1, fmt.Sprintf(`{"v":%d}`, i)), rev(fmt.Sprintf("r%d", i), 2, `{"v":"two"}`)); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("OK", func(t *testing.T) {
		data := mustReceiptJSON(t, j, "r3", 1)
		res, err := verify.VerifyReceipt(data, j.VerifierKey())
		if err != nil {
			t.Fatalf("verify: %v\n%s", err, data)
		}
		if res.Entry.RecordID != "r3" || res.Entry.Revision != 1 || res.LeafIndex != 6 || res.TreeSize != 20 {
			t.Errorf("got %s/%d at %d of %d, want r3/1 at 6 of 20", res.Entry.RecordID, res.Entry.Revision, res.LeafIndex, res.TreeSize)
		}
		if res.Entry.PayloadHash != sha256.Sum256([]byte(`{"v":3}`)) {
			t.Errorf("entry does not commit to the payload's SHA-256")
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(data, &fields); err != nil {
			t.Fatal(err)
		}
		if len(fields) != 6 || string(fields["anchor"]) != "null" {
			t.Errorf("got fields %v with anchor %s, want exactly six with a null anchor", fields, fields["anchor"])
		}
	})
	t.Run("OKLatestRevision", func(t *testing.T) {
		res, err := verify.VerifyReceipt(mustReceiptJSON(t, j, "r9", 0), j.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		if res.Entry.Revision != 2 {
			t.Errorf("got revision %d, want 2", res.Entry.Revision)
		}
	})
	t.Run("ErrAnyByteChanged", func(t *testing.T) {
		data := mustReceiptJSON(t, j, "r4", 2)
		for i := range data {
			bad := append([]byte(nil), data...)
			bad[i] ^= 0x01
			if _, err := verify.VerifyReceipt(bad, j.VerifierKey()); err == nil {
				t.Errorf("byte %d (%q→%q) changed: got nil error, want verification to fail\n%s", i, data[i], bad[i], bad)
			}
		}
	})
	t.Run("ErrOtherKey", func(t *testing.T) {
		other := ledgertest.MustJournal(t)
		if _, err := verify.VerifyReceipt(mustReceiptJSON(t, j, "r1", 1), other.VerifierKey()); err == nil {
			t.Error("got nil error verifying with another log's key, want failure")
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		for _, c := range []struct {
			id  string
			rev int64
		}{{"nope", 0}, {"nope", 1}, {"r1", 3}} {
			if _, err := j.Receipt(ctx, c.id, c.rev); apperr.CodeOf(err) != apperr.NotFound {
				t.Errorf("%s/%d: got %v, want not found", c.id, c.rev, err)
			}
		}
	})
}

func TestRedact(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	if _, err := j.Append(ctx, rev("farmer-1", 1, `{"name":"Ana"}`), rev("farmer-1", 2, `{"name":"Ana B"}`)); err != nil {
		t.Fatal(err)
	}
	before := mustReceiptJSON(t, j, "farmer-1", 1)

	red, err := j.Redact(ctx, "farmer-1", 1, "consent withdrawn")
	if err != nil {
		t.Fatalf("redact: %v", err)
	}
	if red.LeafIndex != 2 || red.Existed {
		t.Errorf("got redaction at %d (existed %v), want a new entry at 2", red.LeafIndex, red.Existed)
	}
	t.Run("OKReceiptsStillVerify", func(t *testing.T) {
		if _, err := verify.VerifyReceipt(before, j.VerifierKey()); err != nil {
			t.Errorf("receipt issued before redaction: %v", err)
		}
		after := mustReceiptJSON(t, j, "farmer-1", 1)
		res, err := verify.VerifyReceipt(after, j.VerifierKey())
		if err != nil {
			t.Fatalf("receipt issued after redaction: %v", err)
		}
		if res.Entry.PayloadHash != sha256.Sum256([]byte(`{"name":"Ana"}`)) {
			t.Error("redacted revision's leaf no longer commits to the original payload hash")
		}
	})
	t.Run("OKHistoryShowsRedaction", func(t *testing.T) {
		h, err := j.History(ctx, "farmer-1", ledger.AsOf{})
		if err != nil {
			t.Fatal(err)
		}
		if h[0].Payload != nil || !h[0].Redacted || h[0].RedactedBy == nil || *h[0].RedactedBy != 2 {
			t.Errorf("revision 1: got payload %q redacted %v by %v, want erased and redacted by 2", h[0].Payload, h[0].Redacted, h[0].RedactedBy)
		}
		if string(h[1].Payload) != `{"name":"Ana B"}` || h[1].Redacted {
			t.Errorf("revision 2: got payload %q redacted %v, want untouched", h[1].Payload, h[1].Redacted)
		}
	})
	t.Run("OKRedactionJournaled", func(t *testing.T) {
		es, err := j.Entries(ctx, 2, 1)
		if err != nil || len(es) != 1 {
			t.Fatalf("got %v %v, want the redaction entry", es, err)
		}
		e, err := verify.ParseEntry(es[0].Data)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != verify.TypeRedaction || e.Target != 0 || e.Reason != "consent withdrawn" || e.RecordID != "farmer-1" || e.Revision != 1 {
			t.Errorf("got %+v, want a redaction of farmer-1/1 at leaf 0", e)
		}
	})
	t.Run("OKIdempotent", func(t *testing.T) {
		again, err := j.Redact(ctx, "farmer-1", 1, "asked twice")
		if err != nil {
			t.Fatal(err)
		}
		if !again.Existed || again.LeafIndex != 2 {
			t.Errorf("got %+v, want the first redaction at 2", again)
		}
	})
	t.Run("OKAuditClean", func(t *testing.T) {
		if _, err := j.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
		rep, err := j.Audit(ctx, ledger.AuditOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Errorf("got faults %v, want none after a journaled redaction", rep.Faults)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := j.Redact(ctx, "farmer-1", 9, "x"); apperr.CodeOf(err) != apperr.NotFound {
			t.Errorf("got %v, want not found", err)
		}
	})
}
