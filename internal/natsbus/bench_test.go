package natsbus_test

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/natsbus"
)

var benchRuns = flag.Int("runs", 3, "interleaved runs of BenchmarkRecordsPerMessage")

// BenchmarkRecordsPerMessage measures what JetStream costs a record on
// the capture path, by how many records one message carries: messages
// made by Bundle, stored (encrypted, as the embedded server stores them),
// de-duplicated by their Nats-Msg-Id, delivered to a pull consumer whose
// handler gets one message per record, and acknowledged. It is why
// publishers send bundles (docs/performance.md). The server runs in this
// process, as Tani's embedded one does, so the CPU per record counts both
// sides; records are /sync batches of 100 of ~1.2 KB each. It prints min /
// median / max of the CPU per record for 1, 10 and 100 records a message,
// interleaved over -runs runs.
func BenchmarkRecordsPerMessage(b *testing.B) {
	const records, perSync, size = 20_000, 100, 1200
	ctx := context.Background()
	embedded, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{DataDir: b.TempDir(), StoreKey: "bench-store-key-0123456789abcdef"}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		embedded.Shutdown()
		embedded.WaitForShutdown()
	})
	nc, js, err := natsbus.Connect(natsbus.Config{}, embedded, b.Name(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	if err := natsbus.EnsureStreams(ctx, js, 1); err != nil {
		b.Fatal(err)
	}
	// Random text, as incompressible as a signed record and, like its
	// canonical JSON, without a raw newline.
	record := []byte(rand.Text())
	for len(record) < size {
		record = append(record, rand.Text()...)
	}
	record = record[:size]
	metrics := natsbus.NewMetrics(prometheus.NewRegistry())

	// run publishes the records perMsg to a message, in /sync batches,
	// consumes them and returns the process CPU per record.
	round := 0
	run := func(perMsg int) float64 {
		round++
		r := round
		subject := fmt.Sprintf("%sbench%d", natsbus.SubjectSubmittedPrefix, r)
		cons := natsbus.NewConsumer(natsbus.ConsumerConfig{
			Stream: natsbus.StreamFarm, Durable: "bench" + strconv.Itoa(r), FilterSubjects: []string{subject},
		}, js, slog.New(slog.DiscardHandler), metrics)
		if err := cons.Start(ctx); err != nil {
			b.Fatal(err)
		}
		want := int64(records) // the handler gets one message per record
		var got atomic.Int64
		done := make(chan struct{})
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		cpu := cpuTime()
		go func() {
			cons.RunBatch(runCtx, func(_ context.Context, msgs []jetstream.Msg) []error {
				if got.Add(int64(len(msgs))) == want {
					close(done)
				}
				return make([]error, len(msgs))
			})
		}()
		recs, ids := make([][]byte, perMsg), make([]string, perMsg)
		for sent := 0; sent < records; sent += perSync {
			var msgs []*nats.Msg
			for i := sent; i < sent+perSync; i += perMsg {
				for k := range perMsg {
					recs[k], ids[k] = record, fmt.Sprintf("%d-%d", r, i+k)
				}
				msgs = append(msgs, natsbus.Bundle(subject, recs, ids)...)
			}
			if _, err := natsbus.PublishAll(ctx, js, msgs); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatalf("%d records a message: %d of %d records consumed", perMsg, got.Load(), want)
		}
		return float64(cpuTime()-cpu) / float64(time.Microsecond) / records
	}

	sizes := []int{1, 10, 100}
	run(1) // warm up: the stream's first blocks, the heap
	for b.Loop() {
		perRecord := map[int][]float64{}
		for i := range *benchRuns {
			order := slices.Clone(sizes)
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, k := range order {
				perRecord[k] = append(perRecord[k], run(k))
			}
		}
		fmt.Printf("\nJetStream CPU per record (publish, store, deliver, ack), %d records in /sync batches of %d\n", records, perSync)
		for _, k := range sizes {
			s := slices.Sorted(slices.Values(perRecord[k]))
			fmt.Printf("  %3d records a message: %6.1f / %6.1f / %6.1f µs\n", k, s[0], s[len(s)/2], s[len(s)-1])
			b.ReportMetric(s[len(s)/2], fmt.Sprintf("µs/record@%d", k))
		}
	}
}

// cpuTime is the process's user and system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
