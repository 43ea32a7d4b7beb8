package app_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/app/cli"
)

// TestDebugPprof checks the profiling endpoint: off unless asked for,
// served apart from the API, and only ever on a loopback address.
func TestDebugPprof(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		tani := apptest.MustStart(t, "-debug.pprof=127.0.0.1:0")
		addr := tani.App.PprofAddr()
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Fatalf("got pprof address %q, want 127.0.0.1:port", addr)
		}
		for path, want := range map[string]string{"/debug/pprof/": "goroutine", "/debug/pprof/goroutine?debug=1": "goroutine profile: total"} {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				t.Errorf("GET %s = %d, body without %q", path, resp.StatusCode, want)
			}
		}
		if got := tani.Get(t, "/debug/pprof/").StatusCode; got != http.StatusNotFound {
			t.Errorf("GET /debug/pprof/ on the API = %d, want 404: profiles are never served with the API", got)
		}
	})
	t.Run("OKOffByDefault", func(t *testing.T) {
		cfg, err := cli.ParseUp(nil, io.Discard, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Debug.PprofAddr != "" {
			t.Errorf("got -debug.pprof %q by default, want off", cfg.Debug.PprofAddr)
		}
		a, err := app.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if got := a.PprofAddr(); got != "" {
			t.Errorf("got pprof address %q, want none", got)
		}
	})
	t.Run("ErrNotLoopback", func(t *testing.T) {
		for _, addr := range []string{"0.0.0.0:6060", ":6060", "[::]:6060", "10.1.2.3:6060", "192.168.1.10:6060", "example.com:6060", "127.0.0.1", "localhost"} {
			cfg, err := cli.ParseUp([]string{"-debug.pprof=" + addr}, io.Discard, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			_, err = app.New(cfg, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), "-debug.pprof") || !strings.Contains(err.Error(), "loopback") {
				t.Errorf("-debug.pprof=%s: got %v, want a refusal naming the flag and loopback", addr, err)
			}
		}
		for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060", "127.0.0.2:0"} {
			cfg, err := cli.ParseUp([]string{"-debug.pprof=" + addr}, io.Discard, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if _, err := app.New(cfg, slog.New(slog.DiscardHandler)); err != nil {
				t.Errorf("-debug.pprof=%s: got %v, want accepted", addr, err)
			}
		}
	})
}
