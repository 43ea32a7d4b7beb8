package devnet_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tani-platform/tani/ledger/devnet"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunCommandPrintsConnectionInfo(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- devnet.RunCommand(ctx, []string{"-dir", dir, "-listen", "127.0.0.1:0", "-channel", "cli"}, &out, &errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "chaincode asset") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunCommand: %v (stderr: %s)", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{"devnet listening on 127.0.0.1:", `(channel "cli")`, "TLS CA:", dir, "TaniMSP client:", "BankMSP client:", "DistributorMSP client:", "signcerts/cert.pem", "keystore/priv_sk"} {
		if !strings.Contains(got, want) {
			t.Errorf("output missing %q; got:\n%s", want, got)
		}
	}
}
