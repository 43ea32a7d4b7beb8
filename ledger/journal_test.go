package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
)

var t0 = time.Date(2026, 3, 1, 8, 30, 0, 123456789, time.UTC)

func rev(id string, n int64, payload string) ledger.Revision {
	return ledger.Revision{
		RecordID: id, Kind: "plot.mapped", Revision: n, Payload: []byte(payload),
		OccurredAt: t0.Add(time.Duration(n) * time.Minute), SignatureRef: "device:" + id,
	}
}

func TestAppend(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		got, err := j.Append(ctx, rev("a", 1, `{"x":1}`), rev("b", 1, `{"y":1}`), rev("a", 2, `{"x":2}`))
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		var idx []int64
		for _, a := range got {
			idx = append(idx, a.LeafIndex)
			if a.Existed {
				t.Errorf("got Existed for %s/%d, want a new entry", a.RecordID, a.Revision)
			}
		}
		if diff := cmp.Diff([]int64{0, 1, 2}, idx); diff != "" {
			t.Errorf("leaf indexes (-want +got):\n%s", diff)
		}
		more, err := j.Append(ctx, rev("c", 1, `{}`))
		if err != nil {
			t.Fatalf("second append: %v", err)
		}
		if more[0].LeafIndex != 3 {
			t.Errorf("got leaf index %d, want 3", more[0].LeafIndex)
		}
	})
	t.Run("OKIdempotent", func(t *testing.T) {
		j, pool := ledgertest.MustJournalPool(t)
		first, err := j.Append(ctx, rev("a", 1, `{"x":1}`))
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		again, err := j.Append(ctx, rev("a", 1, `{"x":1}`), rev("b", 1, `{}`), rev("b", 1, `{}`))
		if err != nil {
			t.Fatalf("append again: %v", err)
		}
		want := []ledger.Appended{
			{RecordID: "a", Revision: 1, LeafIndex: 0, LoggedAt: first[0].LoggedAt, Existed: true},
			{RecordID: "b", Revision: 1, LeafIndex: 1, LoggedAt: again[1].LoggedAt},
			{RecordID: "b", Revision: 1, LeafIndex: 1, LoggedAt: again[1].LoggedAt, Existed: true},
		}
		if diff := cmp.Diff(want, again); diff != "" {
			t.Errorf("appended (-want +got):\n%s", diff)
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM ledger.entries").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("got %d entries, want 2 (each revision exactly once)", n)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		if _, err := j.Append(ctx, rev("a", 1, `{"x":1}`)); err != nil {
			t.Fatalf("append: %v", err)
		}
		_, err := j.Append(ctx, rev("a", 1, `{"x":2}`))
		if got := apperr.CodeOf(err); got != apperr.Conflict {
			t.Errorf("got code %q (%v), want conflict", got, err)
		}
		_, err = j.Append(ctx, rev("z", 1, `1`), rev("z", 1, `2`))
		if got := apperr.CodeOf(err); got != apperr.Conflict {
			t.Errorf("in-batch: got code %q (%v), want conflict", got, err)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		bad := rev("a\nb", 1, `{}`)
		_, err := j.Append(ctx, rev("ok", 1, `{}`), bad, rev("x", 0, `{}`))
		e, ok := apperr.As(err)
		if !ok || e.Code != apperr.Invalid {
			t.Fatalf("got %v, want invalid", err)
		}
		var fields []string
		for _, f := range e.Fields {
			fields = append(fields, f.Field)
		}
		if diff := cmp.Diff([]string{"revisions[1]", "revisions[2]"}, fields); diff != "" {
			t.Errorf("fields (-want +got):\n%s", diff)
		}
	})
}

func TestAppendManyBatchesMatchesOneBatch(t *testing.T) {
	ctx := context.Background()
	one := ledgertest.MustJournal(t)
	many := ledgertest.MustJournal(t)
	var all []ledger.Revision
	for i := range 300 {
		all = append(all, rev(fmt.Sprintf("r%d", i), 1, fmt.Sprintf(`{"i":%d}`, i)))
	}
	if _, err := one.Append(ctx, all...); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(all); i += 7 {
		if _, err := many.Append(ctx, all[i:min(i+7, len(all))]...); err != nil {
			t.Fatal(err)
		}
	}
	// The logged times differ, so roots differ; the audit checks each
	// journal's stored hashes against a from-scratch recomputation.
	for name, j := range map[string]*ledger.Journal{"one": one, "many": many} {
		if _, err := j.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
		rep, err := j.Audit(ctx, ledger.AuditOptions{})
		if err != nil {
			t.Fatalf("%s: audit: %v", name, err)
		}
		if len(rep.Faults) != 0 || rep.TreeSize != 300 {
			t.Errorf("%s: got size %d faults %v, want size 300 and no faults", name, rep.TreeSize, rep.Faults)
		}
	}
}
