package attest

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/tani-platform/tani/internal/parallel"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
	"github.com/tani-platform/tani/ledger"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is attest's schema.
var Migrations = postgres.Migrations{Name: "attest", FS: postgres.MustSub(migrationsFS, "migrations")}

// ConsumerName is attest's durable consumer on the FARM stream.
const ConsumerName = "attest"

// Config tunes the module.
type Config struct {
	MaxDeliver    int
	SweepInterval time.Duration
}

// RegisterFlags registers the flags under prefix ("attest.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.IntVar(&c.MaxDeliver, prefix+"max-deliver", 10, "deliveries of a record whose rules keep erroring before it is dead-lettered (it stays pending)")
	fs.DurationVar(&c.SweepInterval, prefix+"sweep-interval", 5*time.Second, "how often decisions not yet journaled or announced are retried")
}

// Deps are what the module uses. Pool, Journal, PII and Logger are
// required; JS and Consumer may be nil only where a test drives HandleBatch
// itself (Start then refuses).
type Deps struct {
	Pool     *pgxpool.Pool
	JS       jetstream.JetStream
	Journal  *ledger.Journal
	PII      *pii.Keys
	Logger   *slog.Logger
	Consumer *natsbus.Metrics
	Registry prometheus.Registerer
	// Rules overrides Rules(); tests use it.
	Rules []Rule
	// Memo holds the records checked in this process; a message with
	// exactly those bytes is not read again, nor its signature verified
	// again under the same key. Optional.
	Memo *record.Memo
}

// Service is the attest module.
type Service struct {
	cfg       Config
	pool      *pgxpool.Pool
	js        jetstream.JetStream
	journal   *ledger.Journal
	pii       *pii.Keys
	logger    *slog.Logger
	rules     []Rule
	metrics   *metrics
	consumer  *natsbus.Consumer
	erasures  *natsbus.Consumer
	validator *validate.Validator
	keys      *record.Keys // device keys, precomputed for verification
	memo      *record.Memo
}

// New wires the service; it validates and does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.Journal == nil || d.PII == nil || d.Logger == nil {
		return nil, errors.New("attest: Pool, Journal, PII and Logger are required")
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	rules := d.Rules
	if rules == nil {
		rules = Rules()
	}
	s := &Service{
		cfg: cfg, pool: d.Pool, js: d.JS, journal: d.Journal, pii: d.PII, logger: d.Logger,
		rules: rules, metrics: newMetrics(d.Registry, d.Pool), validator: validate.New(), keys: record.NewKeys(), memo: d.Memo,
	}
	if d.JS != nil {
		s.consumer = natsbus.NewConsumer(natsbus.ConsumerConfig{
			Stream:         natsbus.StreamFarm,
			Durable:        ConsumerName,
			FilterSubjects: []string{natsbus.SubjectIngestedPrefix + ">"},
			MaxDeliver:     cfg.MaxDeliver,
		}, d.JS, d.Logger, d.Consumer)
		s.erasures = forget.Consumer(ErasureConsumerName, d.JS, d.Logger, d.Consumer)
	}
	return s, nil
}

// Start creates the consumers (the schema is migrated by the postgres
// module and `tani migrate`).
func (s *Service) Start(ctx context.Context) error {
	if s.consumer == nil {
		return errors.New("attest: started without JetStream")
	}
	if err := s.consumer.Start(ctx); err != nil {
		return err
	}
	return s.erasures.Start(ctx)
}

// Run consumes farm.ingested in batches and, beside it, retries
// journaling and announcing decisions whose first attempt failed, and
// erases farmers who asked to be forgotten, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	go s.sweepLoop(ctx)
	return forget.RunWith(ctx, s.erasures, eraser.Handler(s.pool, s.erase, s.logger), func(ctx context.Context) error {
		return s.consumer.RunBatch(ctx, s.HandleBatch)
	})
}

// Stop has nothing to release: Run drains the consumer when ctx ends.
func (s *Service) Stop(context.Context) error { return nil }

// Handle is HandleBatch for one message.
func (s *Service) Handle(ctx context.Context, msg jetstream.Msg) error {
	return s.HandleBatch(ctx, []jetstream.Msg{msg})[0]
}

// HandleBatch decides the records of many farm.ingested messages with one
// Process call (one transaction, one journal append) and returns one
// outcome per message, in order: nil once the record's decision is
// committed, a verified record journaled and the outcome announced; an
// Invalid error for a message that can never be decided (dead-lettered);
// any other error to have it redelivered. A record whose rules errored is
// stored pending with the error and gets a transient error, so it is
// retried and never let through.
//
// If the batch fails as a whole, each record is tried again alone, so
// that one record that breaks the transaction cannot hold back the others.
func (s *Service) HandleBatch(ctx context.Context, msgs []jetstream.Msg) []error {
	errs := s.handleBatch(ctx, msgs)
	// A refused record about an erased farmer must not become a dead
	// letter holding its content (an erasure racing its decision).
	s.forgetRefused(ctx, msgs, errs)
	return errs
}

func (s *Service) handleBatch(ctx context.Context, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	decoded := make([]*Input, len(msgs))
	parallel.For(len(msgs), func(i int) {
		md, err := msgs[i].Metadata()
		if err != nil {
			errs[i] = fmt.Errorf("message metadata: %w", err)
			return
		}
		in, err := s.Decode(msgs[i].Data(), msgs[i].Headers(), md.Timestamp)
		if err != nil {
			errs[i] = err
			return
		}
		decoded[i] = &in
	})
	var ins []Input
	var at []int // the message of each input
	for i, in := range decoded {
		if in != nil {
			ins, at = append(ins, *in), append(at, i)
		}
	}
	if len(ins) == 0 {
		return errs
	}
	ds, err := s.Process(ctx, ins)
	if err != nil {
		if len(ins) > 1 {
			s.logger.WarnContext(ctx, "batch failed; deciding its records one by one", "records", len(ins), "err", err)
			for k, in := range ins {
				errs[at[k]] = s.handleOne(ctx, in, msgs[at[k]])
			}
			return errs
		}
		errs[at[0]] = err
		return errs
	}
	byID := make(map[string]Decision, len(ds))
	for _, d := range ds {
		byID[d.RecordID] = d
	}
	var final []string
	for k, in := range ins {
		d, ok := byID[in.Env.ID]
		switch {
		case !ok:
			errs[at[k]] = fmt.Errorf("record %s: no decision", in.Env.ID)
		case d.Status == StatusPending:
			errs[at[k]] = fmt.Errorf("record %s stays pending: %s", d.RecordID, d.Reason)
		case d.Status == StatusErased:
			errs[at[k]] = s.forgetMessage(ctx, msgs[at[k]])
		default:
			final = append(final, d.RecordID)
		}
	}
	if err := s.announce(ctx, final); err != nil {
		for k := range ins {
			if errs[at[k]] == nil {
				errs[at[k]] = err
			}
		}
	}
	return errs
}

// handleOne decides one record on its own: HandleBatch's fallback.
func (s *Service) handleOne(ctx context.Context, in Input, msg jetstream.Msg) error {
	ds, err := s.Process(ctx, []Input{in})
	if err != nil {
		return err
	}
	if len(ds) != 1 {
		return fmt.Errorf("record %s: no decision", in.Env.ID)
	}
	switch ds[0].Status {
	case StatusPending:
		return fmt.Errorf("record %s stays pending: %s", in.Env.ID, ds[0].Reason)
	case StatusErased:
		return s.forgetMessage(ctx, msg)
	}
	return s.announce(ctx, []string{in.Env.ID})
}

// Decode checks an ingested record again (the stream is not trusted) and
// makes it an Input. Undecodable records are Invalid: dead-lettered.
func (s *Service) Decode(data []byte, h nats.Header, received time.Time) (Input, error) {
	rec, key, memoized := s.memo.Take(record.Hash(data), data)
	if !memoized {
		var problems []apperr.FieldError
		if rec, problems = record.Check(s.validator, data, received); len(problems) > 0 {
			return Input{}, apperr.Fields(fmt.Sprintf("invalid ingested record %s", rec.Env.ID), problems...)
		}
	}
	env := rec.Env
	agent, device := h.Get(natsbus.HeaderAgentID), h.Get(natsbus.HeaderDeviceID)
	if agent == "" || device != env.DeviceID {
		return Input{}, apperr.Errorf(apperr.Invalid, "record %s: headers name agent %q and device %q, record names device %q", env.ID, agent, device, env.DeviceID)
	}
	return Input{Env: env, Payload: rec.Payload, Canonical: rec.Canonical, AgentID: agent, DeviceID: device, ReceivedAt: received, signingInput: rec.SigningInput(), checkedBy: key}, nil
}

// attested is the body of farm.attested.<type>.
type attested struct {
	RecordID  string          `json:"record_id"`
	Type      string          `json:"type"`
	Status    string          `json:"status"`
	Reason    string          `json:"reason,omitempty"`
	Results   json.RawMessage `json:"results"`
	LeafIndex *int64          `json:"leaf_index,omitempty"`
	Decision  int             `json:"decision"`
}

// announce publishes farm.attested.<type> for the given records' latest
// decisions that were not announced yet, then remembers it. The message
// id attested:<id>:<decision> makes a repeat a no-op in JetStream.
func (s *Service) announce(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT record_id::text, type, agent_id::text, status, coalesce(reason, ''), results, leaf_index, decision
		FROM attest.records
		WHERE record_id = ANY($1::uuid[]) AND published < decision AND status <> 'pending'
		  AND (status <> 'verified' OR leaf_index IS NOT NULL)`, ids)
	if err != nil {
		return fmt.Errorf("load decisions to announce: %w", err)
	}
	var msgs []*nats.Msg
	var done []string
	var decisions []int32
	err = forEach(rows, func(r pgx.Rows) error {
		var a attested
		var agent string
		if err := r.Scan(&a.RecordID, &a.Type, &agent, &a.Status, &a.Reason, &a.Results, &a.LeafIndex, &a.Decision); err != nil {
			return err
		}
		body, err := json.Marshal(a)
		if err != nil {
			return err
		}
		m := nats.NewMsg(natsbus.SubjectAttestedPrefix + a.Type)
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("attested:%s:%d", a.RecordID, a.Decision))
		m.Header.Set(natsbus.HeaderAgentID, agent)
		msgs = append(msgs, m)
		done = append(done, a.RecordID)
		decisions = append(decisions, int32(a.Decision))
		return nil
	})
	if err != nil {
		return fmt.Errorf("load decisions to announce: %w", err)
	}
	if len(done) == 0 {
		return nil
	}
	// Publish all, then wait for every ack: one round trip per batch
	// rather than per record. Only a fully acknowledged batch is
	// remembered; a partial one is published again, and JetStream drops
	// the repeats by message id.
	seqs, err := natsbus.PublishAll(ctx, s.js, msgs)
	if err != nil {
		return err
	}
	published := make(map[string]uint64, len(msgs))
	for i, id := range done {
		published[id] = seqs[i]
	}
	rows, err = s.pool.Query(ctx, `
		UPDATE attest.records r SET published = greatest(r.published, u.decision)
		FROM unnest($1::uuid[], $2::int[]) AS u(id, decision) WHERE r.record_id = u.id
		RETURNING r.record_id::text`, done, decisions)
	if err != nil {
		return fmt.Errorf("remember announcements: %w", err)
	}
	kept, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("remember announcements: %w", err)
	}
	// A record gone by now was erased after it was read above.
	return s.forgetAnnounced(ctx, published, kept)
}

// sweepLoop retries what a crash or an outage left half done: verified
// records not journaled, review decisions not journaled, decisions not
// announced. Every step is idempotent.
func (s *Service) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.logger.ErrorContext(ctx, "sweep", "err", err)
			}
		}
	}
}

// Sweep journals and announces whatever is due, in bounded batches.
func (s *Service) Sweep(ctx context.Context) error {
	var ids []string
	rows, err := s.pool.Query(ctx, `
		SELECT record_id::text FROM attest.records WHERE status = 'verified' AND leaf_index IS NULL
		UNION SELECT record_id::text FROM attest.records WHERE published < decision AND status <> 'pending'
		LIMIT 5000`)
	if err != nil {
		return fmt.Errorf("find unfinished decisions: %w", err)
	}
	if err := forEach(rows, func(r pgx.Rows) error {
		var id string
		if err := r.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	}); err != nil {
		return fmt.Errorf("find unfinished decisions: %w", err)
	}
	if err := s.journalReviewEvents(ctx); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	decided, err := s.loadDecided(ctx, ids)
	if err != nil {
		return err
	}
	if err := s.journalRecords(ctx, decided, nil); err != nil {
		return err
	}
	return s.announce(ctx, ids)
}
