// Package ledgertest gives tests a started journal on a fresh database.
// It must never be imported by non-test code.
package ledgertest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
)

// MustJournal returns a started journal on a new migrated database, with its
// key generated into a temporary directory. The checkpoint loop is not run;
// call SignCheckpoint (receipts sign on demand).
func MustJournal(tb testing.TB) *ledger.Journal {
	tb.Helper()
	j, _ := MustJournalPool(tb)
	return j
}

// MustJournalPool is MustJournal that also returns the pool, for tests that
// inspect or tamper with the ledger tables.
func MustJournalPool(tb testing.TB) (*ledger.Journal, *pgxpool.Pool) {
	tb.Helper()
	pool := pgtest.MustDB(tb, ledger.Migrations)
	cfg := ledger.Config{
		Origin:             "test.tani.local/ledger",
		DataDir:            tb.TempDir(),
		CheckpointInterval: ledger.DefaultCheckpointInterval,
	}
	j, err := ledger.New(cfg, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("new journal: %v", err)
	}
	if err := j.Start(context.Background()); err != nil {
		tb.Fatalf("start journal: %v", err)
	}
	return j, pool
}
