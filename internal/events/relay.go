package events

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/natsbus"
)

// Config tunes the relay and how long events are kept.
type Config struct {
	// Interval is how often the relay looks for unpublished events when
	// the last pass found none; a full batch is followed at once.
	Interval time.Duration
	// Batch is the most events published per pass.
	Batch int
	// Retention is how long published events are kept in the outbox:
	// replay and polling reach back this far.
	Retention time.Duration
	// PublishTimeout bounds a batch's wait for JetStream acknowledgements.
	PublishTimeout time.Duration
}

// RegisterFlags registers the flags under prefix ("events.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&c.Interval, prefix+"relay-interval", 100*time.Millisecond, "how often the outbox relay looks for new events when idle")
	fs.IntVar(&c.Batch, prefix+"relay-batch", 1000, "most events the relay publishes per pass")
	fs.DurationVar(&c.Retention, prefix+"retention", 30*24*time.Hour, "how long published events are kept for replay and polling")
	fs.DurationVar(&c.PublishTimeout, prefix+"publish-timeout", 10*time.Second, "how long the relay waits for JetStream to acknowledge a batch")
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = 100 * time.Millisecond
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.Retention <= 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
}

// Message is an event as published on EVENTS (subject events.<type>,
// message id = ID).
type Message struct {
	ID             string          `json:"id"`
	Type           Type            `json:"type"`
	OrganizationID string          `json:"organization_id,omitempty"`
	FarmerID       string          `json:"farmer_id,omitempty"`
	Scope          consent.Scope   `json:"scope,omitempty"`
	OccurredAt     time.Time       `json:"occurred_at"`
	RecordedAt     time.Time       `json:"recorded_at"`
	Data           json.RawMessage `json:"data"`
	// Pos is the event's place in the order of publication (the polling
	// cursor).
	Pos int64 `json:"pos"`
}

// Decode reads a message published by the relay.
func Decode(data []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("decode event: %w", err)
	}
	if m.ID == "" || m.Type == "" || len(m.Data) == 0 {
		return Message{}, errors.New("decode event: id, type or data missing")
	}
	return m, nil
}

// Subject is the EVENTS subject of events of type t.
func Subject(t Type) string { return natsbus.SubjectEventsPrefix + string(t) }

// relayLock is the advisory lock key one relay holds while it publishes,
// so that events are numbered (pos) in the order they are published.
const relayLock int64 = 0x7461_6e69_6576_7473 // "tanievts"

// Deps are what the relay uses; Registry is optional.
type Deps struct {
	Pool     *pgxpool.Pool
	JS       jetstream.JetStream
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Relay publishes the outbox to EVENTS. Several processes may run one:
// one publishes at a time, the others find the lock taken and wait.
type Relay struct {
	cfg       Config
	pool      *pgxpool.Pool
	js        jetstream.JetStream
	logger    *slog.Logger
	published prometheus.Counter
}

// NewRelay wires a relay; it validates and does no I/O.
func NewRelay(cfg Config, d Deps) (*Relay, error) {
	if d.Pool == nil || d.JS == nil || d.Logger == nil {
		return nil, errors.New("events: relay needs Pool, JS and Logger")
	}
	cfg.defaults()
	r := &Relay{cfg: cfg, pool: d.Pool, js: d.JS, logger: d.Logger,
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "tani_events_published_total", Help: "Events the outbox relay published to EVENTS."})}
	if d.Registry != nil {
		if err := d.Registry.Register(r.published); err != nil {
			return nil, fmt.Errorf("events: register metrics: %w", err)
		}
		if err := d.Registry.Register(backlogCollector{pool: d.Pool}); err != nil {
			return nil, fmt.Errorf("events: register metrics: %w", err)
		}
	}
	return r, nil
}

// Start has nothing to prepare: the stream is the nats module's, the
// schema the postgres module's.
func (r *Relay) Start(context.Context) error { return nil }

// Stop has nothing to release.
func (r *Relay) Stop(context.Context) error { return nil }

// Run publishes until ctx is done, and prunes events past retention.
func (r *Relay) Run(ctx context.Context) error {
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			if n, err := r.Prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
				r.logger.ErrorContext(ctx, "prune outbox", "err", err)
			} else if n > 0 {
				r.logger.InfoContext(ctx, "pruned outbox", "events", n)
			}
			continue
		case <-wait.C:
		}
		n, err := r.Publish(ctx)
		if err != nil && ctx.Err() == nil {
			r.logger.WarnContext(ctx, "relay events; will retry", "err", err)
		}
		next := r.cfg.Interval
		if err == nil && n == r.cfg.Batch {
			next = 0 // more is waiting
		}
		wait.Reset(next)
	}
}

// Publish publishes one batch of unpublished events, oldest first, and
// marks them published, all while holding the relay lock. It returns how
// many it published: 0 when there were none or another process holds the
// lock. A batch not fully acknowledged is not marked and is published
// again next time; JetStream drops the repeats by message id, and the
// consumers are idempotent beyond its window.
func (r *Relay) Publish(ctx context.Context) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, relayLock).Scan(&locked); err != nil {
			return fmt.Errorf("relay lock: %w", err)
		}
		if !locked {
			return nil
		}
		rows, err := tx.Query(ctx, `
			SELECT seq, id::text, type, coalesce(organization_id::text, ''), coalesce(farmer_id::text, ''), coalesce(scope, ''),
			       occurred_at, recorded_at, data
			FROM events.outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1`, r.cfg.Batch)
		if err != nil {
			return fmt.Errorf("load unpublished events: %w", err)
		}
		var seqs []int64
		var batch []Message
		for rows.Next() {
			var m Message
			var seq int64
			if err := rows.Scan(&seq, &m.ID, &m.Type, &m.OrganizationID, &m.FarmerID, &m.Scope, &m.OccurredAt, &m.RecordedAt, &m.Data); err != nil {
				rows.Close()
				return fmt.Errorf("scan unpublished event: %w", err)
			}
			seqs, batch = append(seqs, seq), append(batch, m)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("load unpublished events: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		// Number the batch first: the position travels in the message.
		rows, err = tx.Query(ctx, `SELECT nextval('events.outbox_pos') FROM generate_series(1, $1)`, len(batch))
		if err != nil {
			return fmt.Errorf("number events: %w", err)
		}
		pos, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("number events: %w", err)
		}
		msgs := make([]*nats.Msg, len(batch))
		for i := range batch {
			batch[i].Pos = pos[i]
			body, err := json.Marshal(batch[i])
			if err != nil {
				return fmt.Errorf("encode event %s: %w", batch[i].ID, err)
			}
			m := nats.NewMsg(Subject(batch[i].Type))
			m.Data = body
			m.Header.Set(jetstream.MsgIDHeader, batch[i].ID)
			msgs[i] = m
		}
		pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
		streamSeqs, err := natsbus.PublishAll(pctx, r.js, msgs)
		cancel()
		if err != nil {
			return fmt.Errorf("publish %d events: %w", len(msgs), err)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE events.outbox o SET published_at = now(), pos = u.pos, stream_seq = u.sseq
			FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(seq, pos, sseq) WHERE o.seq = u.seq`,
			seqs, pos, toInt64(streamSeqs)); err != nil {
			return fmt.Errorf("mark %d events published: %w", len(seqs), err)
		}
		n = len(batch)
		return nil
	})
	if err != nil {
		return 0, err
	}
	r.published.Add(float64(n))
	return n, nil
}

func toInt64(u []uint64) []int64 {
	out := make([]int64, len(u))
	for i, v := range u {
		out[i] = int64(v)
	}
	return out
}

// Prune deletes published events recorded before now minus the retention,
// in bounded batches, and returns how many it deleted.
func (r *Relay) Prune(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for {
		tag, err := r.pool.Exec(ctx, `
			DELETE FROM events.outbox WHERE seq IN (
			    SELECT seq FROM events.outbox WHERE published_at IS NOT NULL AND recorded_at < $1 LIMIT 10000)`,
			now.Add(-r.cfg.Retention))
		if err != nil {
			return total, fmt.Errorf("prune outbox: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 10000 {
			return total, nil
		}
	}
}

// Retention is how long events are kept (Config.Retention after defaults).
func (r *Relay) Retention() time.Duration { return r.cfg.Retention }

// backlogCollector exports the outbox's unpublished events and the age of
// the oldest, asked of Postgres at scrape time.
type backlogCollector struct{ pool *pgxpool.Pool }

var (
	backlogDesc = prometheus.NewDesc("tani_events_outbox_unpublished", "Events recorded in the outbox and not yet published to EVENTS.", nil, nil)
	ageDesc     = prometheus.NewDesc("tani_events_outbox_oldest_unpublished_seconds", "Age of the oldest unpublished event (0 when none).", nil, nil)
)

func (c backlogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- backlogDesc; ch <- ageDesc }

func (c backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int64
	var age float64
	if err := c.pool.QueryRow(ctx, `
		SELECT count(*), coalesce(extract(epoch FROM now() - min(recorded_at)), 0)::float8
		FROM events.outbox WHERE published_at IS NULL`).Scan(&n, &age); err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, age)
}
