package ledger_test

import (
	"context"
	"crypto/rand"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"

	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
)

func TestRegisterFlags(t *testing.T) {
	var cfg ledger.Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-ledger.origin", "tani.example/ledger", "-ledger.key-file", "/k", "-ledger.checkpoint-interval", "3s"}); err != nil {
		t.Fatal(err)
	}
	want := ledger.Config{Origin: "tani.example/ledger", KeyFile: "/k", CheckpointInterval: 3 * time.Second}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestStart(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t, ledger.Migrations)
	start := func(cfg ledger.Config) (*ledger.Journal, error) {
		if cfg.CheckpointInterval == 0 {
			cfg.CheckpointInterval = time.Second
		}
		j, err := ledger.New(cfg, pool, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		return j, j.Start(ctx)
	}
	t.Run("OKGeneratesOnceIntoDataDir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		j1, err := start(ledger.Config{Origin: "tani.example/ledger", DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "ledger.key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("signer key file: got %v %v, want mode 0600", fi, err)
		}
		pub, err := os.ReadFile(filepath.Join(dir, "ledger.pub"))
		if err != nil || string(pub) != j1.VerifierKey()+"\n" {
			t.Errorf("got public key file %q (%v), want %q", pub, err, j1.VerifierKey())
		}
		j2, err := start(ledger.Config{Origin: "tani.example/ledger", DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if j1.VerifierKey() != j2.VerifierKey() {
			t.Errorf("restart changed the key: got %q, want %q", j2.VerifierKey(), j1.VerifierKey())
		}
	})
	t.Run("OKConcurrentStartsShareOneKey", func(t *testing.T) {
		// Processes started together on one data directory must not each
		// sign with a key of their own.
		dir := t.TempDir()
		const n = 8
		keys := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				j, err := start(ledger.Config{Origin: "tani.example/ledger", DataDir: dir})
				if err == nil {
					keys[i] = j.VerifierKey()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || keys[i] != keys[0] {
				t.Fatalf("start %d: key %q, err %v; want %q like start 0", i, keys[i], errs[i], keys[0])
			}
		}
	})
	t.Run("ErrPublicKeyOfAnotherKey", func(t *testing.T) {
		dir := t.TempDir()
		_, other, err := note.GenerateKey(rand.Reader, "tani.example/ledger")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ledger.pub"), []byte(other+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := start(ledger.Config{Origin: "tani.example/ledger", DataDir: dir}); err == nil || !strings.Contains(err.Error(), "ledger.pub") {
			t.Errorf("err = %v, want a refusal naming ledger.pub: auditors would check against the wrong key", err)
		}
	})
	t.Run("ErrMalformedKeyFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "k")
		if err := os.WriteFile(path, []byte("PRIVATE+KEY+garbage\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := start(ledger.Config{Origin: "tani.example/ledger", KeyFile: path})
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "malformed") || strings.Contains(err.Error(), "garbage") {
			t.Errorf("err = %v, want one naming %s as malformed without quoting it", err, path)
		}
	})
	t.Run("ErrMissingKeyFileNotGenerated", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "k")
		if _, err := start(ledger.Config{Origin: "tani.example/ledger", KeyFile: path, DataDir: t.TempDir()}); err == nil {
			t.Error("started with a key file that does not exist")
		}
		if _, err := os.Stat(path); err == nil {
			t.Error("a named key file was generated; only the data directory's key may be")
		}
	})
	t.Run("OKKeyFile", func(t *testing.T) {
		skey, vkey, err := note.GenerateKey(rand.Reader, "tani.example/ledger")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "k")
		if err := os.WriteFile(path, []byte(skey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := start(ledger.Config{Origin: "tani.example/ledger", KeyFile: path})
		if err != nil {
			t.Fatal(err)
		}
		if j.VerifierKey() != vkey {
			t.Errorf("got verifier key %q, want %q", j.VerifierKey(), vkey)
		}
	})
	t.Run("ErrKeyNamesAnotherLog", func(t *testing.T) {
		skey, _, err := note.GenerateKey(rand.Reader, "other.example/log")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "k")
		if err := os.WriteFile(path, []byte(skey), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := start(ledger.Config{Origin: "tani.example/ledger", KeyFile: path}); err == nil {
			t.Error("got nil error, want the key's name to be checked against the origin")
		}
	})
	t.Run("ErrInvalidConfig", func(t *testing.T) {
		for name, cfg := range map[string]ledger.Config{
			"no origin":     {DataDir: "d", CheckpointInterval: time.Second},
			"origin with +": {Origin: "a+b", DataDir: "d", CheckpointInterval: time.Second},
			"no key source": {Origin: "a", CheckpointInterval: time.Second},
			"no interval":   {Origin: "a", DataDir: "d"},
		} {
			if _, err := ledger.New(cfg, pool, nil); err == nil {
				t.Errorf("%s: got nil error, want the config rejected", name)
			}
		}
	})
}

func TestRun(t *testing.T) {
	t.Run("OKSignsWhileGrowing", func(t *testing.T) {
		pool := pgtest.MustDB(t, ledger.Migrations)
		j, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: t.TempDir(), CheckpointInterval: 20 * time.Millisecond}, pool, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := j.Start(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- j.Run(ctx) }()
		for i, want := range []int64{1, 3} {
			for n := int64(i); n < want; n++ {
				if _, err := j.Append(ctx, rev("r", n+1, "{}")); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				cp, err := j.LatestCheckpoint(ctx)
				if err == nil && cp.Size == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no checkpoint of size %d after 5s (latest %v, %v)", want, cp, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
}
