package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
)

// TestConcurrentAppends appends from many goroutines at once, as request
// handlers would. Group commit must append every revision exactly once,
// give each caller its own leaf indexes, and fail only the caller whose
// revision conflicts.
func TestConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	j, pool := ledgertest.MustJournalPool(t)
	if _, err := j.Append(ctx, rev("taken", 1, `{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	const workers, each = 32, 20
	var wg sync.WaitGroup
	var conflicts atomic.Int32
	indexes := make(chan int64, workers*each)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if w == 7 && i == 5 {
					_, err := j.Append(ctx, rev(fmt.Sprintf("w%d-conflict", w), 1, "{}"), rev("taken", 1, `{"v":2}`))
					if apperr.CodeOf(err) != apperr.Conflict {
						errs <- fmt.Errorf("conflicting append: got %v, want conflict", err)
					}
					conflicts.Add(1)
				}
				got, err := j.Append(ctx, rev(fmt.Sprintf("w%d-%d", w, i), 1, "{}"))
				if err != nil {
					errs <- err
					return
				}
				if got[0].RecordID != fmt.Sprintf("w%d-%d", w, i) || got[0].Existed {
					errs <- fmt.Errorf("got %+v for w%d-%d", got[0], w, i)
				}
				indexes <- got[0].LeafIndex
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(indexes)
	for err := range errs {
		t.Error(err)
	}
	seen := map[int64]bool{}
	for idx := range indexes {
		if seen[idx] {
			t.Errorf("leaf index %d handed to two callers", idx)
		}
		seen[idx] = true
	}
	var n, txs int
	if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT logged_at) FROM ledger.entries").Scan(&n, &txs); err != nil {
		t.Fatal(err)
	}
	if want := 1 + workers*each; n != want {
		t.Errorf("got %d entries, want %d (each revision exactly once, none from the conflicting call)", n, want)
	}
	t.Logf("%d appends committed in %d transactions", workers*each+1, txs)
	if _, err := j.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := j.Audit(ctx, ledger.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("got faults %v, want none", rep.Faults)
	}
}

// TestSequentialCallerNeverLingers appends from one goroutine, one call
// after another. The sequencer waits for the callers a transaction
// answered only while they may still append again; a caller alone is
// back, or is the one returning, whenever a sequencer looks, so no append
// of it may wait.
func TestSequentialCallerNeverLingers(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	reg := mustMetrics(t, j)
	for i := range 40 {
		if _, err := j.Append(ctx, rev(fmt.Sprintf("seq-%d", i), 1, "{}")); err != nil {
			t.Fatal(err)
		}
	}
	if got := appendTxs(t, reg)["fast"]; got < 39 {
		t.Fatalf("%v appends took the one-round-trip path, want at least 39: the linger is only after its answers", got)
	}
	if n, err := testutil.GatherAndCount(reg, "tani_ledger_append_lingers_total"); err != nil || n != 0 {
		t.Fatalf("got %d lingers (err %v), want none", n, err)
	}
}
