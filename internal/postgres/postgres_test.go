package postgres_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	t.Run("OK_CreatesMissingDatabase", func(t *testing.T) {
		name := "tani_test_open_" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_"))[len("TestOpen_"):]
		admin, err := pgx.Connect(ctx, pgtest.URL(t, "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		// Cleanups run last in, first out: the drop, then the close. (A
		// deferred close ran before the drop, which then failed unseen and
		// left the database behind after every run.)
		t.Cleanup(func() { admin.Close(context.Background()) })
		admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		t.Cleanup(func() {
			if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
				t.Errorf("drop %s: %v", name, err)
			}
		})

		pool, err := postgres.Open(ctx, postgres.Config{URL: pgtest.URL(t, name)}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		pool.Close()
		var exists bool
		admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname=$1)", name).Scan(&exists)
		if !exists {
			t.Fatalf("database %s was not created", name)
		}
	})
	t.Run("ErrUnreachable_NamesURLWithoutPassword", func(t *testing.T) {
		_, err := postgres.Open(ctx, postgres.Config{URL: "postgres://tani:s3cret@127.0.0.1:1/tani?sslmode=disable&connect_timeout=2"}, slog.New(slog.DiscardHandler))
		if err == nil {
			t.Fatal("Open succeeded against a closed port")
		}
		msg := err.Error()
		if !strings.Contains(msg, "127.0.0.1:1") || !strings.Contains(msg, "TANI_DATABASE_URL") {
			t.Errorf("error %q does not name the URL and the remedy", msg)
		}
		if strings.Contains(msg, "s3cret") {
			t.Errorf("error %q leaks the password", msg)
		}
	})
}

func TestMustDB_PostGISAndErrors(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t)
	var area float64
	err := pool.QueryRow(ctx, `SELECT ST_Area(ST_GeogFromText('POLYGON((110 -7, 110.001 -7, 110.001 -7.001, 110 -7.001, 110 -7))'))`).Scan(&area)
	if err != nil {
		t.Fatalf("PostGIS query: %v", err)
	}
	if area < 12000 || area > 12400 { // about 110.5 m x 110.6 m near the equator
		t.Errorf("area = %.0f m², want about 12,200 m²", area)
	}
	pool.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)")
	pool.Exec(ctx, "INSERT INTO t VALUES (1)")
	_, err = pool.Exec(ctx, "INSERT INTO t VALUES (1)")
	if got := apperr.CodeOf(postgres.MapError(err, "no t", "t exists")); got != apperr.Conflict {
		t.Errorf("unique violation mapped to %q, want %q", got, apperr.Conflict)
	}
	err = pool.QueryRow(ctx, "SELECT id FROM t WHERE id = 2").Scan(new(int))
	if got := apperr.CodeOf(postgres.MapError(err, "no t", "t exists")); got != apperr.NotFound {
		t.Errorf("no rows mapped to %q, want %q", got, apperr.NotFound)
	}
}

// TestOpen_PrimesPostGIS checks that, when asked, every new connection
// computes one spheroidal area when PostGIS is installed, in whatever
// schema, so that a backend's one-time set-up of the spheroid happens as
// it opens (the server counts the call: track_functions), and that a
// database without PostGIS, or a pool not asked to, opens as before.
// Nothing is logged: a failing priming would be.
func TestOpen_PrimesPostGIS(t *testing.T) {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgtest.URL(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	fresh := func(t *testing.T) string {
		name := "tani_test_prime_" + strings.ToLower(t.Name()[strings.LastIndex(t.Name(), "/")+1:])
		admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
		if _, err := admin.Exec(ctx, "ALTER DATABASE "+name+" SET track_functions = 'all'"); err != nil {
			t.Fatal(err)
		}
		return name
	}
	// open opens a one-connection pool and returns how many times that
	// connection computed a spheroidal area, with what was logged.
	open := func(t *testing.T, name string, prime bool) (calls int64, logged string) {
		var log strings.Builder
		cfg := postgres.Config{URL: pgtest.URL(t, name), MaxConns: 1, PrimeGeography: prime}
		pool, err := postgres.Open(ctx, cfg, slog.New(slog.NewTextHandler(&log, nil)))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer pool.Close()
		// The backend reports its counts once idle after this.
		if _, err := pool.Exec(ctx, "SELECT pg_stat_force_next_flush()"); err != nil {
			t.Fatal(err)
		}
		err = pool.QueryRow(ctx, `SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
			WHERE funcname = 'st_area' AND pg_get_function_arguments(funcid) LIKE 'geog %geography%'`).Scan(&calls)
		if err != nil {
			t.Fatal(err)
		}
		return calls, log.String()
	}

	withPostGIS := func(t *testing.T) string {
		name := fresh(t)
		conn, err := pgx.Connect(ctx, pgtest.URL(t, name))
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Exec(ctx, "CREATE SCHEMA gis; CREATE EXTENSION postgis SCHEMA gis")
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return name
	}

	t.Run("OK_PostGISInItsOwnSchema", func(t *testing.T) {
		calls, logged := open(t, withPostGIS(t), true)
		if calls != 1 {
			t.Errorf("the new connection computed %d geography areas, want 1 (primed)", calls)
		}
		if logged != "" {
			t.Errorf("Open logged %q, want nothing", logged)
		}
	})
	t.Run("OK_NoPostGIS", func(t *testing.T) {
		calls, logged := open(t, fresh(t), true)
		if calls != 0 || logged != "" {
			t.Errorf("without PostGIS: %d areas computed, logged %q; want none and nothing", calls, logged)
		}
	})
	t.Run("OK_NotAsked", func(t *testing.T) {
		calls, logged := open(t, withPostGIS(t), false)
		if calls != 0 || logged != "" {
			t.Errorf("not asked to prime: %d areas computed, logged %q; want none and nothing", calls, logged)
		}
	})
}
