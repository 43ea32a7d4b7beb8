package journalbench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

var (
	runs  = flag.Int("runs", 3, "paired runs per scenario (Tani and Tessera alternate which goes first)")
	scale = flag.Float64("scale", 1, "multiplies the entries appended per run")
	only  = flag.String("scenario", "", "run only the scenario with this name (batch=100, batch=1000, callers=64)")
)

// scenario is one way of appending: sequential calls of batch entries, or
// callers concurrent single-entry calls.
type scenario struct {
	name    string
	batch   int
	callers int
	entries int
}

var scenarios = []scenario{
	{name: "batch=100", batch: 100, callers: 1, entries: 20_000},
	{name: "batch=1000", batch: 1000, callers: 1, entries: 50_000},
	{name: "callers=64", batch: 1, callers: 64, entries: 20_000},
}

// BenchmarkJournalVsTessera appends the same entries to the journal and to
// a Tessera POSIX log, run after run, alternating which goes first, and
// prints entries/s of each and their ratio per run and as min / median /
// max. Both are durable when an append returns (PostgreSQL with fsync and
// synchronous_commit on; Tessera writes with O_SYNC and syncs directories),
// and a run ends once a checkpoint covering all its entries is published
// (SignCheckpoint; Tessera's published checkpoint file). Run it once:
//
//	go test -run '^$' -bench JournalVsTessera -benchtime 1x
func BenchmarkJournalVsTessera(b *testing.B) {
	for _, sc := range scenarios {
		if *only != "" && *only != sc.name {
			continue
		}
		sc.entries = int(float64(sc.entries) * *scale)
		b.Run(sc.name, func(b *testing.B) {
			for b.Loop() {
				benchScenario(b, sc)
			}
		})
	}
}

func benchScenario(b *testing.B, sc scenario) {
	ctx := context.Background()
	j, pool := ledgertest.MustJournalPool(b)
	checkDurable(b, pool)
	dir := b.TempDir()
	sameDisk(b, pool, dir)
	tl := mustTessera(b, dir, sc)

	tl0 := &taniLog{j: j}
	next := 0
	// Warm-up, not counted: connections, caches, first files.
	warm := max(sc.entries/10, sc.batch*sc.callers)
	if _, err := tl0.run(ctx, sc, next, warm, true); err != nil {
		b.Fatal(err)
	}
	if _, err := tl.run(ctx, sc, next, warm, true); err != nil {
		b.Fatal(err)
	}
	next += warm

	var taniRates, tessRates, ratios []float64
	fmt.Printf("\n%s: %d entries per run (calls of %d entries from %d caller(s))\n", sc.name, sc.entries, sc.batch, sc.callers)
	fmt.Printf("  %-4s %-8s %14s %14s %8s\n", "run", "order", "Tani e/s", "Tessera e/s", "ratio")
	half := sc.entries / 2
	for r := range *runs {
		// Each run appends its entries in two halves per log, in the
		// order ABBA (then BAAB), so that a load that rises or falls
		// during the run weighs on both alike; the checkpoint is published
		// after the second half.
		var td, sd time.Duration
		step := func(tani bool, lo, n int, publish bool) error {
			if tani {
				d, err := tl0.run(ctx, sc, next+lo, n, publish)
				td += d
				return err
			}
			d, err := tl.run(ctx, sc, next+lo, n, publish)
			sd += d
			return err
		}
		order := "TSST"
		a := r%2 == 0
		if !a {
			order = "STTS"
		}
		for _, st := range []struct {
			tani   bool
			second bool
		}{{a, false}, {!a, false}, {!a, true}, {a, true}} {
			lo, n := 0, half
			if st.second {
				lo, n = half, sc.entries-half
			}
			if err := step(st.tani, lo, n, st.second); err != nil {
				b.Fatal(err)
			}
		}
		next += sc.entries
		tr, sr := float64(sc.entries)/td.Seconds(), float64(sc.entries)/sd.Seconds()
		taniRates, tessRates, ratios = append(taniRates, tr), append(tessRates, sr), append(ratios, tr/sr)
		fmt.Printf("  %-4d %-8s %14.0f %14.0f %8.2f\n", r+1, order, tr, sr, tr/sr)
	}
	t, s, q := summarize(taniRates), summarize(tessRates), summarize(ratios)
	fmt.Printf("  min/median/max  Tani %s e/s | Tessera %s e/s | ratio %s\n",
		t.format("%.0f"), s.format("%.0f"), q.format("%.2f"))
	b.ReportMetric(q.median, "ratio-median")
	b.ReportMetric(t.median, "tani-entries/s")
	b.ReportMetric(s.median, "tessera-entries/s")
}

// revision is the n-th entry appended: a farm-record-sized revision
// (about 200 bytes of JSON payload), as in the ledger's own benchmarks.
func revision(n int) ledger.Revision {
	return ledger.Revision{
		RecordID:     fmt.Sprintf("9b2f6c1e-4d3a-4f8b-a1c2-%012d", n),
		Kind:         "plot.mapped",
		Revision:     1,
		Payload:      fmt.Appendf(nil, `{"plot":%d,"area_m2":1234.5,"crop":"maize","boundary":[[36.8219,-1.2921],[36.8225,-1.2921],[36.8225,-1.2927],[36.8219,-1.2927]]}`, n),
		OccurredAt:   time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
		SignatureRef: "device:4f1e/sig:" + strconv.Itoa(n),
	}
}

// leafBytes is the leaf the journal logs for revision n: what Tessera is
// given. (The journal also keeps the payload and its lookup columns;
// Tessera gets the leaf only.)
func leafBytes(n int, logged time.Time) []byte {
	r := revision(n)
	e := verify.Entry{Type: verify.TypeRevision, RecordID: r.RecordID, Kind: r.Kind, Revision: r.Revision,
		PayloadHash: sha256.Sum256(r.Payload), OccurredAt: r.OccurredAt, SignatureRef: r.SignatureRef, LoggedAt: logged}
	data, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	return data
}

type taniLog struct{ j *ledger.Journal }

// run appends entries [from, from+n) and, if publish, signs a checkpoint
// covering them.
func (t *taniLog) run(ctx context.Context, sc scenario, from, n int, publish bool) (time.Duration, error) {
	revs := make([]ledger.Revision, n)
	for i := range revs {
		revs[i] = revision(from + i)
	}
	start := time.Now()
	if err := spread(sc, n, func(lo, hi int) error {
		_, err := t.j.Append(ctx, revs[lo:hi]...)
		return err
	}); err != nil {
		return 0, fmt.Errorf("tani: %w", err)
	}
	if !publish {
		return time.Since(start), nil
	}
	cp, err := t.j.SignCheckpoint(ctx)
	if err != nil {
		return 0, fmt.Errorf("tani: sign checkpoint: %w", err)
	}
	d := time.Since(start)
	if cp.Size < int64(from+n) {
		return 0, fmt.Errorf("tani: checkpoint size %d after appending up to %d", cp.Size, from+n)
	}
	return d, nil
}

// spread makes the calls of a scenario: appends of [lo, hi) from
// sc.callers goroutines taking the next call in turn.
func spread(sc scenario, n int, call func(lo, hi int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, sc.callers)
	for range sc.callers {
		wg.Go(func() {
			for {
				lo := int(next.Add(int64(sc.batch))) - sc.batch
				if lo >= n {
					return
				}
				if err := call(lo, min(lo+sc.batch, n)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

type tesseraLog struct {
	add     func(context.Context, *tessera.Entry) tessera.IndexFuture
	awaiter *tessera.PublicationAwaiter
}

// mustTessera opens a Tessera POSIX log in dir, batching as the scenario's
// callers do: a batch is sequenced as soon as one call's entries (or one
// entry of every concurrent caller) are queued, or 20 ms after the first
// entry queued otherwise. (Shorter waits flush batches of a few entries
// and lose throughput: 1 ms gave 1,200 entries/s with 64 callers, 20 ms
// 4,000.) A checkpoint is published at most every 100 ms, Tessera's
// minimum.
func mustTessera(tb testing.TB, dir string, sc scenario) *tesseraLog {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	skey, _, err := note.GenerateKey(rand.Reader, "bench.tani.local/tessera")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		tb.Fatal(err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(100*time.Millisecond).
		WithBatching(uint(sc.batch*sc.callers), 20*time.Millisecond)
	a, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), time.Minute)
		defer c()
		if err := shutdown(sctx); err != nil {
			tb.Logf("tessera shutdown: %v", err)
		}
		cancel()
	})
	return &tesseraLog{add: a.Add, awaiter: tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, time.Millisecond)}
}

// run adds entries [from, from+n) and, if publish, waits for a published
// checkpoint that covers them.
func (t *tesseraLog) run(ctx context.Context, sc scenario, from, n int, publish bool) (time.Duration, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	leaves := make([][]byte, n)
	for i := range leaves {
		leaves[i] = leafBytes(from+i, now)
	}
	var largest atomic.Uint64
	start := time.Now()
	if err := spread(sc, n, func(lo, hi int) error {
		fs := make([]tessera.IndexFuture, hi-lo)
		for i := range fs {
			fs[i] = t.add(ctx, tessera.NewEntry(leaves[lo+i]))
		}
		for _, f := range fs {
			idx, err := f()
			if err != nil {
				return err
			}
			for old := largest.Load(); idx.Index > old && !largest.CompareAndSwap(old, idx.Index); old = largest.Load() {
			}
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("tessera: %w", err)
	}
	top := largest.Load()
	if top+1 != uint64(from+n) {
		return 0, fmt.Errorf("tessera: largest index %d after appending up to %d", top, from+n)
	}
	if !publish {
		return time.Since(start), nil
	}
	// Every future has resolved: wait for a published checkpoint that
	// covers the largest index assigned.
	if _, _, err := t.awaiter.Await(ctx, func() (tessera.Index, error) { return tessera.Index{Index: top}, nil }); err != nil {
		return 0, fmt.Errorf("tessera: await checkpoint: %w", err)
	}
	return time.Since(start), nil
}

// checkDurable fails unless PostgreSQL makes a commit durable before it
// returns, as it does in production.
func checkDurable(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	for _, s := range []string{"fsync", "synchronous_commit"} {
		var v string
		if err := pool.QueryRow(context.Background(), "SELECT current_setting($1)", s).Scan(&v); err != nil {
			tb.Fatal(err)
		}
		if v != "on" {
			tb.Fatalf("%s is %q: the comparison needs durable commits", s, v)
		}
	}
}

// sameDisk warns when Tessera's directory is not on the device holding
// PostgreSQL's data directory (when that can be seen from here).
func sameDisk(tb testing.TB, pool *pgxpool.Pool, dir string) {
	tb.Helper()
	var pgdata string
	if err := pool.QueryRow(context.Background(), "SHOW data_directory").Scan(&pgdata); err != nil {
		tb.Logf("cannot read data_directory: %v", err)
		return
	}
	var a, c syscall.Stat_t
	if syscall.Stat(pgdata, &a) != nil || syscall.Stat(dir, &c) != nil {
		tb.Logf("cannot compare the devices of %s and %s", pgdata, dir)
		return
	}
	if a.Dev != c.Dev {
		fmt.Fprintf(os.Stderr, "WARNING: Tessera's directory %s is not on the device of PostgreSQL's %s\n", dir, pgdata)
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
