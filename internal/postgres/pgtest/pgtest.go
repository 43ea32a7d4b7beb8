// Package pgtest gives each test a fresh PostgreSQL database cloned from a
// template that already has the migrations applied. Templates are named by a
// hash of the migrations' content, so they are built once per change and
// shared by every test package, and a stale template is never reused.
// It must never be imported by non-test code.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/postgres"
)

// EnvURL names the variable that points tests at a server other than the
// local default. Its database part is ignored.
const EnvURL = "TANI_TEST_DATABASE_URL"

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	templatesMu sync.Mutex
	templates   = map[string]bool{}
)

// URL returns the URL of the server tests run against, with the given database.
func URL(tb testing.TB, database string) string {
	tb.Helper()
	base := os.Getenv(EnvURL)
	if base == "" {
		base = defaultURL
	}
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		tb.Fatalf("parse %s: %v", EnvURL, err)
	}
	sslmode := "disable"
	if cfg.TLSConfig != nil {
		sslmode = "require"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=%s", cfg.User, cfg.Host, cfg.Port, database, sslmode)
}

// MustDB returns a pool on a new database that has the platform migrations
// and then the given sets applied. The database is dropped when the test ends.
func MustDB(tb testing.TB, sets ...postgres.Migrations) *pgxpool.Pool {
	tb.Helper()
	return MustPool(tb, MustDatabase(tb, sets...))
}

// MustPool opens a pool on an existing test database, closed when the test
// ends.
func MustPool(tb testing.TB, database string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), URL(tb, database))
	if err != nil {
		tb.Fatalf("open test database: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// MustDatabase creates a new migrated database and returns its name, for
// tests that hand a URL to the code under test (end-to-end tests).
func MustDatabase(tb testing.TB, sets ...postgres.Migrations) string {
	tb.Helper()
	ctx := context.Background()
	all := append([]postgres.Migrations{postgres.Platform}, sets...)
	tpl, err := ensureTemplate(ctx, tb, all)
	if err != nil {
		tb.Fatalf("build template database: %v", err)
	}
	admin := mustAdmin(tb)
	defer admin.Close(ctx)
	name := "tani_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tpl)); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), URL(tb, "postgres"))
		if err != nil {
			tb.Logf("drop %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop %s: %v", name, err)
		}
	})
	return name
}

// ensureTemplate builds the template for these migration sets once across
// all test processes (a PostgreSQL advisory lock serializes the builders).
func ensureTemplate(ctx context.Context, tb testing.TB, sets []postgres.Migrations) (string, error) {
	sum, err := fingerprint(sets)
	if err != nil {
		return "", err
	}
	name := "tani_tpl_" + sum[:16]
	templatesMu.Lock()
	defer templatesMu.Unlock()
	if templates[name] {
		return name, nil
	}
	admin := mustAdmin(tb)
	defer admin.Close(ctx)
	h := fnv.New64a()
	h.Write([]byte(name))
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(h.Sum64())); err != nil {
		return "", err
	}
	defer admin.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(h.Sum64()))

	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		building := name + "_b"
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
			return "", err
		}
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
			return "", err
		}
		pool, err := pgxpool.New(ctx, URL(tb, building))
		if err != nil {
			return "", err
		}
		err = postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler), sets...)
		pool.Close()
		if err != nil {
			return "", err
		}
		// Rename only once complete, so a crashed build is never used.
		if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, name)); err != nil {
			return "", err
		}
	}
	templates[name] = true
	return name, nil
}

func mustAdmin(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, URL(tb, "postgres"))
	if err != nil {
		tb.Fatalf("connect to test postgres (run `make setup`, or set %s): %v", EnvURL, err)
	}
	return c
}

// fingerprint hashes every migration file of every set, in order.
func fingerprint(sets []postgres.Migrations) (string, error) {
	h := sha256.New()
	for _, set := range sets {
		fmt.Fprintf(h, "set %s\n", set.Name)
		var names []string
		err := fs.WalkDir(set.FS, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".sql") {
				names = append(names, path)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("list migrations of %s: %w", set.Name, err)
		}
		sort.Strings(names)
		for _, n := range names {
			f, err := set.FS.Open(n)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "file %s\n", n)
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
