package natsbus_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/tani-platform/tani/internal/polltest"
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
		if got := dl.Headers().Get(natsbus.HeaderDeadClass); got != natsbus.ClassInvalid {
			t.Errorf("class = %q, want %q", got, natsbus.ClassInvalid)
		}
		if got := dl.Headers().Get(natsbus.HeaderDeadNotice); got != "payload is not a record" {
			t.Errorf("notice = %q, want the handler's client-safe message", got)
		}
	})

	t.Run("ErrConflict_NoticeListsFieldsAndLineBreaksAreRemoved", func(t *testing.T) {
		before := natstest.Count(t, js, natsbus.StreamDead, "")
		run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "conflict", FilterSubjects: []string{"farm.submitted.conflict"}},
			func(ctx context.Context, msg jetstream.Msg) error {
				return &apperr.Error{Code: apperr.Conflict, Message: "kept the original\r\nX-Injected: 1",
					Fields: []apperr.FieldError{{Field: "id", Message: "used before"}}}
			})
		publish(t, js, "farm.submitted.conflict", "c1", "{}")
		dl := deadLetters(t, js, int(before)+1)[before]
		h := dl.Headers()
		if got := h.Get(natsbus.HeaderDeadClass); got != natsbus.ClassConflict {
			t.Errorf("class = %q, want %q", got, natsbus.ClassConflict)
		}
		if got, want := h.Get(natsbus.HeaderDeadNotice), "kept the original  X-Injected: 1; id: used before"; got != want {
			t.Errorf("notice = %q, want %q", got, want)
		}
		if h.Get("X-Injected") != "" {
			t.Error("a line break in the reason injected a header")
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
		before := natstest.Count(t, js, natsbus.StreamDead, "")
		run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "down", FilterSubjects: []string{"farm.submitted.down"}, MaxDeliver: 2},
			func(ctx context.Context, msg jetstream.Msg) error { return errors.New("still down") })
		publish(t, js, "farm.submitted.down", "d1", "y")
		dl := deadLetters(t, js, int(before)+1)[before]
		if got := dl.Headers().Get(natsbus.HeaderDeadClass); got != natsbus.ClassGaveUp {
			t.Errorf("class = %q, want %q", got, natsbus.ClassGaveUp)
		}
		if got := dl.Headers().Get(natsbus.HeaderDeadNotice); strings.Contains(got, "still down") || got == "" {
			t.Errorf("notice = %q, want a fixed notice without the internal error", got)
		}
		if got := dl.Headers().Get(natsbus.HeaderDeadReason); !strings.Contains(got, "still down") {
			t.Errorf("reason = %q, want the internal error for operators", got)
		}
	})

	t.Run("OK_NegativeMaxDeliverNeverGivesUp", func(t *testing.T) {
		before := natstest.Count(t, js, natsbus.StreamDead, "")
		var mu sync.Mutex
		attempts := 0
		done := make(chan struct{})
		run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "forever", FilterSubjects: []string{"farm.submitted.forever"}, MaxDeliver: -1},
			func(ctx context.Context, msg jetstream.Msg) error {
				mu.Lock()
				defer mu.Unlock()
				if attempts++; attempts <= 3 {
					return errors.New("database is restarting")
				}
				close(done)
				return nil
			})
		publish(t, js, "farm.submitted.forever", "r1", "z")
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("message not handled after retries")
		}
		if n := natstest.Count(t, js, natsbus.StreamDead, ""); n != before {
			t.Errorf("%d new dead letters, want none", n-before)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	polltest.Eventually(t, 20*time.Second, polltest.Until(cond))
}

// runBatch starts a batch consumer with handle until the test ends.
func runBatch(t *testing.T, js jetstream.JetStream, cfg natsbus.ConsumerConfig, handle natsbus.BatchHandler) {
	t.Helper()
	c := natsbus.NewConsumer(cfg, js, slog.New(slog.DiscardHandler), natsbus.NewMetrics(prometheus.NewRegistry()))
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.RunBatch(ctx, handle) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunBatch: %v", err)
		}
	})
}

// calls counts handler calls per message payload.
type calls struct {
	mu      sync.Mutex
	n       map[string]int
	biggest int
}

func (c *calls) add(msgs []jetstream.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.biggest = max(c.biggest, len(msgs))
	for _, m := range msgs {
		c.n[string(m.Data())]++
	}
}

func (c *calls) get(data string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[data]
}

func ackPending(t *testing.T, js jetstream.JetStream, durable string) int {
	t.Helper()
	cons, err := js.Consumer(t.Context(), natsbus.StreamFarm, durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending + int(info.NumPending)
}

func TestConsumerBatch(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)

	t.Run("OK_EveryMessageOnceInBoundedBatches", func(t *testing.T) {
		const n = 60
		for i := range n {
			publish(t, js, "farm.submitted.batchok", fmt.Sprint("ok", i), fmt.Sprint("m", i))
		}
		got := &calls{n: map[string]int{}}
		runBatch(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "batchok", FilterSubjects: []string{"farm.submitted.batchok"}, MaxBatch: 8},
			func(ctx context.Context, msgs []jetstream.Msg) []error {
				got.add(msgs)
				return make([]error, len(msgs))
			})
		waitFor(t, func() bool { return ackPending(t, js, "batchok") == 0 })
		for i := range n {
			if c := got.get(fmt.Sprint("m", i)); c != 1 {
				t.Errorf("message m%d handled %d times, want 1", i, c)
			}
		}
		if got.biggest > 8 {
			t.Errorf("biggest batch = %d, want at most MaxBatch 8", got.biggest)
		}
	})

	t.Run("ErrPoisonInBatch_OnlyItDeadLettered", func(t *testing.T) {
		before := natstest.Count(t, js, natsbus.StreamDead, "")
		got := &calls{n: map[string]int{}}
		for _, d := range []string{"good1", "bad", "good2"} {
			publish(t, js, "farm.submitted.batchpoison", d, d)
		}
		runBatch(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "batchpoison", FilterSubjects: []string{"farm.submitted.batchpoison"}},
			func(ctx context.Context, msgs []jetstream.Msg) []error {
				got.add(msgs)
				errs := make([]error, len(msgs))
				for i, m := range msgs {
					if string(m.Data()) == "bad" {
						errs[i] = apperr.Errorf(apperr.Invalid, "bad is not a record")
					}
				}
				return errs
			})
		waitFor(t, func() bool { return ackPending(t, js, "batchpoison") == 0 })
		waitFor(t, func() bool { return natstest.Count(t, js, natsbus.StreamDead, "") >= before+1 })
		if n := natstest.Count(t, js, natsbus.StreamDead, ""); n != before+1 {
			t.Errorf("dead letters = %d, want %d: only the poison message", n-before, 1)
		}
		for _, d := range []string{"good1", "bad", "good2"} {
			if c := got.get(d); c != 1 {
				t.Errorf("%s handled %d times, want 1", d, c)
			}
		}
	})

	t.Run("OK_TransientRetriesOnlyThatMessage", func(t *testing.T) {
		got := &calls{n: map[string]int{}}
		for _, d := range []string{"steady", "flaky"} {
			publish(t, js, "farm.submitted.batchflaky", d, d)
		}
		runBatch(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "batchflaky", FilterSubjects: []string{"farm.submitted.batchflaky"}},
			func(ctx context.Context, msgs []jetstream.Msg) []error {
				errs := make([]error, len(msgs))
				for i, m := range msgs {
					if string(m.Data()) == "flaky" && got.get("flaky") == 0 {
						errs[i] = errors.New("database is restarting")
					}
				}
				got.add(msgs)
				return errs
			})
		waitFor(t, func() bool { return got.get("flaky") == 2 })
		waitFor(t, func() bool { return ackPending(t, js, "batchflaky") == 0 })
		if c := got.get("steady"); c != 1 {
			t.Errorf("steady handled %d times, want 1", c)
		}
	})

	t.Run("ErrWrongResultCount_NothingAcked", func(t *testing.T) {
		got := &calls{n: map[string]int{}}
		publish(t, js, "farm.submitted.batchbug", "bug1", "bug1")
		runBatch(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "batchbug", FilterSubjects: []string{"farm.submitted.batchbug"}},
			func(ctx context.Context, msgs []jetstream.Msg) []error {
				first := got.get("bug1") == 0
				got.add(msgs)
				if first {
					return nil // a buggy handler: no results
				}
				return make([]error, len(msgs))
			})
		waitFor(t, func() bool { return got.get("bug1") == 2 })
		waitFor(t, func() bool { return ackPending(t, js, "batchbug") == 0 })
	})
}

// runStaged starts a staged consumer with handle until the test ends.
func runStaged(t *testing.T, js jetstream.JetStream, cfg natsbus.ConsumerConfig, handle natsbus.StagedHandler) {
	t.Helper()
	c := natsbus.NewConsumer(cfg, js, slog.New(slog.DiscardHandler), natsbus.NewMetrics(prometheus.NewRegistry()))
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.RunStaged(ctx, handle) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunStaged: %v", err)
		}
	})
}

func TestConsumerStaged(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)

	t.Run("OK_NextBatchPreparedWhileThisOneCommits", func(t *testing.T) {
		const n = 40
		for i := range n {
			publish(t, js, "farm.submitted.staged", fmt.Sprint("st", i), fmt.Sprint("m", i))
		}
		prepared, committed := &calls{n: map[string]int{}}, &calls{n: map[string]int{}}
		var (
			mu       sync.Mutex
			order    []string // "prepare k" / "commit k"
			batches  int
			overlaps int
		)
		secondPrepared := make(chan struct{})
		runStaged(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "staged", FilterSubjects: []string{"farm.submitted.staged"}, MaxBatch: 8},
			func(ctx context.Context, msgs []jetstream.Msg) func(context.Context) []error {
				prepared.add(msgs)
				mu.Lock()
				k := batches
				batches++
				order = append(order, fmt.Sprint("prepare ", k))
				mu.Unlock()
				if k == 1 {
					close(secondPrepared)
				}
				return func(ctx context.Context) []error {
					if k == 0 {
						// The first commit waits until the second batch is
						// prepared: a runner that does not overlap the
						// stages never gets there.
						select {
						case <-secondPrepared:
							mu.Lock()
							overlaps++
							mu.Unlock()
						case <-time.After(10 * time.Second):
						}
					}
					committed.add(msgs)
					mu.Lock()
					order = append(order, fmt.Sprint("commit ", k))
					mu.Unlock()
					return make([]error, len(msgs))
				}
			})
		waitFor(t, func() bool { return ackPending(t, js, "staged") == 0 })
		for i := range n {
			if p, c := prepared.get(fmt.Sprint("m", i)), committed.get(fmt.Sprint("m", i)); p != 1 || c != 1 {
				t.Errorf("m%d prepared %d and committed %d times, want 1 each", i, p, c)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if overlaps != 1 {
			t.Errorf("the second batch was not prepared while the first committed (order %q)", order)
		}
		next := 0
		for _, o := range order {
			var k int
			if _, err := fmt.Sscanf(o, "commit %d", &k); err == nil {
				if k != next {
					t.Errorf("commit %d came when %d was due: commits out of order (%q)", k, next, order)
				}
				next++
			}
		}
		if prepared.biggest > 8 {
			t.Errorf("biggest batch = %d, want at most MaxBatch 8", prepared.biggest)
		}
	})

	t.Run("ErrPoisonInBatch_OnlyItDeadLettered", func(t *testing.T) {
		before := natstest.Count(t, js, natsbus.StreamDead, "")
		for _, d := range []string{"good1", "bad", "good2"} {
			publish(t, js, "farm.submitted.stagedpoison", "sp"+d, d)
		}
		got := &calls{n: map[string]int{}}
		runStaged(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "stagedpoison", FilterSubjects: []string{"farm.submitted.stagedpoison"}},
			func(ctx context.Context, msgs []jetstream.Msg) func(context.Context) []error {
				return func(ctx context.Context) []error {
					got.add(msgs)
					errs := make([]error, len(msgs))
					for i, m := range msgs {
						if string(m.Data()) == "bad" {
							errs[i] = apperr.Errorf(apperr.Invalid, "bad is not a record")
						}
					}
					return errs
				}
			})
		waitFor(t, func() bool { return ackPending(t, js, "stagedpoison") == 0 })
		waitFor(t, func() bool { return natstest.Count(t, js, natsbus.StreamDead, "") >= before+1 })
		if n := natstest.Count(t, js, natsbus.StreamDead, ""); n != before+1 {
			t.Errorf("dead letters = %d, want 1: only the poison message", n-before)
		}
		for _, d := range []string{"good1", "bad", "good2"} {
			if c := got.get(d); c != 1 {
				t.Errorf("%s committed %d times, want 1", d, c)
			}
		}
	})
}
