package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Platform is a Tani started for one measurement.
type Platform struct {
	URL           string        // base URL of its HTTP API
	OperatorToken string        // for /admin/v1
	DB            *pgxpool.Pool // its database, read to see what ingest stored
	// PID is the process running Tani, 0 when it runs in this one: its
	// CPU time and this process's are then counted apart.
	PID int
}

// Starter starts Tani running target (as -target takes it) on a fresh
// database and data directory and returns it once ready, with a function
// that shuts it down and removes what it created. `tani load -ratio`
// starts the tani binary as a child process; tests start it in process.
type Starter func(ctx context.Context, target string) (Platform, func() error, error)

// SyncP99Bound is the most a 100-record /sync may take at the 99th
// percentile under load.
const SyncP99Bound = 500 * time.Millisecond

// CaptureMeasure measures the capture path end to end on a Tani that
// start starts afresh for every run: cfg's agents sync cfg.Records
// signed records (signed before the clock starts) and the figure is the
// accepted records over the time from the first /sync to the last
// record's ingested_at, both on the database's clock. The /sync p99 is
// taken in the same run.
func CaptureMeasure(name, target string, cfg Config, start Starter, logger *slog.Logger) Measure {
	return Measure{
		Name: name,
		Unit: "records/s",
		Desc: fmt.Sprintf("tani up -target=%s on a fresh database, warmed up by %d records (untimed): %d signed records, /sync batches of %d from %d agents, → JetStream → ingest → stored; first /sync to last ingested_at%s",
			target, cfg.Warmup, cfg.Records, cfg.Batch, cfg.Agents, attestNote(target)),
		Run: func(ctx context.Context, run int) (Sample, error) {
			p, stop, err := start(ctx, target)
			if err != nil {
				return Sample{}, fmt.Errorf("start tani -target=%s: %w", target, err)
			}
			c := cfg
			c.URL, c.OperatorToken = p.URL, p.OperatorToken
			var meter cpuMeter
			if p.PID != 0 {
				meter.add("tani CPU", func() (time.Duration, error) { return processCPU(p.PID) })
				meter.add("postgres CPU", func() (time.Duration, error) { return backendsCPU(ctx, p.DB) })
				meter.add("load tool CPU", selfCPU)
			}
			var cpu []Side
			c.Timed = func(started bool) {
				if started {
					meter.begin()
					return
				}
				cpu = meter.end(c.Records)
				if !runsAttest(target) {
					return
				}
				if progress, ok := attestProgress(ctx, p.DB); ok {
					cpu = append(cpu, progress)
				}
			}
			report, err := Run(ctx, c, p.DB, logger.With("measure", name, "run", run+1))
			if err == nil {
				err = report.Err()
			}
			if stopErr := stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("stop tani: %w", stopErr))
			}
			if err != nil {
				return Sample{}, err
			}
			p99 := Side{Name: "sync p99", Unit: "ms", Value: float64(report.Latency.P99) / float64(time.Millisecond)}
			if c.Batch == 100 {
				p99.Max = float64(SyncP99Bound / time.Millisecond)
			}
			return Sample{Value: report.StoredPerSecond(), Side: append([]Side{
				p99,
				{Name: "accepted", Unit: "records/s", Value: report.AcceptedPerSecond()},
			}, cpu...)}, nil
		},
	}
}

// attestNote says, for a target that runs attest, what its figure is.
func attestNote(target string) string {
	if !runsAttest(target) {
		return ""
	}
	return " (attest decided: its share of the stored records then; the rest it decides after the clock)"
}

// runsAttest reports whether a tani started with -target=target runs
// attest.
func runsAttest(target string) bool {
	return target == "all" || slices.Contains(strings.Split(target, ","), "attest")
}

// attestProgress is how far attest had got when the clock stopped: the
// records it had decided, as a share of those ingest had stored. The
// figure stops with ingest, so on the all-in-one path attest's (and the
// other services') work on the rest is done after it and not counted;
// this says how much. ok is false when the counts cannot be read.
func attestProgress(ctx context.Context, db *pgxpool.Pool) (side Side, ok bool) {
	var decided, stored int64
	err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM attest.records), (SELECT count(*) FROM ingest.submissions)`).Scan(&decided, &stored)
	if err != nil || stored == 0 {
		return Side{}, false
	}
	return Side{Name: "attest decided", Unit: "% of stored", Value: 100 * float64(decided) / float64(stored)}, true
}
