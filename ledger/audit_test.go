package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tani-platform/tani/internal/postgres"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
)

// mustTamperable returns a journal of 40 entries with checkpoints at 10,
// 20, 30 and 40, and its pool for tampering.
func mustTamperable(t *testing.T) (*ledger.Journal, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	j, pool := ledgertest.MustJournalPool(t)
	for b := range 4 {
		var revs []ledger.Revision
		for i := range 10 {
			n := b*10 + i
			revs = append(revs, rev(fmt.Sprintf("rec-%02d", n), 1, fmt.Sprintf(`{"n":%d}`, n)))
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

// runVerify runs `tani verify` against the journal's database, as an
// operator would.
func runVerify(t *testing.T, j *ledger.Journal, pool *pgxpool.Pool) (string, error) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "ledger.pub")
	if err := os.WriteFile(key, []byte(j.VerifierKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := ledger.VerifyCommand{DB: postgres.Config{URL: pool.Config().ConnString()}, KeyFile: key}
	err := cmd.Run(context.Background(), &stdout, &stderr)
	return stdout.String(), err
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("tamper: %s: %v", sql, err)
	}
}

func TestVerifyCommand(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		j, pool := mustTamperable(t)
		out, err := runVerify(t, j, pool)
		if err != nil {
			t.Fatalf("got %v, want a clean audit\n%s", err, out)
		}
		if !strings.Contains(out, "checked 40 entries and 4 checkpoints") || !strings.HasSuffix(out, "OK\n") {
			t.Errorf("got output\n%s\nwant 40 entries, 4 checkpoints, OK", out)
		}
	})
	t.Run("OKUnsignedTail", func(t *testing.T) {
		j, pool := mustTamperable(t)
		if _, err := j.Append(context.Background(), rev("late", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		out, err := runVerify(t, j, pool)
		if err != nil || !strings.Contains(out, "the last 1 entries are not yet covered by a checkpoint") {
			t.Errorf("got %v\n%s\nwant OK with a note about 1 unsigned entry", err, out)
		}
	})

	cases := []struct {
		name   string
		tamper func(t *testing.T, pool *pgxpool.Pool)
		first  int64  // first bad index, -1 if no leaf is named
		want   string // in the output
	}{
		{"ErrEntryUpdated", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `UPDATE ledger.entries SET data = convert_to(replace(convert_from(data, 'UTF8'), 'plot.mapped', 'plot.moved!'), 'UTF8') WHERE idx = 17`)
		}, 17, "index 17: entry changed"},
		{"ErrEntryDeleted", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `DELETE FROM ledger.entries WHERE idx = 23`)
		}, 23, "index 23: entry missing"},
		{"ErrEntriesReordered", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `UPDATE ledger.entries SET idx = 1000000 WHERE idx = 11`)
			mustExec(t, pool, `UPDATE ledger.entries SET idx = 11 WHERE idx = 12`)
			mustExec(t, pool, `UPDATE ledger.entries SET idx = 12 WHERE idx = 1000000`)
		}, 11, "index 11: entry reordered: row holds the entry committed at index 12"},
		{"ErrHashRowUpdated", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `UPDATE ledger.hashes SET hash = sha256('forged') WHERE id = $1`, tlog.StoredHashIndex(1, 3))
		}, 6, fmt.Sprintf("index 6: hash row changed: stored hash %d (level 1, node 3)", tlog.StoredHashIndex(1, 3))},
		{"ErrHashRowDeleted", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `DELETE FROM ledger.hashes WHERE id = $1`, tlog.StoredHashIndex(0, 33))
		}, 33, "index 33: hash row missing"},
		{"ErrPayloadUpdated", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `UPDATE ledger.entries SET payload = '{"n":999}' WHERE idx = 5`)
		}, 5, "index 5: payload changed"},
		{"ErrPayloadErasedWithoutRedaction", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `UPDATE ledger.entries SET payload = NULL WHERE idx = 8`)
		}, 8, "index 8: payload erased"},
		{"ErrColumnUpdated", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `UPDATE ledger.entries SET record_id = 'someone-else' WHERE idx = 29`)
		}, 29, "index 29: column changed: column record_id"},
		{"ErrTailDeleted", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `DELETE FROM ledger.entries WHERE idx >= 35`)
			mustExec(t, pool, `DELETE FROM ledger.hashes WHERE id >= $1`, tlog.StoredHashIndex(0, 35))
			mustExec(t, pool, `UPDATE ledger.tree SET size = 35`)
		}, 35, "checkpoint beyond"},
		{"ErrCheckpointForged", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `UPDATE ledger.checkpoints SET note = replace(note, E'\n30\n', E'\n31\n') WHERE size = 30`)
		}, -1, "checkpoint 30: checkpoint forged"},
		{"ErrCheckpointRootColumn", func(t *testing.T, pool *pgxpool.Pool) {
			mustExec(t, pool, `UPDATE ledger.checkpoints SET root = sha256('other root') WHERE size = 20`)
		}, -1, "checkpoint 20: checkpoint forged: size or root column differs"},
		{"ErrEntryRewrittenWithItsHashes", rewriteConsistently(14), 10, "root mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j, pool := mustTamperable(t)
			c.tamper(t, pool)
			out, err := runVerify(t, j, pool)
			if err == nil {
				t.Fatalf("got nil error, want the audit to fail\n%s", out)
			}
			t.Logf("tani verify output:\n%s", out)
			if !strings.Contains(out, c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, out)
			}
			wantFirst := "FAIL\n"
			if c.first >= 0 {
				wantFirst = fmt.Sprintf("FAIL: first bad index %d\n", c.first)
			}
			if !strings.HasSuffix(out, wantFirst) {
				t.Errorf("got output\n%s\nwant it to end with %q", out, wantFirst)
			}
		})
	}
}

// rewriteConsistently changes entry idx and rewrites every stored hash to
// match, as an attacker with write access would: only the signed
// checkpoints can reveal it.
func rewriteConsistently(idx int64) func(t *testing.T, pool *pgxpool.Pool) {
	return func(t *testing.T, pool *pgxpool.Pool) {
		ctx := context.Background()
		mustExec(t, pool, `UPDATE ledger.entries SET data = convert_to(replace(convert_from(data, 'UTF8'), 'plot.mapped', 'plot.moved!'), 'UTF8'), kind = 'plot.moved!' WHERE idx = $1`, idx)
		rows, err := pool.Query(ctx, "SELECT data FROM ledger.entries ORDER BY idx")
		if err != nil {
			t.Fatal(err)
		}
		stored := map[int64]tlog.Hash{}
		r := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(ids))
			for i, id := range ids {
				out[i] = stored[id]
			}
			return out, nil
		})
		var n int64
		for rows.Next() {
			var data []byte
			if err := rows.Scan(&data); err != nil {
				t.Fatal(err)
			}
			hs, err := tlog.StoredHashes(n, data, r)
			if err != nil {
				t.Fatal(err)
			}
			for k, h := range hs {
				stored[tlog.StoredHashIndex(0, n)+int64(k)] = h
			}
			n++
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		for id, h := range stored {
			mustExec(t, pool, "UPDATE ledger.hashes SET hash = $1 WHERE id = $2", h[:], id)
		}
	}
}

// TestAuditWhileAppending audits while another goroutine appends, signs
// checkpoints and redacts: the audit reads one snapshot, so work committed
// meanwhile is never reported as a fault.
func TestAuditWhileAppending(t *testing.T) {
	j, _ := mustTamperable(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if ctx.Err() != nil {
				done <- nil
				return
			}
			id := fmt.Sprintf("busy-%d", i)
			_, err := j.Append(ctx, rev(id, 1, "{}"))
			if err == nil {
				_, err = j.SignCheckpoint(ctx)
			}
			if err == nil && i%3 == 0 {
				_, err = j.Redact(ctx, id, 1, "erasure request")
			}
			if err != nil && ctx.Err() == nil {
				done <- err
				return
			}
		}
	}()
	for range 15 {
		rep, err := j.Audit(context.Background(), ledger.AuditOptions{ChunkSize: 7})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Errorf("audit of size %d: got faults %v, want none", rep.TreeSize, rep.Faults)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
}
