package loadgen

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// Latency summarizes the /sync round trips of a run.
type Latency struct {
	N                  int
	P50, P95, P99, Max time.Duration
}

// summarize computes nearest-rank percentiles: the reported p99 is a
// latency some request actually had, never an interpolation.
func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return Latency{N: len(s), P50: percentile(s, 50), P95: percentile(s, 95), P99: percentile(s, 99), Max: s[len(s)-1]}
}

// percentile is the nearest-rank p-th percentile of sorted, non-empty s.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Report is what a run measured.
type Report struct {
	Agents       []string // ids of the agents the run created
	SetupRecords int      // farmer registrations synced before the timed phase
	// WarmupRecords were sent and stored before the timed phase (-warmup).
	WarmupRecords int

	Batches, FailedBatches        int
	Sent                          int
	Accepted, Duplicate, Rejected int
	Errors                        []string // the first distinct failures
	Capped                        bool     // sending stopped at -duration
	Elapsed                       time.Duration
	Latency                       Latency

	// Set when the database was given.
	Measured       bool
	Stored         int // of the accepted records, including set-up ones
	Refused        int // accepted records ingest refused
	IngestComplete bool
	EndToEnd       time.Duration // from the first /sync to the last record stored
}

// AcceptedPerSecond is the timed phase's acceptance rate.
func (r Report) AcceptedPerSecond() float64 { return perSecond(r.Accepted, r.Elapsed) }

// StoredPerSecond is the end-to-end rate: accepted records stored in
// Postgres per second of the timed phase plus the ingest tail.
func (r Report) StoredPerSecond() float64 { return perSecond(r.Accepted, r.EndToEnd) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Err says why the run failed: a failed request, a rejected or refused
// record, or records not stored within the wait.
func (r Report) Err() error {
	switch {
	case r.FailedBatches > 0:
		return fmt.Errorf("%d of %d /sync requests failed", r.FailedBatches, r.Batches)
	case r.Rejected > 0:
		return fmt.Errorf("%d records were rejected", r.Rejected)
	case r.Measured && r.Refused > 0:
		return fmt.Errorf("ingest refused %d accepted records", r.Refused)
	case r.Measured && !r.IngestComplete:
		return fmt.Errorf("only %d of %d accepted records were stored within the wait", r.Stored, r.Accepted+r.SetupRecords)
	}
	return nil
}

// Write prints the summary.
func (r Report) Write(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "agents:        %d (%d farmer registrations in set-up)\n", len(r.Agents), r.SetupRecords)
	fmt.Fprintf(w, "sent:          %d records in %d /sync requests over %s", r.Sent, r.Batches, r.Elapsed.Round(time.Millisecond))
	if r.Capped {
		fmt.Fprint(w, " (stopped at -duration)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "accepted:      %d (%.0f records/s), duplicate %d, rejected %d, failed requests %d\n",
		r.Accepted, r.AcceptedPerSecond(), r.Duplicate, r.Rejected, r.FailedBatches)
	fmt.Fprintf(w, "/sync latency: p50 %s  p95 %s  p99 %s  max %s  (n=%d)\n",
		ms(r.Latency.P50), ms(r.Latency.P95), ms(r.Latency.P99), ms(r.Latency.Max), r.Latency.N)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error:         %s\n", e)
	}
	if !r.Measured {
		fmt.Fprintln(w, "stored:        not measured (give -database.url)")
		return
	}
	if r.IngestComplete {
		fmt.Fprintf(w, "stored:        all %d accepted records in %s end to end (%.0f records/s)\n",
			r.Accepted, r.EndToEnd.Round(time.Millisecond), r.StoredPerSecond())
	} else {
		fmt.Fprintf(w, "stored:        %d of %d records (with set-up) when the wait ended; refused %d\n", r.Stored, r.Accepted+r.SetupRecords, r.Refused)
	}
}
