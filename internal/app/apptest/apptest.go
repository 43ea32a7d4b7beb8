// Package apptest boots a whole Tani process inside a test, exactly as
// `tani up` does (same flag parsing, same app.Run), on a random port with a
// fresh database and data directory. It must never be imported by non-test
// code.
package apptest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/cli"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
)

// Running is a started process.
type Running struct {
	URL           string        // http://127.0.0.1:port
	DB            *pgxpool.Pool // the process's database, for assertions
	OperatorToken string        // bearer token for /admin/v1
	DatabaseURL   string        // pass as -database.url to a second process sharing the database
	DataDir       string        // the process's -data-dir
	LedgerKeyFile string        // the journal's signer key file (for `tani verify -ledger.key-file`)
	App           *app.App
	logs          testWriter
	stop          context.CancelFunc
	done          chan error
}

// MustStart runs `tani up` with args added to test defaults (random port,
// fresh database, temp data dir, embedded NATS) and waits until ready. The
// process is stopped when the test ends, and a failed shutdown fails it.
func MustStart(tb testing.TB, args ...string) *Running {
	tb.Helper()
	return MustStartWithEnv(tb, nil, args...)
}

// MustStartWithEnv is MustStart with TANI_* variables from env (a settings
// file such as `tani network init`'s tani-<MSP>.env), read as the binary
// reads its environment: flags win.
func MustStartWithEnv(tb testing.TB, env map[string]string, args ...string) *Running {
	tb.Helper()
	w := newTestWriter(tb)
	r := &Running{logs: w}
	// Every schema, as `tani migrate` leaves a database before split
	// targets start (and from a cached template: fast).
	dbName := pgtest.MustDatabase(tb, app.Migrations()[1:]...)
	operatorToken := "test-operator-" + dbName
	defaults := []string{
		"-auth.operator-token=" + operatorToken,
		"-http.listen=127.0.0.1:0",
		"-database.url=" + pgtest.URL(tb, dbName),
		"-data-dir=" + tb.TempDir(),
		"-fabric.devnet-listen=127.0.0.1:0",
		"-log.format=text",
		"-log.level=warn",
	}
	fromEnv := func(k string) string { return env[k] }
	cfg, err := cli.ParseUp(append(defaults, args...), io.Discard, fromEnv)
	if err != nil {
		tb.Fatalf("parse up flags: %v", err)
	}
	if !slices.Contains(cfg.Targets(), app.All) && cfg.PII.KeyFile == "" && cfg.Auth.SigningKeyFile == "" && cfg.Ledger.KeyFile == "" {
		// A split process generates no keys: give it the test's deployment keys.
		defaults = append(defaults, mustDeploymentKeys(tb, cfg.Ledger.Origin)...)
		if cfg, err = cli.ParseUp(append(defaults, args...), io.Discard, fromEnv); err != nil {
			tb.Fatalf("parse up flags: %v", err)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		tb.Fatalf("log level: %v", err)
	}
	if os.Getenv("TANI_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	a, err := app.New(cfg, logger)
	if err != nil {
		tb.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.App, r.OperatorToken, r.stop, r.done = a, operatorToken, cancel, make(chan error, 1)
	go func() { r.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-r.done:
		cancel()
		tb.Fatalf("tani up failed to start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		tb.Fatal("tani up not ready within 60s")
	}
	r.URL = "http://" + a.Addr()
	r.DatabaseURL, r.DataDir, r.LedgerKeyFile = cfg.Postgres.URL, cfg.DataDir, cfg.Ledger.KeyFile
	if r.LedgerKeyFile == "" { // target all generated it
		r.LedgerKeyFile = filepath.Join(cfg.DataDir, ledger.SignerKeyKind(cfg.Ledger.Origin).File)
	}
	pool, err := pgxpool.New(context.Background(), pgtest.URL(tb, dbName))
	if err != nil {
		tb.Fatal(err)
	}
	r.DB = pool
	tb.Cleanup(func() {
		pool.Close()
		if err := r.Stop(); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
	})
	return r
}

// deploymentKeys holds each test's key set (testing.TB → []string flags):
// the processes one test starts are one deployment and share their keys,
// as `tani keys init` has them share in production.
var deploymentKeys sync.Map

// mustDeploymentKeys returns the flags naming the test's shared keys,
// creating them on first use. The operator token stays the one MustStart
// passes with -auth.operator-token.
func mustDeploymentKeys(tb testing.TB, origin string) []string {
	tb.Helper()
	if flags, ok := deploymentKeys.Load(tb); ok {
		return flags.([]string)
	}
	set, err := app.InitKeys(tb.TempDir(), origin, false)
	if err != nil {
		tb.Fatalf("create deployment keys: %v", err)
	}
	var flags []string
	for _, f := range set.Flags() {
		if !strings.HasPrefix(f, "-auth.operator-token-file=") {
			flags = append(flags, f)
		}
	}
	deploymentKeys.Store(tb, flags)
	tb.Cleanup(func() { deploymentKeys.Delete(tb) })
	return flags
}

// Stop shuts the process down as SIGTERM would and returns Run's result.
// Calling it again returns the first result.
func (r *Running) Stop() error {
	r.stop()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(60 * time.Second):
		return context.DeadlineExceeded
	}
}

// Get is a convenience for GET requests against the process.
func (r *Running) Get(tb testing.TB, path string) *http.Response {
	tb.Helper()
	resp, err := http.Get(r.URL + path)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

// Logs returns the log lines the process wrote so far (at -log.level).
func (r *Running) Logs() []string {
	r.logs.mu.Lock()
	defer r.logs.mu.Unlock()
	return slices.Clone(*r.logs.lines)
}

// testWriter sends log lines to the test log until the test has ended (a
// late line from a stopping goroutine must not panic the test binary) and
// keeps them for Logs.
type testWriter struct {
	tb    testing.TB
	done  *atomic.Bool
	mu    *sync.Mutex
	lines *[]string
}

func newTestWriter(tb testing.TB) testWriter {
	w := testWriter{tb: tb, done: new(atomic.Bool), mu: new(sync.Mutex), lines: new([]string)}
	tb.Cleanup(func() { w.done.Store(true) }) // registered first, so it runs last
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	*w.lines = append(*w.lines, string(p))
	w.mu.Unlock()
	if !w.done.Load() {
		w.tb.Logf("%s", p)
	}
	return len(p), nil
}
