package loadgen

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client"
)

// agent is one logged-in field agent with an enrolled device and the
// farmers it registered.
type agent struct {
	id    string
	c     *client.Client
	farms []farm
}

// job is one pre-signed /sync request, encoded.
type job struct {
	agent   *agent
	records []json.RawMessage
	body    client.SyncBody
}

// maxErrors is how many distinct failures a report quotes.
const maxErrors = 5

// Run sets up agents, syncs cfg.Records signed records and, when db is
// not nil, waits until ingest has stored every accepted one. It returns
// an error when the run could not be set up; the report's Err says whether
// the load itself went through.
func Run(ctx context.Context, cfg Config, db *pgxpool.Pool, logger *slog.Logger) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.Warmup > 0 && db == nil {
		return Report{}, errors.New("-warmup needs -database.url: the warm-up's records must be stored before the clock starts")
	}
	// One keep-alive connection per request in flight: the default of two
	// idle connections per host would measure TCP handshakes.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = cfg.inFlight()
	hc := &http.Client{Timeout: time.Minute, Transport: transport}
	defer transport.CloseIdleConnections()

	now := time.Now()
	agents, err := setUp(ctx, cfg, hc, now)
	if err != nil {
		return Report{}, err
	}
	r := Report{}
	for _, a := range agents {
		r.Agents = append(r.Agents, a.id)
	}
	setupIDs, err := register(ctx, cfg, agents, now)
	if err != nil {
		return r, err
	}
	r.SetupRecords = len(setupIDs)
	logger.InfoContext(ctx, "agents ready", "agents", len(agents), "farmers_registered", len(setupIDs))

	var w *waiter
	if db != nil {
		r.Measured = true
		w = &waiter{db: db, remaining: setupIDs}
		// Start the clock on an idle pipeline: set-up records stored first.
		if done, err := w.wait(ctx, cfg.IngestWait); err != nil || !done {
			return r, w.notStored("set-up", cfg.IngestWait, err)
		}
	}

	if cfg.Warmup > 0 {
		n, err := warmUp(ctx, cfg, agents, now, w)
		if err != nil {
			return r, err
		}
		r.WarmupRecords = n
		logger.InfoContext(ctx, "warmed up", "records", n)
	}

	signStart := time.Now()
	jobs, err := sign(cfg, agents, now, cfg.Records, timedSeed)
	if err != nil {
		return r, err
	}
	logger.InfoContext(ctx, "records signed", "records", cfg.Records, "requests", len(jobs), "took", time.Since(signStart).Round(time.Millisecond))

	if cfg.Timed != nil {
		cfg.Timed(true)
	}
	var dbStart time.Time
	if db != nil {
		if err := db.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&dbStart); err != nil {
			return r, fmt.Errorf("read database clock: %w", err)
		}
	}
	accepted := send(ctx, cfg, jobs, &r)
	if db == nil {
		return r, nil
	}
	w.remaining = accepted
	done, err := w.wait(ctx, cfg.IngestWait)
	if cfg.Timed != nil {
		cfg.Timed(false)
	}
	if err != nil {
		return r, err
	}
	r.Refused, r.IngestComplete = w.refused, done
	r.Stored = r.SetupRecords + len(accepted) - len(w.remaining) - w.refused
	if done && len(accepted) > 0 {
		var last time.Time
		if err := db.QueryRow(ctx, `SELECT max(ingested_at) FROM ingest.submissions WHERE id = ANY($1::uuid[])`, accepted).Scan(&last); err != nil {
			return r, fmt.Errorf("read ingest times: %w", err)
		}
		// Both ends on the database's clock.
		r.EndToEnd = last.Sub(dbStart)
	}
	return r, nil
}

// setUp creates an organization and cfg.Agents agents, logs each in and
// enrolls a fresh device key for it, as an operator and new agents would.
func setUp(ctx context.Context, cfg Config, hc *http.Client, now time.Time) ([]*agent, error) {
	admin := client.NewAdmin(cfg.URL, cfg.OperatorToken)
	org, err := admin.CreateOrganization(ctx, "Load test "+now.UTC().Format(time.RFC3339)+" "+uuid.NewString()[:8], "field")
	if err != nil {
		return nil, fmt.Errorf("create organization: %w", err)
	}
	farmers := farmersPerAgent(cfg)
	agents := make([]*agent, cfg.Agents)
	for i := range agents {
		username, password := "load"+strings.ReplaceAll(uuid.NewString(), "-", "")[:12], client.RandomPassword()
		id, err := admin.CreateAgent(ctx, org, username, password, fmt.Sprintf("Load Agent %d", i+1), "Central Java")
		if err != nil {
			return nil, fmt.Errorf("create agent %d: %w", i+1, err)
		}
		c := client.New(cfg.URL, hc)
		if err := c.Login(ctx, username, password); err != nil {
			return nil, fmt.Errorf("log agent %d in: %w", i+1, err)
		}
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, fmt.Errorf("device key: %w", err)
		}
		if _, err := c.EnrollDevice(ctx, fmt.Sprintf("load phone %d", i+1), key); err != nil {
			return nil, fmt.Errorf("enroll device of agent %d: %w", i+1, err)
		}
		g := newGenerator(uint64(i), now)
		a := &agent{id: id, c: c}
		for range farmers {
			a.farms = append(a.farms, g.newFarm())
		}
		agents[i] = a
	}
	return agents, nil
}

// farmersPerAgent spreads the load over enough farmers that records are
// not all about one plot, without set-up dominating a small run.
func farmersPerAgent(cfg Config) int {
	return min(100, max(1, cfg.Records/(cfg.Agents*20)))
}

// register syncs every agent's farmer registrations, so the timed phase
// may send records about them in any order and concurrently.
func register(ctx context.Context, cfg Config, agents []*agent, now time.Time) ([]string, error) {
	var ids []string
	for i, a := range agents {
		g := newGenerator(uint64(1_000_000+i), now)
		var batch []json.RawMessage
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			res, err := a.c.Sync(ctx, batch)
			if err != nil {
				return fmt.Errorf("register farmers of agent %s: %w", a.id, err)
			}
			for _, r := range res {
				if r.Status != "accepted" {
					return fmt.Errorf("register farmer (record %s) of agent %s: %s %v", r.ID, a.id, r.Status, r.Errors)
				}
				ids = append(ids, r.ID)
			}
			batch = batch[:0]
			return nil
		}
		for _, f := range a.farms {
			raw, _, err := a.c.Record(record.TypeFarmerRegistered, g.capturedAt(), g.location(f), g.registration(f))
			if err != nil {
				return nil, fmt.Errorf("sign registration: %w", err)
			}
			if batch = append(batch, raw); len(batch) == cfg.Batch {
				if err := flush(); err != nil {
					return nil, err
				}
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// Seeds of the generators of the timed phase's requests and the warm-up's
// (request j uses seed+j): the warm-up's records are of the same mix but
// never the timed phase's, and the timed phase's are the same whether or
// not there was a warm-up (the floor stores exactly those).
const (
	timedSeed  = 2_000_000
	warmupSeed = 3_000_000
)

// warmUp sends cfg.Warmup records of the timed phase's mix, untimed, and
// waits until every one is stored, so that the clock starts on a process
// that has done the work before: the pool connections it has opened past
// their first PostGIS call (~30 ms to load the library and ~35 ms to set
// up the spheroid, per backend), JetStream's files and Go's heap grown.
// A warm-up record that fails fails the run, as a timed one would.
func warmUp(ctx context.Context, cfg Config, agents []*agent, now time.Time, w *waiter) (int, error) {
	jobs, err := sign(cfg, agents, now, cfg.Warmup, warmupSeed)
	if err != nil {
		return 0, err
	}
	var wr Report
	w.remaining = send(ctx, cfg, jobs, &wr)
	if err := wr.Err(); err != nil {
		return 0, fmt.Errorf("warm-up: %w", err)
	}
	if done, err := w.wait(ctx, cfg.IngestWait); err != nil || !done {
		return 0, w.notStored("warm-up", cfg.IngestWait, err)
	}
	return wr.Accepted, nil
}

// sign builds and signs records records in requests of cfg.Batch before
// the phase that sends them starts, and encodes each request, so that the
// load machine's signing does not count against the server (on a 2-core
// box they share the CPU): the timed phase only sends bytes and reads
// answers, as phones with a full outbox do. Agents take turns request by
// request.
func sign(cfg Config, agents []*agent, now time.Time, records int, seed uint64) ([]job, error) {
	jobs := make([]job, (records+cfg.Batch-1)/cfg.Batch)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range next {
				a := agents[j%len(agents)]
				g := newGenerator(seed+uint64(j), now)
				n := min(cfg.Batch, records-j*cfg.Batch)
				recs := make([]json.RawMessage, 0, n)
				for range n {
					f := a.farms[g.rng.IntN(len(a.farms))]
					typ, payload := g.event(f)
					raw, _, err := a.c.Record(typ, g.capturedAt(), g.location(f), payload)
					if err != nil {
						mu.Lock()
						first = cmp.Or(first, fmt.Errorf("sign %s record: %w", typ, err))
						mu.Unlock()
						break
					}
					recs = append(recs, raw)
				}
				body, err := client.EncodeSync(recs)
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, fmt.Errorf("encode request: %w", err))
					mu.Unlock()
				}
				jobs[j] = job{agent: a, records: recs, body: body}
			}
		})
	}
	for j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	return jobs, first
}

// send runs the timed phase: cfg.inFlight() workers sync the jobs until
// they are all sent or cfg.Duration has passed. It fills r and returns the
// ids of the accepted records.
func send(ctx context.Context, cfg Config, jobs []job, r *Report) []string {
	sendCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	queue := make(chan job)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, len(jobs))
		accepted  = make([]string, 0, cfg.Records)
		seenErr   = map[string]bool{}
	)
	note := func(msg string) {
		if !seenErr[msg] && len(r.Errors) < maxErrors {
			seenErr[msg] = true
			r.Errors = append(r.Errors, msg)
		}
	}
	start := time.Now()
	for range cfg.inFlight() {
		wg.Go(func() {
			for j := range queue {
				// In-flight requests finish after the cap: their answer
				// is part of what was measured.
				t0 := time.Now()
				res, err := j.agent.c.SyncBody(ctx, j.body)
				took := time.Since(t0)
				mu.Lock()
				r.Batches++
				r.Sent += len(j.records)
				if err != nil {
					r.FailedBatches++
					note(err.Error())
				} else {
					latencies = append(latencies, took)
				}
				for _, res := range res {
					switch res.Status {
					case "accepted":
						r.Accepted++
						accepted = append(accepted, res.ID)
					case "duplicate":
						r.Duplicate++
					default:
						r.Rejected++
						note(fmt.Sprintf("record %s %s: %v", res.ID, res.Status, res.Errors))
					}
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, j := range jobs {
		select {
		case queue <- j:
		case <-sendCtx.Done():
			r.Capped = errors.Is(sendCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
			break feed
		}
	}
	close(queue)
	wg.Wait()
	r.Elapsed = time.Since(start)
	r.Latency = summarize(latencies)
	return accepted
}

// waiter follows records until ingest has stored or refused them all.
type waiter struct {
	db        *pgxpool.Pool
	remaining []string
	refused   int
}

// notStored says why a phase's records were not all stored: the wait
// failed (err), or limit passed with some left or some refused.
func (w *waiter) notStored(phase string, limit time.Duration, err error) error {
	if err != nil {
		return fmt.Errorf("%s records: %w", phase, err)
	}
	return fmt.Errorf("%s records not stored within %s (%d left, %d refused)", phase, limit, len(w.remaining), w.refused)
}

// pollEvery is how often the database is asked; the end-to-end figure
// comes from ingest's own timestamps, not from this resolution.
const pollEvery = 200 * time.Millisecond

// wait polls until every remaining record is stored or refused (true) or
// limit passes (false).
func (w *waiter) wait(ctx context.Context, limit time.Duration) (bool, error) {
	deadline := time.Now().Add(limit)
	for {
		if err := w.poll(ctx); err != nil {
			return false, err
		}
		if len(w.remaining) == 0 {
			return w.refused == 0, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// probeSize is how many of the newest remaining records poll looks up
// before it looks up all of them.
const probeSize = 256

// poll drops the records ingest has stored or refused since the last poll.
//
// Looking up every remaining record costs Postgres tens of milliseconds of
// CPU while tens of thousands remain, and the measured pipeline needs that
// CPU. Records are settled roughly in the order they were accepted, so poll
// first looks up only the newest few: while one of them is unsettled, the
// whole set cannot be, and the full look-up waits. The probe only skips
// work; the answer always comes from the full look-up.
func (w *waiter) poll(ctx context.Context) error {
	if len(w.remaining) == 0 {
		return nil
	}
	if n := len(w.remaining); n > 2*probeSize {
		newest := w.remaining[n-probeSize:]
		done, err := w.settled(ctx, newest)
		if err != nil {
			return err
		}
		if len(done) < len(newest) {
			return nil
		}
	}
	done, err := w.settled(ctx, w.remaining)
	if err != nil {
		return err
	}
	kept := w.remaining[:0]
	for _, id := range w.remaining {
		stored, ok := done[id]
		switch {
		case !ok:
			kept = append(kept, id)
		case !stored:
			w.refused++
		}
	}
	w.remaining = kept
	return nil
}

// settled returns which of ids ingest has stored (true) or refused
// (false); a record both refused once and stored later counts as stored.
func (w *waiter) settled(ctx context.Context, ids []string) (map[string]bool, error) {
	rows, err := w.db.Query(ctx, `
		SELECT id::text, true FROM ingest.submissions WHERE id = ANY($1::uuid[])
		UNION ALL
		SELECT record_id::text, false FROM mobile.refusals
		WHERE record_id = ANY($1::uuid[]) AND subject LIKE 'farm.submitted.%'`, ids)
	if err != nil {
		return nil, fmt.Errorf("count stored records: %w", err)
	}
	done := map[string]bool{}
	var id string
	var stored bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &stored}, func() error {
		done[id] = stored || done[id]
		return nil
	}); err != nil {
		return nil, fmt.Errorf("count stored records: %w", err)
	}
	return done, nil
}
