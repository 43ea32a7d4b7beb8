package ingest

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is ingest's schema.
var Migrations = postgres.Migrations{Name: "ingest", FS: postgres.MustSub(migrationsFS, "migrations")}

// validate checks envelopes again: the stream is not trusted, since dead
// letters can be replayed into it.
var validator = validate.New()

// ConsumerName is ingest's durable consumer on the FARM stream.
const ConsumerName = "ingest"

// Config tunes the consumer.
type Config struct {
	MaxDeliver int
}

// RegisterFlags registers the ingest.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.MaxDeliver, "ingest.max-deliver", 10, "deliveries of a failing record before it is dead-lettered")
}

// Service is the ingest module.
type Service struct {
	cfg      Config
	pool     *pgxpool.Pool
	js       jetstream.JetStream
	logger   *slog.Logger
	consumer *natsbus.Consumer
}

// New wires the service; it does no I/O.
func New(cfg Config, pool *pgxpool.Pool, js jetstream.JetStream, logger *slog.Logger, metrics *natsbus.Metrics) *Service {
	return &Service{
		cfg:    cfg,
		pool:   pool,
		js:     js,
		logger: logger,
		consumer: natsbus.NewConsumer(natsbus.ConsumerConfig{
			Stream:         natsbus.StreamFarm,
			Durable:        ConsumerName,
			FilterSubjects: []string{natsbus.SubjectSubmittedPrefix + ">"},
			MaxDeliver:     cfg.MaxDeliver,
		}, js, logger, metrics),
	}
}

// Start migrates ingest's schema and creates its consumer.
func (s *Service) Start(ctx context.Context) error {
	if err := postgres.Migrate(ctx, s.pool, s.logger, Migrations); err != nil {
		return err
	}
	return s.consumer.Start(ctx)
}

// Run consumes until ctx is done.
func (s *Service) Run(ctx context.Context) error { return s.consumer.Run(ctx, s.Handle) }

// Stop has nothing to release: Run drains the consumer when ctx ends.
func (s *Service) Stop(context.Context) error { return nil }

// Handle stores one submitted record exactly once and announces it.
func (s *Service) Handle(ctx context.Context, msg jetstream.Msg) error {
	var env record.Envelope
	if err := validate.Unmarshal(bytes.NewReader(msg.Data()), &env); err != nil {
		return apperr.Wrap(apperr.Invalid, err, "undecodable record on %s", msg.Subject())
	}
	if err := validator.Validate(&env); err != nil {
		return apperr.Wrap(apperr.Invalid, err, "invalid record on %s", msg.Subject())
	}
	if !record.KnownType(env.Type) || msg.Subject() != natsbus.SubjectSubmittedPrefix+env.Type {
		return apperr.Errorf(apperr.Invalid, "record %s of type %q arrived on %s", env.ID, env.Type, msg.Subject())
	}
	canonical, err := record.Canonical(msg.Data())
	if err != nil {
		return apperr.Wrap(apperr.Invalid, err, "record %s is not canonicalizable", env.ID)
	}
	hash := record.Hash(canonical)
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("message metadata: %w", err)
	}
	if err := s.store(ctx, env, canonical, hash[:], md.Sequence.Stream); err != nil {
		return err
	}
	// Announce after the commit. A crash between commit and publish
	// redelivers the message; store is then a no-op and we publish again.
	out := nats.NewMsg(natsbus.SubjectIngestedPrefix + env.Type)
	out.Data = canonical
	out.Header.Set(jetstream.MsgIDHeader, "ingested:"+env.ID)
	if _, err := s.js.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("publish ingested %s: %w", env.ID, err)
	}
	return nil
}

// store inserts the record unless it is already there. The same id with
// different content is a conflict: the original is kept.
func (s *Service) store(ctx context.Context, env record.Envelope, canonical, hash []byte, seq uint64) error {
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO ingest.submissions (id, type, captured_at, payload, canonical, content_hash, stream_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO NOTHING`,
		env.ID, env.Type, env.Captured(), env.Payload, canonical, hash, int64(seq))
	if err != nil {
		return fmt.Errorf("store record %s: %w", env.ID, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var existing []byte
	err = s.pool.QueryRow(ctx, `SELECT content_hash FROM ingest.submissions WHERE id = $1`, env.ID).Scan(&existing)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("record %s vanished after a conflicting insert", env.ID)
	}
	if err != nil {
		return fmt.Errorf("load record %s: %w", env.ID, err)
	}
	if !bytes.Equal(existing, hash) {
		return apperr.Errorf(apperr.Conflict, "record %s was already ingested with different content; the original is kept", env.ID)
	}
	return nil // a redelivery or a retried upload: already stored
}
