package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
)

// mustStartedJournal starts a journal on pool with its key in dir, as a
// process (re)starting on the same database and data directory would.
func mustStartedJournal(t *testing.T, pool *pgxpool.Pool, dir string) *ledger.Journal {
	t.Helper()
	j, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: dir, CheckpointInterval: ledger.DefaultCheckpointInterval},
		pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(context.Background()); err != nil {
		t.Fatalf("start journal: %v", err)
	}
	return j
}

// mustGrow appends n revisions and signs a checkpoint over them.
func mustGrow(t *testing.T, j *ledger.Journal, prefix string, n int) *ledger.Checkpoint {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if _, err := j.Append(ctx, rev(fmt.Sprintf("%s-%d", prefix, i), 1, `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := j.SignCheckpoint(ctx)
	if err != nil {
		t.Fatalf("sign checkpoint: %v", err)
	}
	return cp
}

// forged is entry idx with another kind, as a rewrite would change it.
func forged(t *testing.T, pool *pgxpool.Pool, idx int64) []byte {
	t.Helper()
	var data []byte
	if err := pool.QueryRow(context.Background(), "SELECT data FROM ledger.entries WHERE idx = $1", idx).Scan(&data); err != nil {
		t.Fatal(err)
	}
	out := bytes.Replace(data, []byte("kind plot.mapped"), []byte("kind plot.forged"), 1)
	if bytes.Equal(out, data) {
		t.Fatalf("entry %d: nothing to forge in %q", idx, data)
	}
	return out
}

func wantNotExtension(t *testing.T, err error, reason string) *ledger.NotExtensionError {
	t.Helper()
	var ne *ledger.NotExtensionError
	if !errors.As(err, &ne) {
		t.Fatalf("got %v, want a NotExtensionError", err)
	}
	if !strings.Contains(ne.Reason, reason) {
		t.Errorf("got reason %q, want it to say %q", ne.Reason, reason)
	}
	return ne
}

func TestCheckExtends(t *testing.T) {
	ctx := context.Background()
	j, pool := ledgertest.MustJournalPool(t)
	cp6 := mustGrow(t, j, "a", 6)
	cp8 := mustGrow(t, j, "b", 2)

	t.Run("OK_SameTree", func(t *testing.T) {
		if err := j.CheckExtends(ctx, cp8.Size, cp8.Root); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
	t.Run("OK_Grown", func(t *testing.T) {
		if err := j.CheckExtends(ctx, cp6.Size, cp6.Root); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
	t.Run("OK_EmptyTree", func(t *testing.T) {
		if err := j.CheckExtends(ctx, 0, tlog.Hash{}); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
	t.Run("ErrShorter", func(t *testing.T) {
		ne := wantNotExtension(t, j.CheckExtends(ctx, 20, cp8.Root), "the journal holds only 8 entries")
		if ne.Size != 20 || ne.StoredSize != 8 {
			t.Errorf("got size %d, stored %d, want 20 and 8", ne.Size, ne.StoredSize)
		}
	})
	t.Run("ErrOtherRoot", func(t *testing.T) {
		other := tlog.RecordHash([]byte("another tree"))
		wantNotExtension(t, j.CheckExtends(ctx, cp6.Size, other), fmt.Sprintf("the stored tree at size 6 has root %s", cp6.Root))
	})
	t.Run("ErrTopHashRewritten", func(t *testing.T) {
		// Only the hash of the complete subtree [0, 8) is changed: the tree
		// at size 6 still hashes right, but the stored tree of size 8 no
		// longer extends it. Signing it would sign a fork.
		j, pool := ledgertest.MustJournalPool(t)
		cp6 := mustGrow(t, j, "a", 6)
		mustGrow(t, j, "b", 2)
		forged := tlog.RecordHash([]byte("forged"))
		ledgertest.MustSetStoredHash(t, pool, tlog.StoredHashIndex(3, 0), forged[:])
		wantNotExtension(t, j.CheckExtends(ctx, cp6.Size, cp6.Root), "the stored tree of size 8")
	})
	t.Run("ErrHashRowDeleted", func(t *testing.T) {
		j, pool := ledgertest.MustJournalPool(t)
		cp := mustGrow(t, j, "a", 6)
		ledgertest.MustDeleteStoredHashes(t, pool, tlog.StoredHashIndex(1, 2), tlog.StoredHashIndex(1, 2)+1)
		wantNotExtension(t, j.CheckExtends(ctx, cp.Size, cp.Root), fmt.Sprintf("stored hash %d is missing", tlog.StoredHashIndex(1, 2)))
	})
	t.Run("ErrLeafRewrittenWithItsHashes", func(t *testing.T) {
		ledgertest.MustRewriteLeaf(t, pool, 3, forged(t, pool, 3))
		wantNotExtension(t, j.CheckExtends(ctx, cp6.Size, cp6.Root), "the stored tree at size 6 has root")
		wantNotExtension(t, j.CheckExtends(ctx, cp8.Size, cp8.Root), "the stored tree at size 8 has root")
	})
}

// TestFailClosed rewrites history under a journal and checks that it stops
// signing, says why, and finds the fork again when restarted.
func TestFailClosed(t *testing.T) {
	ctx := context.Background()

	t.Run("ErrRewrittenHistoryHaltsSigning", func(t *testing.T) {
		pool, dir := pgtest.MustDB(t, ledger.Migrations), t.TempDir()
		j := mustStartedJournal(t, pool, dir)
		reg := prometheus.NewRegistry()
		if err := j.RegisterMetrics(reg); err != nil {
			t.Fatal(err)
		}
		srv := mustServer(t, j)
		cp := mustGrow(t, j, "a", 10)

		ledgertest.MustRewriteLeaf(t, pool, 4, forged(t, pool, 4))
		if _, err := j.Append(ctx, rev("after-the-rewrite", 1, `{}`)); err != nil {
			t.Fatalf("append: %v", err)
		}
		_, err := j.SignCheckpoint(ctx)
		if !apperr.Is(err, apperr.Unavailable) {
			t.Fatalf("sign checkpoint: got %v, want unavailable", err)
		}
		ne := wantNotExtension(t, err, "the stored tree at size 10 has root")
		if ne.Size != cp.Size || ne.Root != cp.Root || ne.Source != "checkpoint 10, signed with the journal's key" {
			t.Errorf("got fork of %d %s (%s), want of the signed checkpoint 10 %s", ne.Size, ne.Root, ne.Source, cp.Root)
		}
		if j.Halted() != err {
			t.Errorf("Halted() = %v, want %v", j.Halted(), err)
		}
		var n int
		pool.QueryRow(ctx, "SELECT count(*) FROM ledger.checkpoints").Scan(&n)
		if n != 1 {
			t.Errorf("got %d checkpoints, want only the one signed before the rewrite", n)
		}
		if _, err := j.Receipt(ctx, "a-1", 1); !apperr.Is(err, apperr.Unavailable) {
			t.Errorf("receipt: got %v, want unavailable", err)
		}
		for _, path := range []string{"/ledger/v1/checkpoint", "/ledger/v1/records/a-1/receipt", "/ledger/v1/records/a-1/receipt?tree_size=10", "/ledger/v1/proof/consistency?from=1&to=10"} {
			code, _, body := get(t, srv, path)
			if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "not a consistent extension of tree size 10") {
				t.Errorf("GET %s: got %d %s, want 503 naming the fork", path, code, body)
			}
		}
		// The checkpoints signed before stay readable: they are evidence.
		if code, _, body := get(t, srv, "/ledger/v1/checkpoints/10"); code != http.StatusOK {
			t.Errorf("GET /checkpoints/10: got %d %s, want 200", code, body)
		}
		if got := metricValue(t, reg, "tani_ledger_fork_detected"); got != 1 {
			t.Errorf("tani_ledger_fork_detected = %v, want 1", got)
		}

		t.Run("ErrRestartFindsItAgain", func(t *testing.T) {
			again := mustStartedJournal(t, pool, dir)
			wantNotExtension(t, again.Halted(), "the stored tree at size 10 has root")
			if _, err := again.SignCheckpoint(ctx); !apperr.Is(err, apperr.Unavailable) {
				t.Errorf("sign checkpoint after restart: got %v, want unavailable", err)
			}
		})
	})
	t.Run("ErrChainAnchorNotExtended", func(t *testing.T) {
		j, _ := ledgertest.MustJournalPool(t)
		mustGrow(t, j, "a", 5)
		anchored := tlog.RecordHash([]byte("a tree this journal never held"))
		wantNotExtension(t, j.PinAnchor(ctx, 5, anchored, "tx-1"), "the stored tree at size 5 has root")
		if err := j.Halted(); !strings.Contains(fmt.Sprint(err), "the chain's latest anchor, tx tx-1") {
			t.Errorf("Halted() = %v, want it to name the anchor", err)
		}
	})
	t.Run("ErrTruncatedBelowTheAnchor", func(t *testing.T) {
		j, pool := ledgertest.MustJournalPool(t)
		cp := mustGrow(t, j, "a", 9)
		if err := j.PinAnchor(ctx, cp.Size, cp.Root, "tx-1"); err != nil {
			t.Fatalf("pin the anchor of the stored tree: %v", err)
		}
		ledgertest.MustDeleteStoredHashes(t, pool, tlog.StoredHashIndex(0, 7), -1)
		for _, sql := range []string{"DELETE FROM ledger.entries WHERE idx >= 7",
			"DELETE FROM ledger.checkpoints", "UPDATE ledger.tree SET size = 7"} {
			if _, err := pool.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := j.Append(ctx, rev("after", 1, `{}`)); err != nil {
			t.Fatal(err)
		}
		_, err := j.SignCheckpoint(ctx)
		wantNotExtension(t, err, "the journal holds only 8 entries")
	})
	t.Run("ErrEntryRewrittenWithoutItsHashes", func(t *testing.T) {
		// The root still checks out, but the receipt would not: the
		// journal refuses to hand it out, and halts.
		j, pool := ledgertest.MustJournalPool(t)
		mustGrow(t, j, "a", 4)
		if _, err := pool.Exec(ctx, "UPDATE ledger.entries SET data = $1 WHERE idx = 2", forged(t, pool, 2)); err != nil {
			t.Fatal(err)
		}
		_, err := j.Receipt(ctx, "a-2", 1)
		if !apperr.Is(err, apperr.Unavailable) || !strings.Contains(err.Error(), "leaf 2 does not prove into checkpoint 4") {
			t.Fatalf("receipt: got %v, want unavailable naming leaf 2", err)
		}
		if _, err := j.Receipt(ctx, "a-1", 1); !apperr.Is(err, apperr.Unavailable) {
			t.Errorf("receipt of an untouched entry: got %v, want unavailable (halted)", err)
		}
	})
	t.Run("OK_GrowthKeepsSigning", func(t *testing.T) {
		j, _ := ledgertest.MustJournalPool(t)
		first := mustGrow(t, j, "a", 3)
		if err := j.PinAnchor(ctx, first.Size, first.Root, "tx-1"); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if cp := mustGrow(t, j, fmt.Sprintf("b%d", i), i+1); cp == nil {
				t.Fatal("no checkpoint")
			}
		}
		if _, err := j.Receipt(ctx, "a-0", 1); err != nil || j.Halted() != nil {
			t.Errorf("receipt: %v, halted: %v, want neither", err, j.Halted())
		}
	})
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// TestCheckExtendsAcrossRuns checks a tree whose stored hashes are two
// runs, the second extending the first (one per append): the journal's
// consistency check and proof read the hashes of both.
func TestCheckExtendsAcrossRuns(t *testing.T) {
	ctx := context.Background()
	j, pool := ledgertest.MustJournalPool(t)
	grow := func(prefix string, n int) *ledger.Checkpoint {
		t.Helper()
		var revs []ledger.Revision
		for i := range n {
			revs = append(revs, rev(fmt.Sprintf("%s-%d", prefix, i), 1, `{}`))
		}
		if _, err := j.Append(ctx, revs...); err != nil {
			t.Fatal(err)
		}
		cp, err := j.SignCheckpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	cp6 := grow("a", 6)
	cp11 := grow("b", 5)
	rows, _ := pool.Query(ctx, "SELECT first FROM ledger.hash_runs ORDER BY first")
	firsts, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, tlog.StoredHashIndex(0, 6)}; !slices.Equal(firsts, want) {
		t.Fatalf("got runs at %v, want %v (one per append)", firsts, want)
	}
	if err := j.CheckExtends(ctx, cp6.Size, cp6.Root); err != nil {
		t.Errorf("CheckExtends(6): got %v, want nil", err)
	}
	p, err := j.ConsistencyProof(ctx, cp6.Size, cp11.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 6, 11, hashes(p), cp6.Root[:], cp11.Root[:]); err != nil {
		t.Errorf("consistency 6→11: %v", err)
	}
	// The hash of [8, 10) lies in the second run, and the tree of size
	// 11 needs it: edited, the stored tree no longer gives the signed root.
	forged := tlog.RecordHash([]byte("forged"))
	ledgertest.MustSetStoredHash(t, pool, tlog.StoredHashIndex(1, 4), forged[:])
	wantNotExtension(t, j.CheckExtends(ctx, cp11.Size, cp11.Root), "the stored tree at size 11 has root")
}
