package ledger_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// appendTxs returns tani_ledger_append_transactions_total by path.
func appendTxs(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tani_ledger_append_transactions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func mustMetrics(t *testing.T, j *ledger.Journal) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := j.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// mustAuditClean audits the stored journal (no checkpoint needs to be
// signed: every stored hash row is checked against the entries).
func mustAuditClean(t *testing.T, j *ledger.Journal, size int64) {
	t.Helper()
	rep, err := j.Audit(context.Background(), ledger.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.TreeSize != size {
		t.Errorf("audit: got tree size %d and faults %v, want %d and none", rep.TreeSize, rep.Faults, size)
	}
}

// TestAppendFastPath checks the one-round-trip append: it is what a
// process appending alone uses, and every guess it makes is checked by the
// database, so a wrong one costs a careful retry, never a wrong log.
func TestAppendFastPath(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		reg := mustMetrics(t, j)
		if _, err := j.Append(ctx, rev("a", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		for i, id := range []string{"b", "c", "d"} {
			got, err := j.Append(ctx, rev(id, 1, "{}"), rev(id, 2, "{}"))
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(1 + 2*i); got[0].LeafIndex != want || got[1].LeafIndex != want+1 || got[0].Existed {
				t.Errorf("append %s: got %+v, want leaves %d and %d, new", id, got, want, want+1)
			}
		}
		if got := appendTxs(t, reg); got["careful"] != 1 || got["fast"] != 3 {
			t.Errorf("got transactions %v, want the first careful (nothing known at start) and the 3 others fast", got)
		}
		mustAuditClean(t, j, 7)
	})
	t.Run("OKExistingRevision", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		reg := mustMetrics(t, j)
		first, err := j.Append(ctx, rev("a", 1, "{}"), rev("b", 1, "{}"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := j.Append(ctx, rev("c", 1, "{}"), rev("b", 1, "{}"))
		if err != nil {
			t.Fatal(err)
		}
		if !got[1].Existed || got[1].LeafIndex != first[1].LeafIndex || got[0].Existed || got[0].LeafIndex != 2 {
			t.Errorf("got %+v, want c new at 2 and b existing at %d", got, first[1].LeafIndex)
		}
		if got := appendTxs(t, reg); got["careful"] != 2 || got["fast"] != 0 {
			t.Errorf("got transactions %v, want 2 careful: the stored revision refused the fast one", got)
		}
		mustAuditClean(t, j, 3)
	})
	t.Run("ErrConflictStoredRevision", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		if _, err := j.Append(ctx, rev("a", 1, `{"v":1}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append(ctx, rev("b", 1, "{}"), rev("a", 1, `{"v":2}`)); apperr.CodeOf(err) != apperr.Conflict {
			t.Fatalf("got %v, want conflict", err)
		}
		if got, err := j.Append(ctx, rev("b", 1, "{}")); err != nil || got[0].LeafIndex != 1 || got[0].Existed {
			t.Fatalf("got %+v, %v, want b new at 1: the conflicting call appended nothing", got, err)
		}
		mustAuditClean(t, j, 2)
	})
	t.Run("OKAnotherProcessAppended", func(t *testing.T) {
		j1, pool := ledgertest.MustJournalPool(t)
		reg := mustMetrics(t, j1)
		j2 := mustSecondJournal(t, pool)
		for i, j := range []*ledger.Journal{j1, j1, j2, j1, j1} {
			got, err := j.Append(ctx, rev(string(rune('a'+i)), 1, "{}"))
			if err != nil {
				t.Fatal(err)
			}
			if got[0].LeafIndex != int64(i) {
				t.Errorf("append %d: got leaf %d, want %d", i, got[0].LeafIndex, i)
			}
		}
		if got := appendTxs(t, reg); got["careful"] != 2 || got["fast"] != 2 {
			t.Errorf("got transactions %v of the first journal, want 2 careful (at start, after the other's append) and 2 fast", got)
		}
		mustAuditClean(t, j1, 5)
	})
	t.Run("OKTreeChangedUnderIt", func(t *testing.T) {
		// The tree this process appended to was rewritten at the same size
		// (here by an attacker; the fork is the signer's to find). New
		// hashes computed from the remembered tree would not be the stored
		// tree's: the guard must send the append the careful way, which
		// reads the stored hashes.
		j, pool := ledgertest.MustJournalPool(t)
		reg := mustMetrics(t, j)
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			if _, err := j.Append(ctx, rev(id, 1, "{}")); err != nil {
				t.Fatal(err)
			}
		}
		// The same revision, logged at another time: only the logged_at
		// column tells, besides the hashes.
		ledgertest.MustRewriteLeaf(t, pool, 4, mustLeaf(t, rev("e", 1, "{}")))
		if _, err := j.Append(ctx, rev("f", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		if got := appendTxs(t, reg); got["careful"] != 2 || got["fast"] != 4 {
			t.Errorf("got transactions %v, want the append after the rewrite careful", got)
		}
		rep, err := j.Audit(ctx, ledger.AuditOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Hashes written from the remembered tree would show as edited
		// hash rows above leaf 4.
		if len(rep.Faults) != 1 || rep.Faults[0].Kind != ledger.FaultColumnChanged || rep.Faults[0].Index != 4 || rep.TreeSize != 6 {
			t.Errorf("got tree size %d and faults %v, want 6 and only leaf 4's logged_at column", rep.TreeSize, rep.Faults)
		}
	})
	t.Run("ErrConflictErasedRecord", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		reg := mustMetrics(t, j)
		if _, err := j.Append(ctx, rev("a", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Erase(ctx, ledger.Erasure{ID: "erasure-1", Revision: 1, Kind: "farmer.erasure.executed", Subject: "farmer 1",
			RecordIDs: []string{"gone"}, OccurredAt: t0, SignatureRef: "operator:1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append(ctx, rev("b", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		_, err := j.Append(ctx, rev("gone", 1, "{}"))
		if apperr.CodeOf(err) != apperr.Conflict {
			t.Fatalf("got %v, want conflict: the record was erased", err)
		}
		if got := appendTxs(t, reg); got["fast"] != 1 {
			t.Errorf("got transactions %v, want b fast (after the erasure) and the erased record refused by the guard", got)
		}
		mustAuditClean(t, j, 3)
	})
}

// mustSecondJournal starts another journal on pool, as a second process
// would.
func mustSecondJournal(t *testing.T, pool *pgxpool.Pool) *ledger.Journal {
	t.Helper()
	j, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: t.TempDir(), CheckpointInterval: time.Second}, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return j
}

// mustLeaf returns the leaf bytes the journal would log for r.
func mustLeaf(t *testing.T, r ledger.Revision) []byte {
	t.Helper()
	data, err := verify.Entry{Type: verify.TypeRevision, RecordID: r.RecordID, Kind: r.Kind, Revision: r.Revision,
		PayloadHash: sha256.Sum256(r.Payload), OccurredAt: r.OccurredAt, SignatureRef: r.SignatureRef, LoggedAt: t0}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestAppendPipelinedTwoProcesses appends from many callers of two
// journals on one database at once: each journal sends its next
// transaction while the previous one commits, and the other journal's
// appends make those guesses wrong again and again. Every revision must be
// appended exactly once, at the index its caller was told, and every stored
// hash must be right.
func TestAppendPipelinedTwoProcesses(t *testing.T) {
	ctx := context.Background()
	j1, pool := ledgertest.MustJournalPool(t)
	j2 := mustSecondJournal(t, pool)
	regs := []*prometheus.Registry{mustMetrics(t, j1), mustMetrics(t, j2)}
	const callers, each = 16, 15
	type placed struct {
		id  string
		idx int64
	}
	out := make(chan placed, 2*callers*each)
	errs := make(chan error, 2*callers)
	var wg sync.WaitGroup
	for w, j := range []*ledger.Journal{j1, j2} {
		for c := range callers {
			wg.Go(func() {
				for i := range each {
					id := fmt.Sprintf("j%d-c%d-%d", w, c, i)
					got, err := j.Append(ctx, rev(id, 1, "{}"))
					if err != nil {
						errs <- err
						return
					}
					out <- placed{id, got[0].LeafIndex}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	close(out)
	for err := range errs {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, "SELECT record_id, idx FROM ledger.entries")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	for rows.Next() {
		var p placed
		if err := rows.Scan(&p.id, &p.idx); err != nil {
			t.Fatal(err)
		}
		stored[p.id] = p.idx
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for p := range out {
		n++
		if idx, ok := stored[p.id]; !ok || idx != p.idx {
			t.Errorf("%s: caller told leaf %d, stored at %d (present %v)", p.id, p.idx, idx, ok)
		}
	}
	if want := 2 * callers * each; n != want || len(stored) != want {
		t.Errorf("got %d answers and %d entries, want %d of each", n, len(stored), want)
	}
	mustAuditClean(t, j1, int64(2*callers*each))
	t.Logf("transactions: first journal %v, second %v", appendTxs(t, regs[0]), appendTxs(t, regs[1]))
}

// bigBatch returns n revisions of distinct records, enough for the
// one-round-trip append to write them with binary COPY.
func bigBatch(prefix string, n int) []ledger.Revision {
	revs := make([]ledger.Revision, n)
	for i := range revs {
		revs[i] = rev(fmt.Sprintf("%s-%d", prefix, i), 1, fmt.Sprintf(`{"n":%d}`, i))
	}
	return revs
}

// TestAppendCopyPath checks the large-batch variant of the one-round-trip
// append (binary COPY in an explicit transaction): the rows it stores are
// the ones the audit re-derives from the leaves, its guesses are checked
// like the small batches', and a refused guess appends nothing.
func TestAppendCopyPath(t *testing.T) {
	ctx := context.Background()
	const n = 300
	t.Run("OK", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		reg := mustMetrics(t, j)
		if _, err := j.Append(ctx, rev("a", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		for k, p := range []string{"x", "y", "z"} {
			got, err := j.Append(ctx, bigBatch(p, n)...)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range got {
				if want := int64(1 + k*n + i); a.LeafIndex != want || a.Existed {
					t.Fatalf("append %s: revision %d got %+v, want leaf %d, new", p, i, a, want)
				}
			}
		}
		if got := appendTxs(t, reg); got["careful"] != 1 || got["fast"] != 3 {
			t.Errorf("got transactions %v, want the first careful and the 3 large ones fast", got)
		}
		mustAuditClean(t, j, 1+3*n)
		if _, err := j.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"x-0", "y-150", "z-299"} {
			r, err := j.Receipt(ctx, id, 1)
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verify.VerifyReceipt(data, j.VerifierKey()); err != nil {
				t.Errorf("receipt of %s: %v", id, err)
			}
		}
	})
	t.Run("OKExistingRevision", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		reg := mustMetrics(t, j)
		if _, err := j.Append(ctx, rev("x-7", 1, `{"n":7}`)); err != nil {
			t.Fatal(err)
		}
		got, err := j.Append(ctx, bigBatch("x", n)...)
		if err != nil {
			t.Fatal(err)
		}
		if !got[7].Existed || got[7].LeafIndex != 0 || got[0].LeafIndex != 1 || got[8].LeafIndex != 8 {
			t.Errorf("got %+v, %+v, %+v: want x-7 existing at 0 and the others new from 1", got[0], got[7], got[8])
		}
		if got := appendTxs(t, reg); got["careful"] != 2 || got["fast"] != 0 {
			t.Errorf("got transactions %v, want 2 careful: the stored revision refused the COPY", got)
		}
		mustAuditClean(t, j, n)
	})
	t.Run("ErrConflictErasedRecord", func(t *testing.T) {
		j := ledgertest.MustJournal(t)
		if _, err := j.Append(ctx, rev("a", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Erase(ctx, ledger.Erasure{ID: "erasure-1", Revision: 1, Kind: "farmer.erasure.executed", Subject: "farmer 1",
			RecordIDs: []string{"x-42"}, OccurredAt: t0, SignatureRef: "operator:1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append(ctx, rev("b", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append(ctx, bigBatch("x", n)...); apperr.CodeOf(err) != apperr.Conflict {
			t.Fatalf("got %v, want conflict: x-42 was erased", err)
		}
		mustAuditClean(t, j, 3)
		if got, err := j.Append(ctx, bigBatch("y", n)...); err != nil || got[0].LeafIndex != 3 {
			t.Fatalf("got %v, want y appended from leaf 3: the refused call appended nothing", err)
		}
		mustAuditClean(t, j, 3+n)
	})
	t.Run("OKAnotherProcessAppended", func(t *testing.T) {
		j1, pool := ledgertest.MustJournalPool(t)
		j2 := mustSecondJournal(t, pool)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w, j := range []*ledger.Journal{j1, j2} {
			for c := range 2 {
				wg.Go(func() {
					for i := range 3 {
						if _, err := j.Append(ctx, bigBatch(fmt.Sprintf("j%d-c%d-%d", w, c, i), n)...); err != nil {
							errs <- err
							return
						}
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		mustAuditClean(t, j1, 12*n)
	})
}
