package ledger_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

func TestErase(t *testing.T) {
	ctx := context.Background()
	j, pool := ledgertest.MustJournalPool(t)
	// Leaves 0..4: the farmer's a (two revisions) and b, someone else's c,
	// and b's older redaction-free neighbour d.
	if _, err := j.Append(ctx, rev("a", 1, `{"name":"Ana"}`), rev("c", 1, `{"name":"Other"}`), rev("a", 2, `{"name":"Ana B"}`),
		rev("b", 1, `{"plot":"x"}`), rev("d", 1, `{"plot":"y"}`)); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{"a": mustReceiptJSON(t, j, "a", 1), "b": mustReceiptJSON(t, j, "b", 1), "c": mustReceiptJSON(t, j, "c", 1)}
	e := ledger.Erasure{ID: "erasure-1", Revision: 2, Kind: "farmer.erasure.executed", Subject: "farmer f-1",
		RecordIDs: []string{"a", "b", "never-journaled"}, OccurredAt: t0, SignatureRef: "operator-token"}
	got, err := j.Erase(ctx, e)
	if err != nil {
		t.Fatalf("erase: %v", err)
	}
	if want := []int64{0, 2, 3}; !slices.Equal(got.Redacted, want) || !slices.Equal(got.Redactions, []int64{5, 6, 7}) || got.LeafIndex != 8 || got.Existed {
		t.Fatalf("got %+v, want revisions %v erased by redactions 5..7 and the erasure entry at 8", got, want)
	}

	t.Run("OK_PayloadsGoneOthersKept", func(t *testing.T) {
		for id, want := range map[string]int{"a": 0, "b": 0, "c": 1, "d": 1} {
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(payload) FROM ledger.entries WHERE type = 'revision' AND record_id = $1`, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != want {
				t.Errorf("record %s: %d payloads left, want %d", id, n, want)
			}
		}
	})
	t.Run("OK_ErasureJournaledWithoutPersonalData", func(t *testing.T) {
		h, err := j.History(ctx, "erasure-1", ledger.AsOf{})
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			ErasureID  string  `json:"erasure_id"`
			Subject    string  `json:"subject"`
			Records    int     `json:"records"`
			Redacted   []int64 `json:"redacted"`
			Redactions []int64 `json:"redactions"`
		}
		if err := json.Unmarshal(h[0].Payload, &p); err != nil {
			t.Fatal(err)
		}
		if h[0].Kind != "farmer.erasure.executed" || h[0].Revision != 2 || p.Subject != "farmer f-1" || p.Records != 3 ||
			!slices.Equal(p.Redacted, []int64{0, 2, 3}) || !slices.Equal(p.Redactions, []int64{5, 6, 7}) {
			t.Errorf("got %s revision %d payload %s, want the erasure naming its subject and leaves", h[0].Kind, h[0].Revision, h[0].Payload)
		}
		es, err := j.Entries(ctx, 5, 3)
		if err != nil {
			t.Fatal(err)
		}
		for i, raw := range es {
			red, err := verify.ParseEntry(raw.Data)
			if err != nil {
				t.Fatal(err)
			}
			if red.Type != verify.TypeRedaction || red.Target != got.Redacted[i] || red.Reason != "erasure erasure-1" {
				t.Errorf("leaf %d: got %+v, want the redaction of leaf %d by erasure-1", raw.Index, red, got.Redacted[i])
			}
		}
	})
	t.Run("OK_OldReceiptsStillVerify", func(t *testing.T) {
		for id, r := range before {
			if _, err := verify.VerifyReceipt(r, j.VerifierKey()); err != nil {
				t.Errorf("receipt of %s issued before the erasure: %v", id, err)
			}
		}
		if _, err := verify.VerifyReceipt(mustReceiptJSON(t, j, "a", 2), j.VerifierKey()); err != nil {
			t.Errorf("receipt of an erased revision issued after the erasure: %v", err)
		}
	})
	t.Run("OK_AuditClean", func(t *testing.T) {
		if _, err := j.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
		rep, err := j.Audit(ctx, ledger.AuditOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Entries != 9 {
			t.Errorf("got faults %v over %d entries, want none over 9", rep.Faults, rep.Entries)
		}
	})
	t.Run("OK_Idempotent", func(t *testing.T) {
		again, err := j.Erase(ctx, ledger.Erasure{ID: "erasure-1", Revision: 2, Kind: "farmer.erasure.executed", Subject: "farmer f-1",
			RecordIDs: []string{"c"}, OccurredAt: t0, SignatureRef: "operator-token"})
		if err != nil {
			t.Fatal(err)
		}
		if !again.Existed || again.LeafIndex != 8 || !slices.Equal(again.Redacted, got.Redacted) {
			t.Errorf("got %+v, want the first erasure", again)
		}
		var n int
		pool.QueryRow(ctx, `SELECT count(payload) FROM ledger.entries WHERE record_id = 'c'`).Scan(&n)
		if n != 1 {
			t.Error("a repeated erasure erased a record it did not name the first time")
		}
	})
	t.Run("ErrAppendErasedRecord", func(t *testing.T) {
		for _, r := range []ledger.Revision{rev("a", 3, `{"name":"Ana again"}`), rev("b", 1, `{"plot":"x"}`)} {
			if _, err := j.Append(ctx, r); apperr.CodeOf(err) != apperr.Conflict {
				t.Errorf("append %s/%d: got %v, want conflict: the record was erased", r.RecordID, r.Revision, err)
			}
		}
		if _, err := j.Append(ctx, rev("e", 1, `{}`)); err != nil {
			t.Errorf("append of another record: %v", err)
		}
	})
	t.Run("ErrRevisionTaken", func(t *testing.T) {
		_, err := j.Erase(ctx, ledger.Erasure{ID: "c", Revision: 1, Kind: "farmer.erasure.executed", Subject: "farmer f-2",
			OccurredAt: t0, SignatureRef: "operator-token"})
		if apperr.CodeOf(err) != apperr.Conflict {
			t.Errorf("got %v, want conflict: record c already has revision 1", err)
		}
	})
}
