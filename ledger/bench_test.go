package ledger_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

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

// mustAppendNext appends one call of size revisions, benchRevision(*next)
// onwards, and advances *next past them.
func mustAppendNext(b *testing.B, j *ledger.Journal, next *int, size int) {
	b.Helper()
	revs := make([]ledger.Revision, size)
	for k := range revs {
		revs[k] = benchRevision(*next)
		*next++
	}
	if _, err := j.Append(context.Background(), revs...); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppend measures durable appends (committed transactions) at
// several batch sizes.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1, 10, 100, 1000, 10_000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			j := ledgertest.MustJournal(b)
			next := 0
			b.ResetTimer()
			for b.Loop() {
				mustAppendNext(b, j, &next, size)
			}
			b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkAppendRecordIndex measures what the record index
// (ledger.entries_record_revision, unique on record id and revision)
// costs a call of 1,000 entries. Two journals get the same calls,
// alternating: one as migrated, one whose database has had the index
// dropped. The index is what makes an append idempotent and refuses a
// second leaf for a revision: the second journal is only safe here, where
// every revision is new. It prints milliseconds per call of each and
// their ratio, min / median / max over -runs runs
// (docs/ledger-benchmarks.md, "Eighth pass").
func BenchmarkAppendRecordIndex(b *testing.B) {
	const size, calls = 1000, 20
	ctx := context.Background()
	indexed := ledgertest.MustJournal(b)
	bare, pool := ledgertest.MustJournalPool(b)
	if _, err := pool.Exec(ctx, `DROP INDEX ledger.entries_record_revision`); err != nil {
		b.Fatal(err)
	}
	next := 0
	appendCalls := func(j *ledger.Journal, n int) time.Duration {
		start := time.Now()
		for range n {
			mustAppendNext(b, j, &next, size)
		}
		return time.Since(start)
	}
	appendCalls(indexed, calls/4) // warm up both, not counted
	appendCalls(bare, calls/4)
	for b.Loop() {
		var withIdx, without, ratios []float64
		fmt.Printf("\ncalls of %d entries, %d per journal per run, with and without the record index\n", size, calls)
		fmt.Printf("  %-4s %-8s %12s %12s %8s\n", "run", "first", "indexed ms", "bare ms", "ratio")
		for r := range *benchRuns {
			// Each journal's calls in two halves, ABBA, then BAAB.
			order := []*ledger.Journal{indexed, bare, bare, indexed}
			first := "indexed"
			if r%2 == 1 {
				order, first = []*ledger.Journal{bare, indexed, indexed, bare}, "bare"
			}
			spent := map[*ledger.Journal]time.Duration{}
			for _, j := range order {
				spent[j] += appendCalls(j, calls/2)
			}
			wi := float64(spent[indexed].Microseconds()) / 1000 / calls
			wo := float64(spent[bare].Microseconds()) / 1000 / calls
			withIdx, without, ratios = append(withIdx, wi), append(without, wo), append(ratios, wo/wi)
			fmt.Printf("  %-4d %-8s %12.2f %12.2f %8.2f\n", r+1, first, wi, wo, wo/wi)
		}
		w, o, q := summarize(withIdx), summarize(without), summarize(ratios)
		fmt.Printf("  min/median/max  indexed %s ms | bare %s ms | ratio %s\n", w.format("%.2f"), o.format("%.2f"), q.format("%.2f"))
		b.ReportMetric(w.median, "indexed-ms/call")
		b.ReportMetric(o.median, "bare-ms/call")
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

// auditEntries is the size of the log the audit benchmarks build:
// TANI_BENCH_AUDIT_ENTRIES (default 100,000; the target is set for
// 1,000,000), with a checkpoint every hundredth of it.
func auditEntries(b *testing.B) int {
	n := 100_000
	if s := os.Getenv("TANI_BENCH_AUDIT_ENTRIES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("TANI_BENCH_AUDIT_ENTRIES: %v", err)
		}
	}
	return n
}

func mustAuditLog(b *testing.B, n int) (*ledger.Journal, *pgxpool.Pool) {
	b.Helper()
	j, pool := ledgertest.MustJournalPool(b)
	ctx := context.Background()
	step := max(n/100, 1)
	for i := 0; i < n; i += step {
		mustFill(b, j, i, min(step, n-i))
		if _, err := j.SignCheckpoint(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE ledger.entries, ledger.hash_runs"); err != nil {
		b.Fatal(err)
	}
	return j, pool
}

func mustAudit(b *testing.B, j *ledger.Journal, n int) {
	b.Helper()
	rep, err := j.Audit(context.Background(), ledger.AuditOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if !rep.OK() || rep.Entries != int64(n) {
		b.Fatalf("got %d entries and faults %v, want %d and none", rep.Entries, rep.Faults, n)
	}
}

// BenchmarkAudit measures a full audit (`tani verify`) of a log of
// TANI_BENCH_AUDIT_ENTRIES entries.
func BenchmarkAudit(b *testing.B) {
	n := auditEntries(b)
	j, _ := mustAuditLog(b, n)
	b.ResetTimer()
	for b.Loop() {
		mustAudit(b, j, n)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

var benchRuns = flag.Int("runs", 3, "paired runs of BenchmarkAuditVsRead and BenchmarkAppendRecordIndex")

// readTables reads both ledger tables whole, as `COPY … TO STDOUT` in
// format (binary or text), and discards them: the floor of any audit that
// reads every row.
func readTables(b *testing.B, pool *pgxpool.Pool, format string) time.Duration {
	b.Helper()
	ctx := context.Background()
	c, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Release()
	start := time.Now()
	for _, table := range []string{"ledger.entries", "ledger.hash_runs"} {
		if _, err := c.Conn().PgConn().CopyTo(ctx, io.Discard, "COPY "+table+" TO STDOUT (FORMAT "+format+")"); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkAuditVsRead pairs the audit (what `tani verify -chain=skip`
// runs) with reading the two tables it checks by COPY … TO STDOUT, binary
// and text, one after the other in every run (alternating which goes
// first), and prints the times and the ratio of the audit to the faster
// read, min / median / max over -runs runs:
//
//	TANI_BENCH_AUDIT_ENTRIES=1000000 go test -run '^$' -bench AuditVsRead -benchtime 1x
func BenchmarkAuditVsRead(b *testing.B) {
	n := auditEntries(b)
	j, pool := mustAuditLog(b, n)
	mustAudit(b, j, n) // warm the caches, as for the reads
	readTables(b, pool, "binary")
	for b.Loop() {
		var audits, bins, texts, ratios []float64
		fmt.Printf("\naudit of %d entries and %d checkpoints against reading both tables\n", n, 100)
		fmt.Printf("  %-4s %-12s %10s %12s %10s %8s\n", "run", "first", "audit s", "binary s", "text s", "ratio")
		for r := range *benchRuns {
			var ta, tb, tt time.Duration
			audit := func() {
				start := time.Now()
				mustAudit(b, j, n)
				ta = time.Since(start)
			}
			first := "audit"
			if r%2 == 0 {
				audit()
				tb, tt = readTables(b, pool, "binary"), readTables(b, pool, "text")
			} else {
				first = "reads"
				tb, tt = readTables(b, pool, "binary"), readTables(b, pool, "text")
				audit()
			}
			floor := min(tb, tt)
			audits, bins, texts = append(audits, ta.Seconds()), append(bins, tb.Seconds()), append(texts, tt.Seconds())
			ratios = append(ratios, ta.Seconds()/floor.Seconds())
			fmt.Printf("  %-4d %-12s %10.2f %12.2f %10.2f %8.2f\n", r+1, first, ta.Seconds(), tb.Seconds(), tt.Seconds(), ta.Seconds()/floor.Seconds())
		}
		a, bn, tx, q := summarize(audits), summarize(bins), summarize(texts), summarize(ratios)
		fmt.Printf("  min/median/max  audit %s s | binary COPY %s s | text COPY %s s | ratio %s\n",
			a.format("%.2f"), bn.format("%.2f"), tx.format("%.2f"), q.format("%.2f"))
		b.ReportMetric(q.median, "ratio-median")
		b.ReportMetric(a.median, "audit-s")
	}
}

// stats is min / median / max of paired runs.
type stats struct{ min, median, max float64 }

func summarize(xs []float64) stats {
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{min: s[0], median: m, max: s[len(s)-1]}
}

func (s stats) format(f string) string {
	return fmt.Sprintf(f+" / "+f+" / "+f, s.min, s.median, s.max)
}

// BenchmarkAppendConcurrent measures single-revision appends from 64
// concurrent callers, which group commit shares out over transactions.
func BenchmarkAppendConcurrent(b *testing.B) {
	j := ledgertest.MustJournal(b)
	reg := prometheus.NewRegistry()
	if err := j.RegisterMetrics(reg); err != nil {
		b.Fatal(err)
	}
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
	// The group commit's size: entries per append transaction.
	b.ReportMetric(counterSum(b, reg, "tani_ledger_appended_entries_total")/
		counterSum(b, reg, "tani_ledger_append_transactions_total"), "entries/tx")
}

// counterSum is the sum of the counter name over its labels.
func counterSum(b *testing.B, reg *prometheus.Registry, name string) float64 {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
