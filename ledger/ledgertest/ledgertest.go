// Package ledgertest gives tests a started journal on a fresh database.
// It must never be imported by non-test code.
package ledgertest

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"slices"
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
// and the stored hashes (ledger.hash_runs), in place.
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
	for n, leaf := range leaves {
		hs, err := tlog.StoredHashes(int64(n), leaf, reader)
		if err != nil {
			tb.Fatal(err)
		}
		for k, h := range hs {
			hashes[tlog.StoredHashIndex(0, int64(n))+int64(k)] = h
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE ledger.entries SET data = $2 WHERE idx = $1", idx, data); err != nil {
		tb.Fatal(err)
	}
	runs, err := tx.Query(ctx, "SELECT first, hashes FROM ledger.hash_runs ORDER BY first")
	if err != nil {
		tb.Fatal(err)
	}
	changed, err := collectRuns(runs)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range changed {
		want := slices.Clone(r.hashes)
		for k := 0; (k+1)*tlog.HashSize <= len(want); k++ {
			if h, ok := hashes[r.first+int64(k)]; ok {
				copy(want[k*tlog.HashSize:], h[:])
			}
		}
		if bytes.Equal(want, r.hashes) {
			continue
		}
		if _, err := tx.Exec(ctx, "UPDATE ledger.hash_runs SET hashes = $2 WHERE first = $1", r.first, want); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		tb.Fatal(err)
	}
}

// MustStoredHash returns stored hash id, read from the run holding it
// (ledger.hash_runs), or fails the test when no run holds it.
func MustStoredHash(tb testing.TB, pool *pgxpool.Pool, id int64) tlog.Hash {
	tb.Helper()
	var b []byte
	err := pool.QueryRow(context.Background(), `
		SELECT substring(hashes FROM ($1 - first)::int * 32 + 1 FOR 32) FROM ledger.hash_runs
		WHERE first = (SELECT max(first) FROM ledger.hash_runs WHERE first <= $1)
			AND ($1 - first + 1) * 32 <= octet_length(hashes)`, id).Scan(&b)
	if err != nil {
		tb.Fatalf("stored hash %d: %v", id, err)
	}
	return tlog.Hash(b)
}

// MustSetStoredHash overwrites stored hash id with h inside the run
// holding it, as someone with write access to the database would edit one
// hash. It fails the test when no run holds id.
func MustSetStoredHash(tb testing.TB, pool *pgxpool.Pool, id int64, h []byte) {
	tb.Helper()
	if len(h) != tlog.HashSize {
		tb.Fatalf("set stored hash %d: %d bytes, want %d", id, len(h), tlog.HashSize)
	}
	tag, err := pool.Exec(context.Background(), `
		UPDATE ledger.hash_runs SET hashes = overlay(hashes PLACING $2 FROM ($1 - first)::int * 32 + 1 FOR 32)
		WHERE first = (SELECT max(first) FROM ledger.hash_runs WHERE first <= $1)
			AND ($1 - first + 1) * 32 <= octet_length(hashes)`, id, h)
	if err != nil {
		tb.Fatalf("set stored hash %d: %v", id, err)
	}
	if tag.RowsAffected() != 1 {
		tb.Fatalf("set stored hash %d: no run holds it", id)
	}
}

// MustDeleteStoredHashes removes the stored hashes with ids in [lo, hi)
// (hi < 0: every id from lo), splitting the runs that hold them into the
// parts before and after, as if those hashes had never been written.
func MustDeleteStoredHashes(tb testing.TB, pool *pgxpool.Pool, lo, hi int64) {
	tb.Helper()
	if hi < 0 {
		hi = math.MaxInt64
	}
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `DELETE FROM ledger.hash_runs
		WHERE first < $2 AND first + octet_length(hashes) / 32 > $1 RETURNING first, hashes`, lo, hi)
	if err != nil {
		tb.Fatalf("delete stored hashes [%d, %d): %v", lo, hi, err)
	}
	cut, err := collectRuns(rows)
	if err != nil {
		tb.Fatalf("delete stored hashes [%d, %d): %v", lo, hi, err)
	}
	for _, r := range cut {
		n := int64(len(r.hashes) / tlog.HashSize)
		if lo > r.first {
			if _, err := tx.Exec(ctx, "INSERT INTO ledger.hash_runs (first, hashes) VALUES ($1, $2)", r.first, r.hashes[:(lo-r.first)*tlog.HashSize]); err != nil {
				tb.Fatal(err)
			}
		}
		if hi < r.first+n {
			if _, err := tx.Exec(ctx, "INSERT INTO ledger.hash_runs (first, hashes) VALUES ($1, $2)", hi, r.hashes[(hi-r.first)*tlog.HashSize:]); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		tb.Fatal(err)
	}
}

// hashRun is a ledger.hash_runs row: the stored hashes of ids first,
// first+1, … concatenated.
type hashRun struct {
	first  int64
	hashes []byte
}

// collectRuns reads rows of (first, hashes).
func collectRuns(rows pgx.Rows) ([]hashRun, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (hashRun, error) {
		var r hashRun
		err := row.Scan(&r.first, &r.hashes)
		return r, err
	})
}
