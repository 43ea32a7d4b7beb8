package ledger_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
)

// TestAuditRowsStoredOutOfOrder audits journals whose rows are not stored
// in index order: the audit reads the tables as stored and must read the
// rows the stream skips by index, and pass over them when the stream
// reaches them, whatever the chunk size.
func TestAuditRowsStoredOutOfOrder(t *testing.T) {
	ctx := context.Background()
	const n = 300
	mustLog := func(t *testing.T) (*ledger.Journal, *pgxpool.Pool) {
		t.Helper()
		j, pool := ledgertest.MustJournalPool(t)
		for i := 0; i < n; i += 50 {
			var revs []ledger.Revision
			for k := i; k < i+50; k++ {
				revs = append(revs, rev(fmt.Sprintf("r%03d", k), 1, fmt.Sprintf(`{"k":%d}`, k)))
			}
			if _, err := j.Append(ctx, revs...); err != nil {
				t.Fatal(err)
			}
			if _, err := j.SignCheckpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return j, pool
	}
	reverse := func(t *testing.T, pool *pgxpool.Pool, table, key string) {
		t.Helper()
		mustExec(t, pool, fmt.Sprintf(`CREATE TEMP TABLE reversed AS SELECT * FROM %s ORDER BY %s DESC;
			DELETE FROM %s; INSERT INTO %s SELECT * FROM reversed; DROP TABLE reversed`, table, key, table, table))
	}
	audit := func(t *testing.T, j *ledger.Journal, chunk int64) *ledger.Report {
		t.Helper()
		rep, err := j.Audit(ctx, ledger.AuditOptions{ChunkSize: chunk})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	t.Run("OKRedactedRowsMoved", func(t *testing.T) {
		j, _ := mustLog(t)
		if _, err := j.Erase(ctx, ledger.Erasure{ID: "erasure-1", Revision: 1, Kind: "farmer.erasure.executed", Subject: "farmer 1",
			RecordIDs: []string{"r007", "r120", "r121", "r299"}, OccurredAt: t0, SignatureRef: "operator:1"}); err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int64{0, 16, 7} {
			if rep := audit(t, j, chunk); !rep.OK() || rep.Entries != n+5 {
				t.Errorf("chunk %d: got %d entries and faults %v, want %d and none", chunk, rep.Entries, rep.Faults, n+5)
			}
		}
	})
	t.Run("OKStoredBackwards", func(t *testing.T) {
		j, pool := mustLog(t)
		reverse(t, pool, "ledger.entries", "idx")
		reverse(t, pool, "ledger.hash_runs", "first")
		for _, chunk := range []int64{0, 64} {
			if rep := audit(t, j, chunk); !rep.OK() || rep.Entries != n {
				t.Errorf("chunk %d: got %d entries and faults %v, want %d and none", chunk, rep.Entries, rep.Faults, n)
			}
		}
	})
	t.Run("ErrDeletedWhileStoredBackwards", func(t *testing.T) {
		j, pool := mustLog(t)
		mustExec(t, pool, "DELETE FROM ledger.entries WHERE idx = 123")
		reverse(t, pool, "ledger.entries", "idx")
		for _, chunk := range []int64{0, 10} {
			rep := audit(t, j, chunk)
			if len(rep.Faults) != 1 || rep.Faults[0].Kind != ledger.FaultEntryDeleted || rep.Faults[0].Index != 123 || rep.Entries != n-1 {
				t.Errorf("chunk %d: got %d entries and faults %v, want %d and only entry 123 deleted", chunk, rep.Entries, rep.Faults, n-1)
			}
		}
	})
}
