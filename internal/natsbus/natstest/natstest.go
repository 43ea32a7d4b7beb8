// Package natstest runs a real JetStream server inside the test process,
// and a real three-node JetStream cluster as processes beside it (built
// from the nats-server module go.mod requires). It must never be imported
// by non-test code.
package natstest

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/natsbus"
)

// MustServer starts an in-process JetStream server storing under a temp dir,
// listening on a random loopback port, shut down when the test ends.
func MustServer(tb testing.TB) *server.Server {
	tb.Helper()
	return MustServerAt(tb, tb.TempDir())
}

// MustServerAt starts a server on the given data dir, so a test can restart
// it on the same store.
func MustServerAt(tb testing.TB, dir string) *server.Server {
	tb.Helper()
	return MustServerOn(tb, dir, "127.0.0.1:0")
}

// MustServerOn starts a server on the given data dir and address, so a test
// can restart it where its clients will reconnect.
func MustServerOn(tb testing.TB, dir, addr string) *server.Server {
	tb.Helper()
	s, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{DataDir: dir, Listen: addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// MustJetStream connects to s with the shared streams in place.
func MustJetStream(tb testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, js, err := natsbus.Connect(natsbus.Config{URL: s.ClientURL()}, nil, tb.Name(), slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("connect nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	if err := natsbus.EnsureStreams(tb.Context(), js, 1); err != nil {
		tb.Fatalf("streams: %v", err)
	}
	return nc, js
}

// Count returns how many messages stream holds on subjects matching filter
// ("" for all of them): what a test asserts after publishing, refusing or
// dead-lettering.
func Count(tb testing.TB, js jetstream.JetStream, stream, filter string) uint64 {
	tb.Helper()
	st, err := js.Stream(context.Background(), stream)
	if err != nil {
		tb.Fatalf("stream %s: %v", stream, err)
	}
	if filter == "" {
		info, err := st.Info(context.Background())
		if err != nil {
			tb.Fatalf("stream %s info: %v", stream, err)
		}
		return info.State.Msgs
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		tb.Fatalf("stream %s info: %v", stream, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// MustPublishFetch publishes msgs on the FARM stream and fetches them
// back, in order, as a consumer's handler receives them.
func MustPublishFetch(tb testing.TB, js jetstream.JetStream, msgs ...*nats.Msg) []jetstream.Msg {
	tb.Helper()
	ctx := context.Background()
	var subjects []string
	for _, m := range msgs {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			tb.Fatalf("publish %s: %v", m.Subject, err)
		}
		if !slices.Contains(subjects, m.Subject) {
			subjects = append(subjects, m.Subject)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, natsbus.StreamFarm, jetstream.ConsumerConfig{
		Durable: "natstest-fetch", FilterSubjects: subjects, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		tb.Fatal(err)
	}
	batch, err := cons.FetchNoWait(len(msgs))
	if err != nil {
		tb.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	if len(out) != len(msgs) {
		tb.Fatalf("fetched %d messages, want %d", len(out), len(msgs))
	}
	return out
}
