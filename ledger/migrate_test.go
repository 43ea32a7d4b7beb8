package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
)

// TestMigrateHashesIntoRuns fills ledger.hashes as the journal did before
// 00050_hash_runs (a tree of more than 4,096 stored hashes, and stray rows
// after a gap), migrates up, and checks that the ledger.hashes view gives
// the same rows, that the runs split at 4,096 hashes and at the gap, that
// the journal signs the same root and proves into it, and appends on top
// of the migrated runs; then migrates down and checks the table again.
func TestMigrateHashesIntoRuns(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	p, err := goose.NewProvider(goose.DialectPostgres, db, ledger.Migrations.FS,
		goose.WithTableName("goose_"+ledger.Migrations.Name), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 40); err != nil {
		t.Fatal(err)
	}

	// The tree of size n, its stored hashes computed here.
	const n = 3000
	stored := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ids))
		for i, id := range ids {
			h, ok := stored[id]
			if !ok {
				return nil, fmt.Errorf("no stored hash %d", id)
			}
			out[i] = h
		}
		return out, nil
	})
	for i := range int64(n) {
		hs, err := tlog.StoredHashes(i, leafData(i), reader)
		if err != nil {
			t.Fatal(err)
		}
		for k, h := range hs {
			stored[tlog.StoredHashIndex(0, i)+int64(k)] = h
		}
	}
	end := tlog.StoredHashIndex(0, n)
	if end <= 4096 {
		t.Fatalf("the tree has %d stored hashes: too few to need more than one run", end)
	}
	// Rows past the tree after a gap: no append writes them, but the
	// migration must keep them apart, not glue them onto the tree's.
	const stray, gap = 3, 5
	for k := range int64(stray) {
		stored[end+gap+k] = tlog.RecordHash([]byte(fmt.Sprintf("stray %d", k)))
	}
	ids := make([]int64, 0, len(stored))
	for id := range stored {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	before := make([][]any, len(ids))
	for i, id := range ids {
		h := stored[id]
		before[i] = []any{id, h[:]}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"ledger", "hashes"}, []string{"id", "hash"}, pgx.CopyFromRows(before)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE ledger.tree SET size = $1", n); err != nil {
		t.Fatal(err)
	}

	if _, err := p.UpTo(ctx, 50); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	if got := hashRows(t, pool); !slices.EqualFunc(got, before, func(g hashRowT, b []any) bool {
		return g.id == b[0].(int64) && string(g.hash) == string(b[1].([]byte))
	}) {
		t.Fatalf("the ledger.hashes view gives %d rows, not the %d the table held", len(got), len(before))
	}
	var firsts []int64
	rows, _ := pool.Query(ctx, "SELECT first FROM ledger.hash_runs ORDER BY first")
	if firsts, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		t.Fatal(err)
	}
	var want []int64
	for f := int64(0); f < end; f += 4096 {
		want = append(want, f)
	}
	want = append(want, end+gap)
	if !slices.Equal(firsts, want) {
		t.Errorf("got runs at %v, want %v", firsts, want)
	}

	// The journal reads the runs: it signs the tree's root, proves into
	// it, and appends after them (careful path, then one round trip
	// through the guard).
	if _, err := pool.Exec(ctx, "DELETE FROM ledger.hash_runs WHERE first = $1", end+gap); err != nil {
		t.Fatal(err)
	}
	j, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: t.TempDir(), CheckpointInterval: ledger.DefaultCheckpointInterval},
		pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	root, err := tlog.TreeHash(n, reader)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := j.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != n || cp.Root != root {
		t.Fatalf("signed size %d root %s, want %d and %s", cp.Size, cp.Root, n, root)
	}
	for _, idx := range []int64{0, 1, 2047, 2048, 2999} {
		pr, err := j.InclusionProof(ctx, idx, n)
		if err != nil {
			t.Fatal(err)
		}
		leaf := tlog.RecordHash(leafData(idx))
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(idx), n, leaf[:], hashes(pr), root[:]); err != nil {
			t.Errorf("inclusion of %d: %v", idx, err)
		}
	}
	for range 2 {
		if _, err := j.Append(ctx, rev(fmt.Sprintf("after-%d", cp.Size), 1, `{}`)); err != nil {
			t.Fatalf("append after the migrated runs: %v", err)
		}
		next, err := j.SignCheckpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := j.ConsistencyProof(ctx, n, next.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, n, uint64(next.Size), hashes(pr), root[:], next.Root[:]); err != nil {
			t.Errorf("consistency %d→%d: %v", n, next.Size, err)
		}
		cp = next
	}
	after := hashRows(t, pool)

	if _, err := p.DownTo(ctx, 40); err != nil {
		t.Fatalf("migrate down: %v", err)
	}
	var kind string
	if err := pool.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = 'ledger.hashes'::regclass").Scan(&kind); err != nil || kind != "r" {
		t.Fatalf("ledger.hashes is %q (%v), want a table again", kind, err)
	}
	if got := hashRows(t, pool); !slices.EqualFunc(got, after, func(a, b hashRowT) bool { return a.id == b.id && string(a.hash) == string(b.hash) }) {
		t.Errorf("the table holds %d rows after migrating down, want the %d the view gave", len(got), len(after))
	}
	// The old guard is back and reads the table.
	if _, err := pool.Exec(ctx, "SELECT ledger.append_guard($1, $2, $3, $4)", cp.Size, []int64{}, [][]byte{}, []string{}); err != nil {
		t.Errorf("old guard: %v", err)
	}
	if _, err := j.Append(ctx, rev("after-down", 1, `{}`)); err == nil {
		t.Errorf("append after migrating down: got nil, want an error (no ledger.hash_runs)")
	}
}

// leafData is leaf i of TestMigrateHashesIntoRuns's tree.
func leafData(i int64) []byte { return []byte(fmt.Sprintf("leaf %d", i)) }

type hashRowT struct {
	id   int64
	hash []byte
}

// hashRows reads ledger.hashes (table or view) in id order.
func hashRows(t *testing.T, pool *pgxpool.Pool) []hashRowT {
	t.Helper()
	rows, _ := pool.Query(context.Background(), "SELECT id, hash FROM ledger.hashes ORDER BY id")
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hashRowT, error) {
		var h hashRowT
		err := r.Scan(&h.id, &h.hash)
		return h, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
