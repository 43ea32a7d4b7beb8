package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/porttest"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

// TestBinary_SIGTERMDrainsAndExitsZero runs the real binary as a user
// would, configured only through TANI_* variables.
func TestBinary_SIGTERMDrainsAndExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := mustBuild(t)
	addr := porttest.Addr(t)
	env := append(os.Environ(),
		"TANI_DATABASE_URL="+pgtest.URL(t, pgtest.MustDatabase(t)),
		"TANI_HTTP_LISTEN="+addr,
		"TANI_DATA_DIR="+t.TempDir(),
		"TANI_LOG_FORMAT=text",
		"TANI_LEDGER_CHECKPOINT_INTERVAL=100ms",
		// Never collide with a devnet on the default port, and name the
		// port so that `tani verify` below can reach the chain.
		"TANI_FABRIC_DEVNET_LISTEN="+porttest.Addr(t),
	)
	cmd := exec.Command(bin, "up")
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	polltest.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return fmt.Errorf("not ready: %w\nstderr:\n%s", err, stderr.String())
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("not ready: /readyz answers %d\nstderr:\n%s", resp.StatusCode, stderr.String())
		}
		return nil
	})
	// The journal passes the audit against the running devnet's chain,
	// configured the same way.
	verify := exec.Command(bin, "verify")
	verify.Env = env
	if out, err := verify.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("OK")) || bytes.Contains(out, []byte("NOT consulted")) {
		t.Errorf("tani verify: %v\n%s", err, out)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			t.Fatalf("exit status %d after SIGTERM, want 0\nstderr:\n%s", exitErr.ExitCode(), stderr.String())
		}
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("still running 40s after SIGTERM\nstderr:\n%s", stderr.String())
	}
	if !bytes.Contains(stdout.Bytes(), []byte("Tani is up")) {
		t.Errorf("stdout %q lacks the start banner", stdout.String())
	}

	// With the devnet gone, the audit refuses to call the journal OK
	// without the chain, and says so; database-only, it passes.
	verify = exec.Command(bin, "verify")
	verify.Env = env
	if out, err := verify.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("NOT consulted")) {
		t.Errorf("tani verify without the chain: %v, want a failure naming the chain\n%s", err, out)
	}
	verify = exec.Command(bin, "verify", "-chain=skip")
	verify.Env = env
	if out, err := verify.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("OK (database only")) {
		t.Errorf("tani verify -chain=skip: %v\n%s", err, out)
	}
}

// TestBinary_SplitTargetWithoutKeysRefuses: a process of a split
// deployment never makes keys of its own; it exits non-zero and says which
// flag to set and how to create the keys.
func TestBinary_SplitTargetWithoutKeysRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := mustBuild(t)
	dataDir := t.TempDir()
	cmd := exec.Command(bin, "up", "-target=ingest")
	cmd.Env = append(os.Environ(), "TANI_DATA_DIR="+dataDir, "TANI_HTTP_LISTEN=127.0.0.1:0",
		"TANI_DATABASE_URL=postgres://postgres@127.0.0.1:1/tani?sslmode=disable&connect_timeout=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("got %v, want exit status 1\nstderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{"-pii.key-file", "tani keys init DIR"} {
		if !bytes.Contains(stderr.Bytes(), []byte(want)) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("the refused process wrote %d files into its data directory", len(entries))
	}
}

// TestBinary_LoadRatio is the one command of the ratio bench, as a user
// runs it: the binary starts itself as `tani up` for the capture runs,
// loads the floor into a scratch database, prints the ratio paired run by
// run, and leaves no database behind.
func TestBinary_LoadRatio(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := mustBuild(t)
	server := pgtest.URL(t, "postgres")
	cmd := exec.Command(bin, "load", "-ratio", "-runs=1", "-records=300", "-agents=2", "-batch=50",
		"-ratio.measures=capture,copy,copy-binary,insert", "-database.url="+server)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tani load -ratio: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"capture / copy", "capture / copy-binary", "capture / insert", "≥ 0.25", "capture sync p99"} {
		if !bytes.Contains(stdout.Bytes(), []byte(want)) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	db, err := pgx.Connect(context.Background(), server)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var left int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM pg_database WHERE datname LIKE 'tani\_ratio\_' || $1 || '\_%'`, fmt.Sprint(cmd.Process.Pid)).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d scratch databases of the run are left, want none", left)
	}
}

// mustBuild builds the tani binary into a temporary directory.
func mustBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tani")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
