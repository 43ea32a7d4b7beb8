package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/ledger"
)

// run runs the command line as main does and returns its output and status.
func run(env map[string]string, args ...string) (stdout, stderr string, code int) {
	var out, errOut strings.Builder
	code = Main(context.Background(), args, &out, &errOut, func(k string) string { return env[k] })
	return out.String(), errOut.String(), code
}

func TestKeysInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	out, errOut, code := run(nil, "keys", "init", dir, "-ledger.origin=bank-pilot.example/ledger")
	if code != 0 {
		t.Fatalf("keys init: exit %d: %s", code, errOut)
	}

	t.Run("OK_EveryKeyWellFormedAndPrivate", func(t *testing.T) {
		read := func(name string, perm os.FileMode) []byte {
			t.Helper()
			path := filepath.Join(dir, name)
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != perm {
				t.Fatalf("%s: got %v (%v), want mode %v", name, fi, err, perm)
			}
			b, _ := os.ReadFile(path)
			return b
		}
		if _, err := pii.Parse(read("pii.key", 0o600)); err != nil {
			t.Errorf("pii.key: %v", err)
		}
		if _, err := auth.New(auth.Config{}, read("auth-signing.pem", 0o600)); err != nil {
			t.Errorf("auth-signing.pem: %v", err)
		}
		if _, err := auth.ParseOperatorToken(read("operator-token", 0o600)); err != nil {
			t.Errorf("operator-token: %v", err)
		}
		skey := read("ledger.key", 0o600)
		if err := ledger.SignerKeyKind("bank-pilot.example/ledger").Check(skey); err != nil {
			t.Errorf("ledger.key: %v", err)
		}
		vkey, err := ledger.PublicKey(skey)
		if err != nil {
			t.Fatal(err)
		}
		pub := read("ledger.pub", 0o644)
		if strings.TrimSpace(string(pub)) != vkey {
			t.Errorf("ledger.pub holds %q, want the public key of ledger.key %q", pub, vkey)
		}
		if v, err := note.NewVerifier(strings.TrimSpace(string(pub))); err != nil || v.Name() != "bank-pilot.example/ledger" {
			t.Errorf("ledger.pub is not a verifier key of the origin: %v", err)
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("key directory mode %v (%v), want 0700", fi.Mode(), err)
		}
	})

	t.Run("OK_PrintsFlagsEnvironmentAndPublicKey", func(t *testing.T) {
		for _, want := range []string{
			"-pii.key-file=" + filepath.Join(dir, "pii.key"), "TANI_PII_KEY_FILE=" + filepath.Join(dir, "pii.key"),
			"-auth.signing-key-file=" + filepath.Join(dir, "auth-signing.pem"), "TANI_AUTH_SIGNING_KEY_FILE=",
			"-auth.operator-token-file=" + filepath.Join(dir, "operator-token"), "TANI_AUTH_OPERATOR_TOKEN_FILE=",
			"-ledger.key-file=" + filepath.Join(dir, "ledger.key"), "TANI_LEDGER_KEY_FILE=",
			"-ledger.origin=bank-pilot.example/ledger", "TANI_LEDGER_ORIGIN=bank-pilot.example/ledger",
			"--key " + filepath.Join(dir, "ledger.pub"),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		for _, name := range []string{"pii.key", "operator-token", "ledger.key"} {
			b, _ := os.ReadFile(filepath.Join(dir, name))
			if secret := strings.TrimSpace(string(b)); strings.Contains(out+errOut, secret) {
				t.Errorf("the output shows the secret of %s", name)
			}
		}
	})

	t.Run("ErrExistingKeysRefused", func(t *testing.T) {
		before, _ := os.ReadFile(filepath.Join(dir, "pii.key"))
		_, errOut, code := run(nil, "keys", "init", dir)
		if code != 1 || !strings.Contains(errOut, "already holds") || !strings.Contains(errOut, "-overwrite") {
			t.Errorf("got exit %d, %q; want 1 and a refusal that names -overwrite", code, errOut)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, "pii.key")); string(after) != string(before) {
			t.Error("a refused init changed pii.key")
		}
	})

	t.Run("OK_OverwriteReplaces", func(t *testing.T) {
		before, _ := os.ReadFile(filepath.Join(dir, "pii.key"))
		if _, errOut, code := run(nil, "keys", "init", "-overwrite", "-ledger.origin=bank-pilot.example/ledger", dir); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, "pii.key")); string(after) == string(before) {
			t.Error("-overwrite kept the old pii.key")
		}
	})

	t.Run("OK_OriginFromEnvironment", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "keys")
		if _, errOut, code := run(map[string]string{"TANI_LEDGER_ORIGIN": "env.example/ledger"}, "keys", "init", dir); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "ledger.key"))
		if err := ledger.SignerKeyKind("env.example/ledger").Check(b); err != nil {
			t.Errorf("ledger.key is not for TANI_LEDGER_ORIGIN's origin: %v", err)
		}
	})

	t.Run("ErrUsage", func(t *testing.T) {
		for _, args := range [][]string{{"keys"}, {"keys", "init"}, {"keys", "rotate", dir}, {"keys", "init", "a", "b"}} {
			if _, errOut, code := run(nil, args...); code != 2 || !strings.Contains(errOut, "usage: tani keys init") {
				t.Errorf("%v: got exit %d, %q; want 2 and the usage", args, code, errOut)
			}
		}
	})
}

func TestUp_SplitTargetWithoutKeysRefuses(t *testing.T) {
	dataDir := t.TempDir()
	// The database is unreachable on purpose: the refusal must come first.
	_, errOut, code := run(map[string]string{"TANI_DATA_DIR": dataDir, "TANI_HTTP_LISTEN": "127.0.0.1:0", "TANI_LOG_LEVEL": "error",
		"TANI_DATABASE_URL": "postgres://postgres@127.0.0.1:1/tani?sslmode=disable&connect_timeout=1"},
		"up", "-target=ingest")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errOut)
	}
	for _, want := range []string{"-pii.key-file", "tani keys init DIR"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %s", want, errOut)
		}
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("the refused process wrote %d files into its data directory", len(entries))
	}
}
