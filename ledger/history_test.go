package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
)

func TestHistory(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	a1, err := j.Append(ctx, rev("plot-1", 1, `{"v":1}`), rev("plot-2", 1, `{"w":1}`))
	if err != nil {
		t.Fatal(err)
	}
	cp1, err := j.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // logged times must differ for the as-of-time read
	a2, err := j.Append(ctx, rev("plot-1", 2, `{"v":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	payloads := func(revs []ledger.RecordRevision) []string {
		var out []string
		for _, r := range revs {
			out = append(out, string(r.Payload))
		}
		return out
	}
	t.Run("OKCurrent", func(t *testing.T) {
		got, err := j.Current(ctx, "plot-1", ledger.AsOf{})
		if err != nil {
			t.Fatal(err)
		}
		want := ledger.RecordRevision{
			RecordID: "plot-1", Kind: "plot.mapped", Revision: 2, LeafIndex: 2, Payload: []byte(`{"v":2}`),
			PayloadHash: got.PayloadHash, OccurredAt: rev("plot-1", 2, "").OccurredAt.Truncate(time.Microsecond),
			LoggedAt: a2[0].LoggedAt, SignatureRef: "device:plot-1",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("current (-want +got):\n%s", diff)
		}
	})
	t.Run("OKEveryRevision", func(t *testing.T) {
		got, err := j.History(ctx, "plot-1", ledger.AsOf{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{`{"v":1}`, `{"v":2}`}, payloads(got)); diff != "" {
			t.Errorf("history (-want +got):\n%s", diff)
		}
	})
	t.Run("OKAsOfCheckpoint", func(t *testing.T) {
		got, err := j.History(ctx, "plot-1", ledger.AsOf{TreeSize: cp1.Size})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{`{"v":1}`}, payloads(got)); diff != "" {
			t.Errorf("history as of checkpoint %d (-want +got):\n%s", cp1.Size, diff)
		}
	})
	t.Run("OKAsOfTime", func(t *testing.T) {
		got, err := j.History(ctx, "plot-1", ledger.AsOf{Time: a1[0].LoggedAt})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{`{"v":1}`}, payloads(got)); diff != "" {
			t.Errorf("history as of %v (-want +got):\n%s", a1[0].LoggedAt, diff)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := j.History(ctx, "plot-9", ledger.AsOf{}); apperr.CodeOf(err) != apperr.NotFound {
			t.Errorf("unknown record: got %v, want not found", err)
		}
		if _, err := j.History(ctx, "plot-1", ledger.AsOf{Time: a1[0].LoggedAt.Add(-time.Hour)}); apperr.CodeOf(err) != apperr.NotFound {
			t.Errorf("before the first revision: got %v, want not found", err)
		}
		if _, err := j.History(ctx, "plot-1", ledger.AsOf{TreeSize: 2 + 100}); apperr.CodeOf(err) != apperr.NotFound {
			t.Errorf("unsigned tree size: got %v, want not found", err)
		}
	})
}

// TestTwoSequencers appends from two journals on one database at once, as
// two processes would: the advisory lock must keep one writer at a time and
// each journal must notice the other's appends.
func TestTwoSequencers(t *testing.T) {
	ctx := context.Background()
	j1, pool := ledgertest.MustJournalPool(t)
	j2, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: t.TempDir(), CheckpointInterval: time.Second}, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w, j := range []*ledger.Journal{j1, j2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				if _, err := j.Append(ctx, rev(fmt.Sprintf("w%d-%d-a", w, i), 1, "{}"), rev(fmt.Sprintf("w%d-%d-b", w, i), 1, "{}")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := j1.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := j1.Audit(ctx, ledger.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.TreeSize != 160 {
		t.Errorf("got tree size %d and faults %v, want 160 and none", rep.TreeSize, rep.Faults)
	}
}
