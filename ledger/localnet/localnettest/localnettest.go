// Package localnettest gives tests a real Fabric network: the one `make
// test` brings up once for the whole suite (Shared), or one of their own
// for tests that change it (MustStart). Without Fabric binaries they skip,
// except under CI, where a missing network is a failure. It must never be
// imported by non-test code.
package localnettest

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tani-platform/tani/ledger/consortium"
	"github.com/tani-platform/tani/ledger/localnet"
)

// Environment variables scripts/test.sh (through scripts/fabric-local.sh
// env) sets for the suite.
const (
	// NetworkEnv names the consortium directory of the running network.
	NetworkEnv = "TANI_FABRIC_NETWORK"
	// BinEnv names the directory of the Fabric binaries.
	BinEnv = "FABRIC_BIN"
	// ChaincodeBinEnv names the tani-chaincode program.
	ChaincodeBinEnv = "TANI_CHAINCODE_BIN"
)

func unavailable(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s: under CI the real Fabric network must run (`make test` brings it up with scripts/fabric-local.sh)", why)
	}
	tb.Skipf("%s: run `make test`, or `scripts/fabric-local.sh up` and `eval $(scripts/fabric-local.sh env)`, to test against real Fabric peers", why)
}

// Shared is the running network named by TANI_FABRIC_NETWORK. Tests using
// it must not change its membership or policy, and must use log origins
// of their own: other packages use it at the same time.
func Shared(tb testing.TB) *localnet.Network {
	tb.Helper()
	dir := os.Getenv(NetworkEnv)
	if dir == "" {
		unavailable(tb, NetworkEnv+" is not set")
	}
	c, err := consortium.Load(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return localnet.Open(c, localnet.Config{Bin: os.Getenv(BinEnv)})
}

// MustStart initializes a consortium in a temporary directory (cfg.Dir
// and the ports are chosen here) and brings it up as a network of its
// own, stopped when the test ends.
func MustStart(tb testing.TB, cfg consortium.InitConfig) *localnet.Network {
	tb.Helper()
	bin := os.Getenv(BinEnv)
	if bin == "" {
		unavailable(tb, BinEnv+" is not set")
	}
	cfg.Dir = filepath.Join(tb.TempDir(), "net")
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = 250 * time.Millisecond
	}
	base, err := consortium.FreeBasePort("127.0.0.1", max(cfg.Orderers, 1)+len(cfg.Orgs)+3)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.BasePort = base
	c, err := consortium.Init(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("TANI_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	n := localnet.Open(c, localnet.Config{Bin: bin, ChaincodeBin: ChaincodeBin(tb),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	tb.Cleanup(func() {
		if err := n.Down(10 * time.Second); err != nil {
			tb.Errorf("network down: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := n.Up(ctx); err != nil {
		tb.Fatalf("network up: %v", err)
	}
	return n
}

// ChaincodeBin is the tani-chaincode program: TANI_CHAINCODE_BIN, or built
// into the test's temporary directory.
func ChaincodeBin(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(ChaincodeBinEnv); p != "" {
		return p
	}
	out := filepath.Join(tb.TempDir(), "tani-chaincode")
	cmd := exec.Command("go", "build", "-o", out, "github.com/tani-platform/tani/cmd/tani-chaincode")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build tani-chaincode: %v\n%s", err, b)
	}
	return out
}
