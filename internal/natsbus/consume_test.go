package natsbus_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
)

// run starts a consumer with handle and returns a func that stops it.
func run(t *testing.T, js jetstream.JetStream, cfg natsbus.ConsumerConfig, handle natsbus.Handler) {
	t.Helper()
	c := natsbus.NewConsumer(cfg, js, slog.New(slog.DiscardHandler), natsbus.NewMetrics(prometheus.NewRegistry()))
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, handle) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func publish(t *testing.T, js jetstream.JetStream, subject, id, data string) {
	t.Helper()
	if _, err := js.Publish(t.Context(), subject, []byte(data), jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
}

// deadLetters waits for n dead letters and returns them.
func deadLetters(t *testing.T, js jetstream.JetStream, n int) []jetstream.Msg {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), natsbus.StreamDead, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if got == 0 {
			t.Fatalf("got %d dead letters, want %d", len(out), n)
		}
	}
	return out
}

func TestConsumer(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)

	t.Run("OK_AckedOnce", func(t *testing.T) {
		var mu sync.Mutex
		seen := map[string]int{}
		got := make(chan struct{}, 10)
		run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "ok", FilterSubjects: []string{"farm.submitted.ok"}},
			func(ctx context.Context, msg jetstream.Msg) error {
				mu.Lock()
				seen[string(msg.Data())]++
				mu.Unlock()
				got <- struct{}{}
				return nil
			})
		publish(t, js, "farm.submitted.ok", "a", "a")
		publish(t, js, "farm.submitted.ok", "a", "a") // same ID: JetStream drops it
		publish(t, js, "farm.submitted.ok", "b", "b")
		for range 2 {
			<-got
		}
		info, err := js.Consumer(t.Context(), natsbus.StreamFarm, "ok")
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { ci, _ := info.Info(t.Context()); return ci.NumAckPending == 0 })
		mu.Lock()
		defer mu.Unlock()
		if seen["a"] != 1 || seen["b"] != 1 {
			t.Errorf("handled %v, want a and b once each", seen)
		}
	})

	t.Run("ErrPoison_DeadLetteredWithReason", func(t *testing.T) {
		run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "poison", FilterSubjects: []string{"farm.submitted.poison"}},
			func(ctx context.Context, msg jetstream.Msg) error {
				return apperr.Errorf(apperr.Invalid, "payload is not a record")
			})
		publish(t, js, "farm.submitted.poison", "p1", "garbage")
		dl := deadLetters(t, js, 1)[0]
		if got, want := dl.Subject(), "dead.farm.submitted.poison"; got != want {
			t.Errorf("subject = %q, want %q", got, want)
		}
		if got := dl.Headers().Get(natsbus.HeaderDeadReason); !strings.Contains(got, "payload is not a record") {
			t.Errorf("reason = %q, want the handler's error", got)
		}
		if got := string(dl.Data()); got != "garbage" {
			t.Errorf("data = %q, want the original payload", got)
		}
	})

	t.Run("OK_TransientRetriedThenAcked", func(t *testing.T) {
		var mu sync.Mutex
		attempts := 0
		done := make(chan struct{})
		run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "flaky", FilterSubjects: []string{"farm.submitted.flaky"}},
			func(ctx context.Context, msg jetstream.Msg) error {
				mu.Lock()
				defer mu.Unlock()
				attempts++
				if attempts < 3 {
					return errors.New("database is restarting")
				}
				close(done)
				return nil
			})
		publish(t, js, "farm.submitted.flaky", "f1", "x")
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("message not handled after retries (attempts %d)", attempts)
		}
	})

	t.Run("ErrGivesUp_DeadLetteredAfterMaxDeliver", func(t *testing.T) {
		// A fresh stream view: count dead letters already there.
		before := streamMsgs(t, js, natsbus.StreamDead)
		run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "down", FilterSubjects: []string{"farm.submitted.down"}, MaxDeliver: 2},
			func(ctx context.Context, msg jetstream.Msg) error { return errors.New("still down") })
		publish(t, js, "farm.submitted.down", "d1", "y")
		waitFor(t, func() bool { return streamMsgs(t, js, natsbus.StreamDead) == before+1 })
	})
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
