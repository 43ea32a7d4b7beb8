package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/app/cli"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
)

// keyFiles are the names a process of target all generates keys under.
var keyFiles = []string{"pii.key", "auth-signing.pem", "operator-token", "ledger.key", "ledger.pub"}

func TestKeys_SplitTargetRefusesWithoutKeys(t *testing.T) {
	db := pgtest.MustDatabase(t)
	set, err := app.InitKeys(t.TempDir(), ledger.DefaultOrigin, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		args []string
		want []string // what the refusal must name
	}{
		"ingest":            {[]string{"-target=ingest"}, []string{"-pii.key-file", "tani keys init"}},
		"mobile-api,server": {[]string{"-target=mobile-api,server"}, []string{"-auth.operator-token-file", "tani keys init"}},
		"ledger":            {[]string{"-target=ledger"}, []string{"-ledger.key-file", "tani keys init"}},
		"nats with PII key": {[]string{"-target=nats", "-pii.key-file=" + filepath.Join(set.Dir, "pii.key")},
			[]string{"-auth.operator-token-file", "tani keys init"}},
		"mobile-api without token key": {[]string{"-target=mobile-api", "-pii.key-file=" + filepath.Join(set.Dir, "pii.key"),
			"-auth.operator-token-file=" + filepath.Join(set.Dir, "operator-token")}, []string{"-auth.signing-key-file", "tani keys init"}},
		"short operator token": {[]string{"-target=nats", "-pii.key-file=" + filepath.Join(set.Dir, "pii.key"), "-auth.operator-token=secret"},
			[]string{"-auth.operator-token", "at least 32 characters"}},
		"two operator tokens": {[]string{"-target=nats", "-pii.key-file=" + filepath.Join(set.Dir, "pii.key"),
			"-auth.operator-token=" + strings.Repeat("t", 40), "-auth.operator-token-file=" + filepath.Join(set.Dir, "operator-token")},
			[]string{"not both"}},
		"malformed PII key file": {[]string{"-target=ingest", "-pii.key-file=" + filepath.Join(set.Dir, "ledger.pub")},
			[]string{"PII key " + filepath.Join(set.Dir, "ledger.pub") + " is malformed"}},
	} {
		t.Run(name, func(t *testing.T) {
			dataDir := t.TempDir()
			cfg, err := cli.ParseUp(append(c.args, "-http.listen=127.0.0.1:0", "-data-dir="+dataDir, "-database.url="+pgtest.URL(t, db)),
				io.Discard, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			a, err := app.New(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = a.Run(ctx)
			if err == nil {
				t.Fatal("a split process started without the deployment's keys")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
			for _, name := range keyFiles {
				if _, err := os.Stat(filepath.Join(dataDir, name)); err == nil {
					t.Errorf("the refused process left a key of its own: %s", name)
				}
			}
		})
	}
}

func TestKeys_SplitTargetWithDeploymentKeys(t *testing.T) {
	set, err := app.InitKeys(filepath.Join(t.TempDir(), "keys"), ledger.DefaultOrigin, false)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfg, err := cli.ParseUp(append(set.Flags(), "-target=mobile-api", "-http.listen=127.0.0.1:0", "-data-dir="+dataDir,
		"-database.url="+pgtest.URL(t, pgtest.MustDatabase(t, app.Migrations()[1:]...))), io.Discard, func(string) string { return "" })
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
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("Run: %v", err)
	}

	raw, err := os.ReadFile(filepath.Join(set.Dir, auth.OperatorTokenKind.File))
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.ParseOperatorToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		token string
		want  int
	}{"OK_TokenFromTheKeyDirectory": {token, http.StatusOK}, "ErrAnotherToken": {token + "x", http.StatusUnauthorized}} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+a.Addr()+"/admin/v1/deadletters", nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("GET /admin/v1/deadletters = %d, want %d", resp.StatusCode, c.want)
			}
		})
	}
	t.Run("OK_NoKeyOfItsOwn", func(t *testing.T) {
		for _, name := range keyFiles {
			if _, err := os.Stat(filepath.Join(dataDir, name)); err == nil {
				t.Errorf("the split process created %s in its data directory", name)
			}
		}
	})
}

func TestKeys_AnotherKeyThanTheDeploymentsRefused(t *testing.T) {
	db := pgtest.MustDatabase(t, app.Migrations()[1:]...)
	deployment, err := app.InitKeys(t.TempDir(), ledger.DefaultOrigin, false)
	if err != nil {
		t.Fatal(err)
	}
	stray, err := app.InitKeys(t.TempDir(), ledger.DefaultOrigin, false) // `tani keys init` run twice
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, flags []string, target string) (*app.App, error) {
		t.Helper()
		cfg, err := cli.ParseUp(append(flags, "-target="+target, "-http.listen=127.0.0.1:0", "-data-dir="+t.TempDir(),
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
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("shutdown: %v", err)
				}
			})
			return a, nil
		case err := <-done:
			cancel()
			return nil, err
		}
	}
	// The first process records the deployment's keys.
	if _, err := run(t, deployment.Flags(), "mobile-api,ledger"); err != nil {
		t.Fatalf("first process: %v", err)
	}
	t.Run("OK_SameKeys", func(t *testing.T) {
		if _, err := run(t, deployment.Flags(), "ingest"); err != nil {
			t.Errorf("a process with the deployment's keys was refused: %v", err)
		}
	})
	for name, c := range map[string]struct {
		swap   string // the flag whose file comes from the stray set
		target string
		key    string
	}{
		"ErrPIIKey":     {"-pii.key-file", "ingest", "PII key"},
		"ErrSigningKey": {"-auth.signing-key-file", "mobile-api", "access-token signing key"},
		"ErrLedgerKey":  {"-ledger.key-file", "ledger", "ledger signing key"},
	} {
		t.Run(name, func(t *testing.T) {
			flags := deployment.Flags()
			for i, f := range flags {
				if strings.HasPrefix(f, c.swap+"=") {
					flags[i] = strings.Replace(f, deployment.Dir, stray.Dir, 1)
				}
			}
			_, err := run(t, flags, c.target)
			if err == nil || !strings.Contains(err.Error(), c.key+": this process has key") || !strings.Contains(err.Error(), "tani keys init") {
				t.Errorf("err = %v, want a refusal naming the %s", err, c.key)
			}
		})
	}
}

func TestKeys_AllGeneratesIntoDataDir(t *testing.T) {
	tani := apptest.MustStart(t)
	for _, name := range []string{"pii.key", "auth-signing.pem", "ledger.key"} {
		fi, err := os.Stat(filepath.Join(tani.DataDir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: got %v (%v), want a generated file of mode 0600", name, fi, err)
		}
	}
	pub, err := os.ReadFile(filepath.Join(tani.DataDir, ledger.PublicKeyFile))
	if err != nil || strings.TrimSpace(string(pub)) != tani.App.Journal().VerifierKey() {
		t.Errorf("ledger.pub holds %q (%v), want the journal's key %q", pub, err, tani.App.Journal().VerifierKey())
	}
	if _, err := os.Stat(filepath.Join(tani.DataDir, "operator-token")); err == nil {
		t.Error("an operator token file was generated although -auth.operator-token was given")
	}
}

func TestInitKeys(t *testing.T) {
	t.Run("ErrExistingKeysKept", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := app.InitKeys(dir, ledger.DefaultOrigin, false); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(filepath.Join(dir, "pii.key"))
		if _, err := app.InitKeys(dir, ledger.DefaultOrigin, false); err == nil || !strings.Contains(err.Error(), "pii.key") || !strings.Contains(err.Error(), "-overwrite") {
			t.Errorf("err = %v, want a refusal naming pii.key and -overwrite", err)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, "pii.key")); string(after) != string(before) {
			t.Error("a refused init changed pii.key")
		}
	})
	t.Run("ErrOneExistingKeyWritesNothing", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "ledger.pub"), []byte("someone's key\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := app.InitKeys(dir, ledger.DefaultOrigin, false); err == nil || !strings.Contains(err.Error(), "ledger.pub") {
			t.Errorf("err = %v, want a refusal naming ledger.pub", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "pii.key")); err == nil {
			t.Error("a refused init wrote pii.key")
		}
	})
	t.Run("ErrBadOrigin", func(t *testing.T) {
		if _, err := app.InitKeys(t.TempDir(), "has space", false); err == nil {
			t.Error("created a ledger key for an origin checkpoints cannot carry")
		}
	})
}
