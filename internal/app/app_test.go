package app_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/postgres/pgtest"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/cli"
	"github.com/tani-platform/tani/ledger"
)

func TestRun(t *testing.T) {
	t.Run("OK_ProbesAndMetrics", func(t *testing.T) {
		tani := apptest.MustStart(t)
		for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/metrics": 200, "/no/such/route": 404} {
			if got := tani.Get(t, path).StatusCode; got != want {
				t.Errorf("GET %s = %d, want %d", path, got, want)
			}
		}
		tani.Get(t, "/mobile/v1/records/not-a-uuid")
		body, _ := io.ReadAll(tani.Get(t, "/metrics").Body)
		for _, metric := range []string{"tani_http_requests_total", "tani_http_request_duration_seconds", "go_goroutines"} {
			if !strings.Contains(string(body), metric) {
				t.Errorf("/metrics lacks %s", metric)
			}
		}
	})

	t.Run("OK_TargetSubsetMountsOnlyItsRoutes", func(t *testing.T) {
		tani := apptest.MustStart(t, "-target=ingest")
		if got := tani.Get(t, "/mobile/v1/records/not-a-uuid").StatusCode; got != http.StatusNotFound {
			t.Errorf("mobile-api route answered %d in an ingest-only process, want 404", got)
		}
		if got := tani.Get(t, "/readyz").StatusCode; got != http.StatusOK {
			t.Errorf("/readyz = %d, want 200", got)
		}
	})

	t.Run("ErrModuleFails_ProcessStopsWithClearError", func(t *testing.T) {
		cfg, err := cli.ParseUp([]string{
			"-http.listen=127.0.0.1:0", "-data-dir=" + t.TempDir(),
			"-database.url=postgres://postgres@127.0.0.1:1/tani?sslmode=disable&connect_timeout=2",
		}, io.Discard, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		a, err := app.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		err = a.Run(ctx)
		if err == nil {
			t.Fatal("Run succeeded without a database")
		}
		for _, want := range []string{"module postgres", "127.0.0.1:1", "TANI_DATABASE_URL"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		select {
		case <-a.Ready():
			t.Error("app reported ready although a module failed")
		default:
		}
	})

	t.Run("OK_SplitTargetMigratesEverySchema", func(t *testing.T) {
		// mobile-api alone on a database nobody migrated: it reads attest's
		// and ingest's public views, so they must exist all the same.
		db := pgtest.MustDatabase(t)
		keys, err := app.InitKeys(t.TempDir(), ledger.DefaultOrigin, false)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := cli.ParseUp(append(keys.Flags(), "-target=mobile-api", "-http.listen=127.0.0.1:0", "-data-dir="+t.TempDir(),
			"-database.url="+pgtest.URL(t, db)), io.Discard, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		a, err := app.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		select {
		case <-a.Ready():
		case err := <-done:
			t.Fatalf("Run: %v", err)
		}
		pool := pgtest.MustPool(t, db)
		for _, view := range []string{"attest.visit_tasks", "attest.record_status", "ingest.record_status", "ledger.entries"} {
			var exists bool
			pool.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", view).Scan(&exists)
			if !exists {
				t.Errorf("%s missing in a mobile-api-only process's database", view)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})

	t.Run("ErrUnknownTarget", func(t *testing.T) {
		cfg, _ := cli.ParseUp([]string{"-target=ingest,billing"}, io.Discard, func(string) string { return "" })
		if _, err := app.New(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "billing") {
			t.Errorf("New = %v, want an error naming billing", err)
		}
	})
}
