package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"
)

// MaxBatch is the most records /sync takes in one request.
const MaxBatch = 500

// Config says how much load to send where.
type Config struct {
	URL           string
	OperatorToken string
	Agents        int
	Batch         int
	Records       int
	Duration      time.Duration // cap on the sending phase
	Concurrency   int           // /sync requests in flight; 0 means one per agent
	IngestWait    time.Duration // cap on waiting for ingest after sending
	DatabaseURL   string        // optional: count stored records to measure end to end
	// Warmup is how many records of the same mix are sent and stored
	// before the clock starts (needs DatabaseURL to wait for them).
	Warmup int
	// Timed, when set, is called with true as the clock starts (records
	// signed, pipeline idle) and with false once every accepted record
	// is stored or the wait ended: the ratio bench reads CPU clocks there.
	Timed func(started bool)
}

// RegisterFlags registers the load flags (the operator token is read by
// the command, which also knows about token files).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "base URL of the Tani API under load")
	fs.IntVar(&c.Agents, "agents", 8, "field agents to create, each with its own device and farmers")
	fs.IntVar(&c.Batch, "batch", 100, fmt.Sprintf("records per /sync request (1..%d)", MaxBatch))
	fs.IntVar(&c.Records, "records", 50_000, "records to send in total, after set-up")
	fs.DurationVar(&c.Duration, "duration", 2*time.Minute, "stop sending after this long even if records remain")
	fs.IntVar(&c.Concurrency, "concurrency", 0, "/sync requests in flight at once; 0 means one per agent")
	fs.DurationVar(&c.IngestWait, "ingest-wait", 2*time.Minute, "how long to wait after sending for ingest to store every accepted record")
	fs.IntVar(&c.Warmup, "warmup", 0, "records of the same mix sent and stored before the clock starts, so that the timed phase measures a warm process (needs -database.url; `-ratio` warms up by 5000 unless set)")
	fs.StringVar(&c.DatabaseURL, "database.url", "", "Postgres URL of the platform, to measure when accepted records are stored; empty skips that")
}

// Validate reports every unusable setting at once.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("-url %q must be an http(s) URL with a host", c.URL))
	}
	if c.OperatorToken == "" {
		errs = append(errs, errors.New("no operator token: set -operator-token or -operator-token-file"))
	}
	if c.Agents < 1 {
		errs = append(errs, fmt.Errorf("-agents %d must be at least 1", c.Agents))
	}
	if c.Batch < 1 || c.Batch > MaxBatch {
		errs = append(errs, fmt.Errorf("-batch %d must be between 1 and %d", c.Batch, MaxBatch))
	}
	if c.Records < 1 {
		errs = append(errs, fmt.Errorf("-records %d must be at least 1", c.Records))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("-duration %s must be positive", c.Duration))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("-warmup %d must not be negative", c.Warmup))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("-concurrency %d must not be negative", c.Concurrency))
	}
	if c.IngestWait <= 0 {
		errs = append(errs, fmt.Errorf("-ingest-wait %s must be positive", c.IngestWait))
	}
	return errors.Join(errs...)
}

// inFlight is the number of concurrent /sync requests.
func (c Config) inFlight() int {
	if c.Concurrency > 0 {
		return c.Concurrency
	}
	return c.Agents
}
