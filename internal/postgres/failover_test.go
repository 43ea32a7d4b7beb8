package postgres_test

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

// backendPIDs acquires n connections at once and returns their server
// process ids: which connections the pool holds.
func backendPIDs(t *testing.T, pool *pgxpool.Pool, n int) []int32 {
	t.Helper()
	ctx := context.Background()
	conns := make([]*pgxpool.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Release()
			}
		}
	}()
	pids := make([]int32, n)
	for i := range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pids[i]); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(pids)
	return pids
}

func TestOpen_Failover(t *testing.T) {
	ctx := context.Background()
	db := pgtest.MustDatabase(t)
	pool, err := postgres.Open(ctx, postgres.Config{URL: pgtest.URL(t, db), MaxConns: 3}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	before := backendPIDs(t, pool, 3)

	t.Run("OK_OtherErrorsKeepEveryConnection", func(t *testing.T) {
		if _, err := pool.Exec(ctx, "INSERT INTO t VALUES (1), (1)"); postgres.Code(err) != postgres.CodeUniqueViolation {
			t.Fatalf("got %v, want a unique violation", err)
		}
		if got := backendPIDs(t, pool, 3); !slices.Equal(got, before) {
			t.Errorf("got connections %v, want the same %v", got, before)
		}
	})

	t.Run("OK_ReadOnlyServerResetsThePool", func(t *testing.T) {
		// What a demoted primary answers every write with.
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "SET TRANSACTION READ ONLY")
		if err == nil {
			_, err = tx.Exec(ctx, "INSERT INTO t VALUES (2)")
		}
		tx.Rollback(ctx)
		if !postgres.IsNotPrimary(err) {
			t.Fatalf("got %v, want a read-only error", err)
		}
		got := backendPIDs(t, pool, 3)
		for _, pid := range got {
			if slices.Contains(before, pid) {
				t.Errorf("got connections %v after the read-only error, want none of %v", got, before)
			}
		}
		if _, err := pool.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
			t.Errorf("write after the reset: %v", err)
		}
	})

	t.Run("OK_MultiHostURLSkipsADeadHost", func(t *testing.T) {
		u, err := url.Parse(pgtest.URL(t, db))
		if err != nil {
			t.Fatal(err)
		}
		u.Host = deadAddr(t) + "," + u.Host
		q := u.Query()
		q.Set("target_session_attrs", "read-write")
		u.RawQuery = q.Encode()
		p, err := postgres.Open(ctx, postgres.Config{URL: u.String()}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("open %s: %v", postgres.Redact(u.String()), err)
		}
		defer p.Close()
		var n int
		if err := p.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
			t.Errorf("got %d rows, %v; want 1", n, err)
		}
	})
}

func TestRedact_MultiHost(t *testing.T) {
	got := postgres.Redact("postgres://tani:s3cret@db-1:5432,db-2:5432/tani?target_session_attrs=read-write")
	if want := "postgres://tani:xxxxx@db-1:5432,db-2:5432/tani?target_session_attrs=read-write"; got != want || strings.Contains(got, "s3cret") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
