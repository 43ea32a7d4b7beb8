package natsbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/natsbus"
)

// TestEmbedded_ChaChaStoreStillReadable: a store written by an earlier
// Tani (ChaCha20-Poly1305) keeps every message when the embedded server
// opens it with AES-256-GCM, and takes new ones.
func TestEmbedded_ChaChaStoreStillReadable(t *testing.T) {
	dir, key := t.TempDir(), "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	ctx := context.Background()

	old, err := server.NewServer(&server.Options{
		ServerName: "tani-embedded", JetStream: true, StoreDir: filepath.Join(dir, "nats"), DontListen: true, NoSigs: true,
		JetStreamKey: key, JetStreamCipher: server.ChaCha,
	})
	if err != nil {
		t.Fatal(err)
	}
	go old.Start()
	if !old.ReadyForConnections(10 * time.Second) {
		t.Fatal("old server not ready")
	}
	js := connect(t, old)
	if err := natsbus.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := js.Publish(ctx, "farm.submitted.plot.mapped", fmt.Appendf(nil, "record %d", i), jetstream.WithMsgID(fmt.Sprint("r", i))); err != nil {
			t.Fatal(err)
		}
	}
	old.Shutdown()
	old.WaitForShutdown()

	s, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{DataDir: dir, StoreKey: key}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	js = connect(t, s)
	if _, err := js.Publish(ctx, "farm.submitted.plot.mapped", []byte("record 20"), jetstream.WithMsgID("r20")); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, natsbus.StreamFarm)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 21 {
		msg, err := stream.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		if got, want := string(msg.Data), fmt.Sprint("record ", i); got != want {
			t.Errorf("message %d = %q, want %q", i+1, got, want)
		}
	}
}

func connect(t *testing.T, s *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
