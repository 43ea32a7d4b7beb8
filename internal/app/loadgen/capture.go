package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
		Desc: fmt.Sprintf("tani up -target=%s on a fresh database, warmed up by %d records (untimed): %d signed records, /sync batches of %d from %d agents, → JetStream → ingest → stored; first /sync to last ingested_at",
			target, cfg.Warmup, cfg.Records, cfg.Batch, cfg.Agents),
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
				} else {
					cpu = meter.end(c.Records)
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
