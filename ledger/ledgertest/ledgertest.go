// Package ledgertest gives tests a started journal on a fresh database.
// It must never be imported by non-test code.
package ledgertest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

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

// MustRewriteLeaf rewrites leaf idx of the stored journal to data, with
// every stored hash recomputed, as someone with write access to the
// database but without the signing key would: the stored tree is
// consistent with itself afterwards, and only its roots differ from what
// was signed and anchored. It changes only ledger.entries.data of that leaf
// and ledger.hashes.
func MustRewriteLeaf(tb testing.TB, pool *pgxpool.Pool, idx int64, data []byte) {
	tb.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var size int64
	if err := tx.QueryRow(ctx, "SELECT size FROM ledger.tree").Scan(&size); err != nil {
		tb.Fatal(err)
	}
	if idx < 0 || idx >= size {
		tb.Fatalf("rewrite leaf %d: outside the tree of size %d", idx, size)
	}
	rows, err := tx.Query(ctx, "SELECT data FROM ledger.entries WHERE idx < $1 ORDER BY idx", size)
	if err != nil {
		tb.Fatal(err)
	}
	leaves, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		tb.Fatal(err)
	}
	if int64(len(leaves)) != size {
		tb.Fatalf("rewrite leaf %d: %d entries stored for a tree of size %d", idx, len(leaves), size)
	}
	leaves[idx] = data
	hashes := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ids))
		for i, id := range ids {
			out[i] = hashes[id]
		}
		return out, nil
	})
	var ids []int64
	var values [][]byte
	for n, leaf := range leaves {
		hs, err := tlog.StoredHashes(int64(n), leaf, reader)
		if err != nil {
			tb.Fatal(err)
		}
		for k, h := range hs {
			id := tlog.StoredHashIndex(0, int64(n)) + int64(k)
			hashes[id] = h
			ids, values = append(ids, id), append(values, h[:])
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE ledger.entries SET data = $2 WHERE idx = $1", idx, data); err != nil {
		tb.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE ledger.hashes h SET hash = u.hash FROM unnest($1::bigint[], $2::bytea[]) AS u(id, hash)
		WHERE h.id = u.id AND h.hash <> u.hash`, ids, values); err != nil {
		tb.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		tb.Fatal(err)
	}
}
