package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// benchRevision is a farm-record-sized revision (about 200 bytes of JSON).
func benchRevision(n int) ledger.Revision {
	return ledger.Revision{
		RecordID:     fmt.Sprintf("9b2f6c1e-4d3a-4f8b-a1c2-%012d", n),
		Kind:         "plot.mapped",
		Revision:     1,
		Payload:      fmt.Appendf(nil, `{"plot":%d,"area_m2":1234.5,"crop":"maize","boundary":[[36.8219,-1.2921],[36.8225,-1.2921],[36.8225,-1.2927],[36.8219,-1.2927]]}`, n),
		OccurredAt:   t0,
		SignatureRef: "device:4f1e/sig:" + strconv.Itoa(n),
	}
}

func mustFill(b *testing.B, j *ledger.Journal, from, n int) {
	b.Helper()
	ctx := context.Background()
	const batch = 10_000
	for i := from; i < from+n; i += batch {
		revs := make([]ledger.Revision, 0, batch)
		for k := i; k < min(i+batch, from+n); k++ {
			revs = append(revs, benchRevision(k))
		}
		if _, err := j.Append(ctx, revs...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend measures durable appends (committed transactions) at
// several batch sizes.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1, 10, 100, 1000, 10_000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			j := ledgertest.MustJournal(b)
			ctx := context.Background()
			next := 0
			b.ResetTimer()
			for b.Loop() {
				revs := make([]ledger.Revision, size)
				for k := range revs {
					revs[k] = benchRevision(next)
					next++
				}
				if _, err := j.Append(ctx, revs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkReceipt measures receipt generation from a 100,000-entry log and
// reports the 99th percentile latency.
func BenchmarkReceipt(b *testing.B) {
	const n = 100_000
	j := ledgertest.MustJournal(b)
	mustFill(b, j, 0, n)
	ctx := context.Background()
	if _, err := j.SignCheckpoint(ctx); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := j.Receipt(ctx, benchRevision((i*7919)%n).RecordID, 1); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

// BenchmarkVerifyReceipt measures offline receipt verification on one core.
func BenchmarkVerifyReceipt(b *testing.B) {
	j := ledgertest.MustJournal(b)
	mustFill(b, j, 0, 100_000)
	r, err := j.Receipt(context.Background(), benchRevision(4242).RecordID, 1)
	if err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	key := j.VerifierKey()
	b.ResetTimer()
	for b.Loop() {
		if _, err := verify.VerifyReceipt(data, key); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// BenchmarkAudit measures a full audit (`tani verify`). The log has
// TANI_BENCH_AUDIT_ENTRIES entries (default 100,000; the target is set for
// 1,000,000) with a checkpoint every 10,000.
func BenchmarkAudit(b *testing.B) {
	n := 100_000
	if s := os.Getenv("TANI_BENCH_AUDIT_ENTRIES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("TANI_BENCH_AUDIT_ENTRIES: %v", err)
		}
	}
	j := ledgertest.MustJournal(b)
	ctx := context.Background()
	for i := 0; i < n; i += 10_000 {
		mustFill(b, j, i, min(10_000, n-i))
		if _, err := j.SignCheckpoint(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := j.Audit(ctx, ledger.AuditOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if !rep.OK() || rep.Entries != int64(n) {
			b.Fatalf("got %d entries and faults %v, want %d and none", rep.Entries, rep.Faults, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkAppendConcurrent measures single-revision appends from 64
// concurrent callers, which group commit shares out over transactions.
func BenchmarkAppendConcurrent(b *testing.B) {
	j := ledgertest.MustJournal(b)
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(32) // × GOMAXPROCS callers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := j.Append(ctx, benchRevision(int(next.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(next.Load())/b.Elapsed().Seconds(), "entries/s")
}
