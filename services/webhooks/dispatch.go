package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/consent"
)

// job is one claimed delivery: what to send where, with which keys.
type job struct {
	id          int64
	endpointID  string
	eventID     string
	eventType   string
	orgID       string
	farmerID    string
	scope       string
	body        []byte
	attempts    int // made before this one
	windowStart time.Time
	published   *time.Time
	leaseUntil  *time.Time
	url         string
	keys        [][]byte
	// consentOK is the answer of the consent check made when the job was
	// claimed (or created), at checkedAt; a farmer's event is checked
	// again before an attempt unless that answer is fresher than
	// consentFresh.
	consentOK bool
	checkedAt time.Time
}

// workersPerEndpoint is how many workers an endpoint's queue may have per
// request it may have in flight.
const workersPerEndpoint = 4

// consentFresh is how old a consent check may be when an attempt starts.
// Claiming checks in bulk; a job that waited longer in its queue is
// checked again, alone, right before its attempt.
const consentFresh = 250 * time.Millisecond

// Outcomes of an attempt.
const (
	outcomeDelivered = "delivered"
	outcomeFailed    = "failed"   // will be retried
	outcomeGaveUp    = "gave_up"  // failed at the end of the retry window
	outcomeWithheld  = "withheld" // not sent: the consent it needed is gone
)

// result is what an attempt came to.
type result struct {
	job     *job
	outcome string
	status  int // HTTP status; 0 when none came back
	err     string
	latency time.Duration
	at      time.Time
	next    time.Time // the next attempt, for outcomeFailed
}

// dispatcher runs a process's attempts: a bounded queue and up to
// EndpointConcurrency workers per endpoint (so a slow endpoint holds up
// only its own queue), at most MaxInFlight attempts in all, a claimer that
// takes due retries from Postgres, and one writer that stores results in
// batches.
type dispatcher struct {
	s       *Service
	slots   chan struct{}
	results chan result
	wake    chan struct{}

	mu      sync.Mutex
	queues  map[string]*queue
	closing bool
	workers sync.WaitGroup

	// abort ends attempts still in flight a grace period after shutdown
	// began, so that a slow endpoint cannot hold a stopping process.
	abort       context.Context
	abortCancel context.CancelFunc
}

// shutdownGrace is how long attempts in flight may finish once the
// process is stopping; those cut off count as failed attempts and are
// retried (with the same webhook-id).
const shutdownGrace = 3 * time.Second

// queue is one endpoint's waiting jobs in this process. Its workers may
// outnumber its requests in flight (sending takes a place in sending):
// a worker waiting for a consent check does not hold one.
type queue struct {
	jobs    chan *job
	sending chan struct{}
	workers int
	// starved is set when a job was refused for lack of room, so that a
	// worker wakes the claimer once room frees up.
	starved bool
}

func newDispatcher(s *Service) *dispatcher {
	abort, cancel := context.WithCancel(context.Background())
	return &dispatcher{
		s:       s,
		slots:   make(chan struct{}, s.cfg.MaxInFlight),
		results: make(chan result, 4*s.cfg.MaxInFlight),
		wake:    make(chan struct{}, 1),
		queues:  map[string]*queue{},
		abort:   abort, abortCancel: cancel,
	}
}

// offer queues jobs for their endpoints and returns those for which there
// was no room (or that came after shutdown began).
func (d *dispatcher) offer(jobs []*job) []*job {
	var refused []*job
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, j := range jobs {
		if d.closing {
			refused = append(refused, j)
			continue
		}
		q := d.queues[j.endpointID]
		if q == nil {
			q = &queue{jobs: make(chan *job, d.s.cfg.EndpointQueue), sending: make(chan struct{}, d.s.cfg.EndpointConcurrency)}
			d.queues[j.endpointID] = q
		}
		select {
		case q.jobs <- j:
			if q.workers < workersPerEndpoint*d.s.cfg.EndpointConcurrency {
				q.workers++
				d.workers.Add(1)
				go d.work(q)
			}
		default:
			q.starved = true
			refused = append(refused, j)
		}
	}
	return refused
}

// offerOrRelease offers jobs and releases the leases of those refused, so
// the claimer (of any process) takes them when there is room. A job whose
// consent check just failed is settled as withheld instead.
func (d *dispatcher) offerOrRelease(ctx context.Context, jobs []*job) {
	var live []*job
	for _, j := range jobs {
		if j.scope != "" && !j.consentOK {
			d.withholdLater(j)
			continue
		}
		live = append(live, j)
	}
	if refused := d.offer(live); len(refused) > 0 {
		if err := d.release(ctx, refused); err != nil {
			// Their leases run out by themselves.
			d.s.logger.WarnContext(ctx, "release deliveries", "deliveries", len(refused), "err", err)
		}
	}
}

// withholdLater settles j as withheld without blocking the caller (the
// claimer, the fan-out) on the result writers; after shutdown began it is
// left to its lease.
func (d *dispatcher) withholdLater(j *job) {
	d.mu.Lock()
	closing := d.closing
	if !closing {
		d.workers.Add(1)
	}
	d.mu.Unlock()
	if closing {
		return
	}
	go func() {
		defer d.workers.Done()
		d.withhold(j)
	}()
}

// release gives deliveries back before their lease runs out.
func (d *dispatcher) release(ctx context.Context, jobs []*job) error {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.id
	}
	_, err := d.s.pool.Exec(ctx, `UPDATE webhooks.deliveries SET lease_until = NULL WHERE id = ANY($1) AND state = 'pending'`, ids)
	return err
}

// full lists the endpoints whose queue has less than half its room free:
// the claimer leaves their deliveries for later, and their workers wake
// it once half the room is free again.
func (d *dispatcher) full() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for id, q := range d.queues {
		if len(q.jobs) > cap(q.jobs)/2 {
			q.starved = true
			out = append(out, id)
		}
	}
	return out
}

// drop takes an endpoint's queued jobs out of this process (it was
// disabled or deleted) and gives back their leases.
func (d *dispatcher) drop(ctx context.Context, endpoint string) {
	var queued []*job
	d.mu.Lock()
	if q := d.queues[endpoint]; q != nil {
	drain:
		for {
			select {
			case j := <-q.jobs:
				queued = append(queued, j)
			default:
				break drain
			}
		}
	}
	d.mu.Unlock()
	if len(queued) > 0 {
		if err := d.release(ctx, queued); err != nil {
			d.s.logger.WarnContext(ctx, "give back queued deliveries; their leases will run out", "deliveries", len(queued), "err", err)
		}
	}
}

// starve marks the queues of endpoints that may have more due than the
// claimer took, so their workers wake it when there is room.
func (d *dispatcher) starve(endpoints []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range endpoints {
		if q := d.queues[id]; q != nil {
			q.starved = true
		}
	}
}

// work runs one endpoint's jobs until its queue is empty.
func (d *dispatcher) work(q *queue) {
	defer d.workers.Done()
	for {
		select {
		case j := <-q.jobs:
			d.attempt(q, j)
			d.mu.Lock()
			wake := q.starved && len(q.jobs) < cap(q.jobs)/2
			if wake {
				q.starved = false
			}
			d.mu.Unlock()
			if wake {
				d.wakeClaimer()
			}
		default:
			d.mu.Lock()
			if len(q.jobs) == 0 || d.closing {
				q.workers--
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
		}
	}
}

func (d *dispatcher) wakeClaimer() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run claims due deliveries and stores results until ctx is done; then it
// gives back what is queued, lets attempts in flight finish, and stores
// their results.
func (d *dispatcher) run(ctx context.Context) {
	written := make(chan struct{})
	go func() {
		defer close(written)
		var wg sync.WaitGroup
		for range resultWriters {
			wg.Go(d.writeResults)
		}
		wg.Wait()
	}()
	t := time.NewTicker(d.s.cfg.PollInterval)
	defer t.Stop()
	for {
		n, err := d.claim(ctx)
		if err != nil && ctx.Err() == nil {
			d.s.logger.WarnContext(ctx, "claim deliveries", "err", err)
		}
		if err == nil && n > 0 {
			continue // there may be more due
		}
		select {
		case <-ctx.Done():
			d.shutdown()
			<-written
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

// shutdown stops taking work and hands queued jobs back.
func (d *dispatcher) shutdown() {
	d.mu.Lock()
	d.closing = true
	var queued []*job
	for _, q := range d.queues {
	drain:
		for {
			select {
			case j := <-q.jobs:
				queued = append(queued, j)
			default:
				break drain
			}
		}
	}
	d.mu.Unlock()
	stop := time.AfterFunc(shutdownGrace, d.abortCancel)
	d.workers.Wait()
	stop.Stop()
	d.abortCancel()
	close(d.results)
	if len(queued) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.release(ctx, queued); err != nil {
			d.s.logger.Warn("give back queued deliveries; their leases will run out", "deliveries", len(queued), "err", err)
		}
	}
}

// claim takes due deliveries of enabled endpoints whose queue has room,
// under a lease, oldest due first and at most half a queue per endpoint,
// and queues them. It returns how many it claimed.
func (d *dispatcher) claim(ctx context.Context) (int, error) {
	room := cap(d.slots) - len(d.slots)
	if room <= 0 {
		return 0, nil
	}
	room = min(room, 1000)
	full := d.full()
	share := max(1, d.s.cfg.EndpointQueue/2) // the most claimed per endpoint per pass
	if full == nil {
		full = []string{}
	}
	tx, err := d.s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("claim deliveries: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := noJIT(ctx, tx); err != nil {
		return 0, err
	}
	rows, err := tx.Query(ctx, `
		WITH cand AS (
		    SELECT d.id, d.endpoint_id, d.next_attempt_at FROM webhooks.deliveries d
		    JOIN webhooks.endpoints e ON e.id = d.endpoint_id AND e.enabled
		    WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND (d.lease_until IS NULL OR d.lease_until < now())
		      AND NOT (d.endpoint_id = ANY($1::uuid[]))
		    ORDER BY d.next_attempt_at LIMIT $2
		    FOR UPDATE OF d SKIP LOCKED),
		picked AS (
		    SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at) AS rn FROM cand) x
		    WHERE rn <= $3),
		claimed AS (
		    UPDATE webhooks.deliveries d SET lease_until = now() + make_interval(secs => $4)
		    FROM picked WHERE d.id = picked.id
		    RETURNING d.*)
		SELECT `+jobColumns+` FROM claimed d JOIN webhooks.endpoints e ON e.id = d.endpoint_id`,
		full, room, share, d.s.cfg.Lease.Seconds())
	if err != nil {
		return 0, fmt.Errorf("claim deliveries: %w", err)
	}
	jobs, err := d.s.scanJobs(rows)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("claim deliveries: %w", err)
	}
	d.offerOrRelease(ctx, jobs)
	perEndpoint := map[string]int{}
	var capped []string
	for _, j := range jobs {
		if perEndpoint[j.endpointID]++; perEndpoint[j.endpointID] == share {
			capped = append(capped, j.endpointID)
		}
	}
	d.starve(capped)
	return len(jobs), nil
}

// attempt makes one attempt of j, queued on q, and hands its result to
// the writers.
func (d *dispatcher) attempt(q *queue, j *job) {
	cfg := d.s.cfg
	// A job that waited in the queue until its lease nearly ran out is
	// left alone: another process may take it over any moment.
	if j.leaseUntil != nil && time.Until(*j.leaseUntil) < cfg.RequestTimeout+time.Second {
		return
	}
	ctx, cancel := context.WithTimeout(d.abort, cfg.RequestTimeout+time.Second)
	defer cancel()
	if j.scope != "" {
		ok := j.consentOK
		if time.Since(j.checkedAt) > consentFresh {
			var err error
			if ok, err = d.s.checker.allows(ctx, consent.Check{OrganizationID: j.orgID, FarmerID: j.farmerID, Scope: consent.Scope(j.scope)}); err != nil {
				d.s.logger.WarnContext(ctx, "consent check before delivery; it will be retried when its lease runs out", "delivery", j.id, "err", err)
				return
			}
		}
		if !ok {
			d.withhold(j)
			return
		}
	}
	q.sending <- struct{}{} // the endpoint's limit
	defer func() { <-q.sending }()
	d.slots <- struct{}{} // the process's
	defer func() { <-d.slots }()
	r := d.send(ctx, j)
	d.s.metrics.attempts.WithLabelValues(r.outcome).Inc()
	d.s.metrics.duration.Observe(r.latency.Seconds())
	d.results <- r
}

// withhold ends j unsent: the consent it needed is gone.
func (d *dispatcher) withhold(j *job) {
	d.s.metrics.attempts.WithLabelValues(outcomeWithheld).Inc()
	d.results <- result{job: j, outcome: outcomeWithheld, err: "not sent: the farmer's consent covering " + j.scope + " is no longer live", at: time.Now()}
}

// send posts j's body to its endpoint, signed, and judges the answer: a
// 2xx delivers; anything else, a redirect included, fails.
func (d *dispatcher) send(ctx context.Context, j *job) result {
	start := time.Now()
	if j.attempts == 0 && j.published != nil {
		d.s.metrics.firstDelay.Observe(start.Sub(*j.published).Seconds())
	}
	r := result{job: j, at: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		r.err = "bad endpoint URL"
	} else {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "Tani-Webhooks/1")
		req.Header.Set(HeaderID, j.eventID)
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(start.Unix(), 10))
		req.Header.Set(HeaderSignature, SignatureHeader(j.keys, j.eventID, start, j.body))
		resp, err := d.s.client.Do(req)
		if err != nil {
			r.err = describe(err, d.s.cfg.RequestTimeout)
		} else {
			r.status = resp.StatusCode
			// A small part of the answer is read, for the audit; the rest
			// is not, and the connection is then dropped rather than
			// drained.
			head, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				r.err = fmt.Sprintf("HTTP %d", resp.StatusCode)
				if snippet := clean(head, 200); snippet != "" {
					r.err += ": " + snippet
				}
			}
		}
	}
	r.latency = time.Since(start)
	if r.err == "" {
		r.outcome = outcomeDelivered
		return r
	}
	r.outcome, r.next = d.s.schedule(j, start)
	return r
}

// schedule decides what follows a failed attempt made at: the next
// attempt after an exponential, jittered wait (never later than the end
// of the retry window, so the last attempt is made at its end), or giving
// up once the window is over.
func (s *Service) schedule(j *job, at time.Time) (string, time.Time) {
	end := j.windowStart.Add(s.cfg.RetryWindow)
	if !at.Before(end) {
		return outcomeGaveUp, time.Time{}
	}
	wait := s.cfg.RetryBase << min(j.attempts, 40)
	if wait <= 0 || wait > s.cfg.RetryMax {
		wait = s.cfg.RetryMax
	}
	wait = time.Duration(float64(wait) * (0.75 + 0.5*rand.Float64()))
	next := at.Add(wait)
	if next.After(end) {
		next = end
	}
	return outcomeFailed, next
}

// describe says why an attempt got no answer, in words an organization
// may be shown (no Tani internals).
func describe(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, errBlocked):
		return "refused: the endpoint's host " + errBlocked.Error()
	case errors.Is(err, context.Canceled):
		return "cut off: Tani was stopping (the event is sent again)"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %s", timeout)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "the endpoint's host does not resolve"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:] // the cause, without the client's URL prefix
	}
	return clean([]byte("request failed: "+msg), 300)
}

// clean makes b a short, printable, valid UTF-8 string.
func clean(b []byte, limit int) string {
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > limit {
		s = s[:limit]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

// resultWriters is how many goroutines store results at once: one
// transaction's commit need not wait for the previous one's.
const resultWriters = 4

// writeResults stores results in batches (one transaction each) until the
// channel is closed: delivery state, the attempt's audit row, the
// endpoint's health, and disabling endpoints that failed for a whole
// retry window.
func (d *dispatcher) writeResults() {
	const most = 500
	batch := make([]result, 0, most)
	for {
		r, ok := <-d.results
		if !ok {
			return
		}
		batch = append(batch[:0], r)
	fill:
		for len(batch) < most {
			select {
			case r, ok := <-d.results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		d.store(batch)
	}
}

// store writes one batch, retrying while Postgres is away (the
// deliveries' leases then run out and they are attempted again, with the
// same webhook-id: at least once, never lost).
func (d *dispatcher) store(batch []result) {
	wait := 100 * time.Millisecond
	deadline := time.Now().Add(d.s.cfg.Lease)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := d.s.storeResults(ctx, batch)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			d.s.logger.Error("store delivery results; giving up, the deliveries will be attempted again", "results", len(batch), "err", err)
			return
		}
		d.s.logger.Warn("store delivery results; will retry", "results", len(batch), "err", err)
		time.Sleep(wait) // waiting for Postgres to come back, not for a test
		wait = min(2*wait, 5*time.Second)
	}
}

// storeResults writes a batch of results in one transaction.
func (s *Service) storeResults(ctx context.Context, batch []result) error {
	n := len(batch)
	ids := make([]int64, n)
	outcomes, errs := make([]string, n), make([]string, n)
	statuses, latencies := make([]int32, n), make([]int32, n)
	at, next := make([]time.Time, n), make([]*time.Time, n)
	for i, r := range batch {
		ids[i], outcomes[i], errs[i], statuses[i] = r.job.id, r.outcome, r.err, int32(r.status)
		latencies[i], at[i] = int32(r.latency.Milliseconds()), r.at
		if r.outcome == outcomeFailed {
			t := r.next
			next[i] = &t
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store results: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := noJIT(ctx, tx); err != nil {
		return err
	}
	// A result lost with the last moments before a Postgres crash only
	// means its attempt is made again, with the same webhook-id (at least
	// once, as always): results need not wait for their commit to reach
	// the disk, and under load that wait is most of a batch's time.
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return fmt.Errorf("store results: %w", err)
	}
	rows, err := tx.Query(ctx, `
		WITH r AS (
		    SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::int[], $6::timestamptz[], $7::timestamptz[])
		        AS r(id, outcome, status, err, latency, at, next)),
		u AS (
		    UPDATE webhooks.deliveries d SET
		        attempts = d.attempts + CASE WHEN r.outcome = 'withheld' THEN 0 ELSE 1 END,
		        state = CASE r.outcome WHEN 'delivered' THEN 'delivered' WHEN 'gave_up' THEN 'failed' WHEN 'withheld' THEN 'withheld' ELSE 'pending' END,
		        next_attempt_at = coalesce(r.next, d.next_attempt_at),
		        lease_until = NULL,
		        first_attempt_at = CASE WHEN r.outcome = 'withheld' THEN d.first_attempt_at ELSE coalesce(d.first_attempt_at, r.at) END,
		        last_attempt_at = CASE WHEN r.outcome = 'withheld' THEN d.last_attempt_at ELSE r.at END,
		        last_status = CASE WHEN r.outcome = 'withheld' THEN d.last_status ELSE nullif(r.status, 0) END,
		        last_latency_ms = CASE WHEN r.outcome = 'withheld' THEN d.last_latency_ms ELSE r.latency END,
		        last_error = nullif(r.err, ''),
		        delivered_at = CASE WHEN r.outcome = 'delivered' THEN r.at END
		    FROM r WHERE d.id = r.id AND d.state = 'pending'
		    RETURNING d.id, d.attempts, d.endpoint_id, d.window_start, r.outcome, r.status, r.err, r.latency, r.at),
		a AS (
		    INSERT INTO webhooks.attempts (delivery_id, n, at, status, error, latency_ms)
		    SELECT id, attempts, at, nullif(status, 0), nullif(err, ''), latency FROM u WHERE outcome <> 'withheld'
		    ON CONFLICT DO NOTHING)
		SELECT endpoint_id::text, outcome, at, window_start FROM u`,
		ids, outcomes, statuses, errs, latencies, at, next)
	if err != nil {
		return fmt.Errorf("store results: %w", err)
	}
	type health struct {
		ok, failFirst, failLast *time.Time
	}
	byEndpoint := map[string]*health{}
	var gaveUp []string
	var gaveUpWindow []time.Time
	for rows.Next() {
		var endpoint, outcome string
		var at, window time.Time
		if err := rows.Scan(&endpoint, &outcome, &at, &window); err != nil {
			rows.Close()
			return fmt.Errorf("store results: %w", err)
		}
		h := byEndpoint[endpoint]
		if h == nil {
			h = &health{}
			byEndpoint[endpoint] = h
		}
		switch outcome {
		case outcomeDelivered:
			if h.ok == nil || at.After(*h.ok) {
				h.ok = &at
			}
		case outcomeFailed, outcomeGaveUp:
			if h.failFirst == nil || at.Before(*h.failFirst) {
				h.failFirst = &at
			}
			if h.failLast == nil || at.After(*h.failLast) {
				h.failLast = &at
			}
			if outcome == outcomeGaveUp {
				gaveUp, gaveUpWindow = append(gaveUp, endpoint), append(gaveUpWindow, window)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store results: %w", err)
	}
	if len(byEndpoint) > 0 {
		var eids []string
		var oks, firsts, lasts []*time.Time
		for id, h := range byEndpoint {
			eids, oks, firsts, lasts = append(eids, id), append(oks, h.ok), append(firsts, h.failFirst), append(lasts, h.failLast)
		}
		// An endpoint is failing from its first failure after its last
		// success; a success after every failure of the batch heals it.
		// A healthy endpoint's row is touched at most once a second
		// (last_success_at is that precise): concurrent writers would
		// otherwise queue on its row lock.
		if _, err := tx.Exec(ctx, `
			UPDATE webhooks.endpoints e SET
			    last_success_at = greatest(e.last_success_at, x.ok),
			    last_failure_at = greatest(e.last_failure_at, x.fail_last),
			    failing_since = CASE
			        WHEN x.ok IS NOT NULL AND (x.fail_last IS NULL OR x.ok >= x.fail_last) THEN NULL
			        WHEN x.ok IS NOT NULL THEN x.fail_last
			        ELSE coalesce(e.failing_since, x.fail_first) END
			FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[]) AS x(id, ok, fail_first, fail_last)
			WHERE e.id = x.id AND (x.fail_last IS NOT NULL
			    OR x.ok IS NOT NULL AND (e.failing_since IS NOT NULL OR e.last_success_at IS NULL OR e.last_success_at < x.ok - interval '1 second'))`,
			eids, oks, firsts, lasts); err != nil {
			return fmt.Errorf("store endpoint health: %w", err)
		}
	}
	var disabled [][2]string
	if len(gaveUp) > 0 {
		// Disabled when no attempt succeeded during the whole window of a
		// delivery given up: the endpoint has been failing that long.
		rows, err := tx.Query(ctx, `
			UPDATE webhooks.endpoints e SET enabled = false, disabled_reason = 'failing', disabled_at = now(), updated_at = now()
			FROM (SELECT id, min(w) AS w FROM unnest($1::uuid[], $2::timestamptz[]) AS g(id, w) GROUP BY id) g
			WHERE e.id = g.id AND e.enabled AND (e.last_success_at IS NULL OR e.last_success_at < g.w)
			RETURNING e.id::text, e.organization_id::text`, gaveUp, gaveUpWindow)
		if err != nil {
			return fmt.Errorf("disable failing endpoints: %w", err)
		}
		for rows.Next() {
			var e [2]string
			if err := rows.Scan(&e[0], &e[1]); err != nil {
				rows.Close()
				return fmt.Errorf("disable failing endpoints: %w", err)
			}
			disabled = append(disabled, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("disable failing endpoints: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store results: %w", err)
	}
	for _, e := range disabled {
		s.logger.Warn("webhook endpoint disabled: every attempt failed for the whole retry window", "endpoint", e[0], "organization", e[1], "retry_window", s.cfg.RetryWindow)
	}
	return nil
}

// newID is a fresh lowercase UUID.
func newID() string { return uuid.NewString() }
