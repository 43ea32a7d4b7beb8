package ingest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is ingest's schema.
var Migrations = postgres.Migrations{Name: "ingest", FS: postgres.MustSub(migrationsFS, "migrations")}

// ConsumerName is ingest's durable consumer on the FARM stream.
const ConsumerName = "ingest"

// Headers ingest adds to farm.ingested messages, so consumers need not look
// the device up again.
const (
	HeaderAgentID  = "Tani-Agent-Id"
	HeaderDeviceID = "Tani-Device-Id"
)

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
	cfg       Config
	pool      *pgxpool.Pool
	js        jetstream.JetStream
	pii       *pii.Keys
	logger    *slog.Logger
	consumer  *natsbus.Consumer
	validator *validate.Validator
}

// New wires the service; it does no I/O.
func New(cfg Config, pool *pgxpool.Pool, js jetstream.JetStream, keys *pii.Keys, logger *slog.Logger, metrics *natsbus.Metrics) *Service {
	return &Service{
		cfg:       cfg,
		pool:      pool,
		js:        js,
		pii:       keys,
		logger:    logger,
		validator: validate.New(),
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

// Handle verifies one submitted record and stores it exactly once, with its
// normalized effect, then announces it. The stream is not trusted: the
// envelope, the payload, the signature and the device's binding to its
// agent are all checked again here. A refused record is remembered with its
// reason (for the agent's status view) before it is dead-lettered.
func (s *Service) Handle(ctx context.Context, msg jetstream.Msg) error {
	err := s.ingest(ctx, msg)
	if code := apperr.CodeOf(err); code == apperr.Invalid || code == apperr.Conflict {
		if rerr := s.refuse(ctx, msg.Headers().Get(jetstream.MsgIDHeader), err); rerr != nil {
			return rerr // transient: the refusal must be visible before the message leaves
		}
	}
	return err
}

// refuse records why a record was refused. Undecodable messages without a
// usable id are only dead-lettered.
func (s *Service) refuse(ctx context.Context, recordID string, cause error) error {
	if _, err := uuid.Parse(recordID); err != nil {
		return nil
	}
	reason := cause.Error()
	if e, ok := apperr.As(cause); ok {
		reason = e.Message
		for _, f := range e.Fields {
			reason += "; " + f.Field + ": " + f.Message
		}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO ingest.refusals (record_id, reason) VALUES ($1, $2) ON CONFLICT DO NOTHING`, recordID, reason)
	if err != nil {
		return fmt.Errorf("record refusal of %s: %w", recordID, err)
	}
	return nil
}

func (s *Service) ingest(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("message metadata: %w", err)
	}
	env, payload, problems := record.Check(s.validator, msg.Data(), md.Timestamp)
	if len(problems) > 0 {
		return apperr.Fields(fmt.Sprintf("invalid record %s on %s", env.ID, msg.Subject()), problems...)
	}
	if msg.Subject() != natsbus.SubjectSubmittedPrefix+env.Type {
		return apperr.Errorf(apperr.Invalid, "record %s of type %q arrived on %s", env.ID, env.Type, msg.Subject())
	}
	agentID, err := s.verifyDevice(ctx, env, msg.Data(), md.Timestamp)
	if err != nil {
		return err
	}
	canonical, err := record.Canonical(msg.Data())
	if err != nil {
		return apperr.Wrap(apperr.Invalid, err, "record %s is not canonicalizable", env.ID)
	}
	hash := record.Hash(canonical)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		fresh, err := s.store(ctx, tx, env, agentID, canonical, hash[:], md.Sequence.Stream)
		if err != nil || !fresh {
			return err
		}
		return s.apply(ctx, tx, env, payload, agentID)
	})
	if err != nil {
		if apperr.CodeOf(err) == apperr.Internal {
			return fmt.Errorf("ingest record %s: %w", env.ID, err)
		}
		return err
	}
	// Announce after the commit. A crash between commit and publish
	// redelivers the message; store is then a no-op and we publish again.
	out := nats.NewMsg(natsbus.SubjectIngestedPrefix + env.Type)
	out.Data = canonical
	out.Header.Set(jetstream.MsgIDHeader, "ingested:"+env.ID)
	out.Header.Set(HeaderAgentID, agentID)
	out.Header.Set(HeaderDeviceID, env.DeviceID)
	if _, err := s.js.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("publish ingested %s: %w", env.ID, err)
	}
	return nil
}

// verifyDevice checks the signature with the device's enrolled key and
// returns the agent the device is bound to. A device revoked before the
// record reached the platform cannot vouch for it.
func (s *Service) verifyDevice(ctx context.Context, env record.Envelope, raw []byte, received time.Time) (string, error) {
	var agentID string
	var key []byte
	var revokedAt *time.Time
	err := s.pool.QueryRow(ctx, `SELECT agent_id::text, public_key, revoked_at FROM mobile.device_keys WHERE device_id = $1`, env.DeviceID).
		Scan(&agentID, &key, &revokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", apperr.Errorf(apperr.Invalid, "record %s: device %s is not enrolled", env.ID, env.DeviceID)
	}
	if err != nil {
		return "", fmt.Errorf("load device %s: %w", env.DeviceID, err)
	}
	if revokedAt != nil && revokedAt.Before(received) {
		return "", apperr.Errorf(apperr.Invalid, "record %s: device %s was revoked at %s", env.ID, env.DeviceID, revokedAt.Format(time.RFC3339))
	}
	if err := record.Verify(ed25519.PublicKey(key), raw, env.Signature); err != nil {
		return "", apperr.Wrap(apperr.Invalid, err, "record %s: %v", env.ID, err)
	}
	return agentID, nil
}

// store inserts the raw record unless it is already there and reports
// whether it is new. The same id with different content is a conflict: the
// original is kept.
func (s *Service) store(ctx context.Context, tx pgx.Tx, env record.Envelope, agentID string, canonical, hash []byte, seq uint64) (bool, error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO ingest.submissions (id, type, captured_at, payload, canonical, content_hash, stream_seq, device_id, agent_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO NOTHING`,
		env.ID, env.Type, env.Captured(), env.Payload, canonical, hash, int64(seq), env.DeviceID, agentID)
	if err != nil {
		return false, fmt.Errorf("store record %s: %w", env.ID, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var existing []byte
	if err := tx.QueryRow(ctx, `SELECT content_hash FROM ingest.submissions WHERE id = $1`, env.ID).Scan(&existing); err != nil {
		return false, fmt.Errorf("load record %s: %w", env.ID, err)
	}
	if !bytes.Equal(existing, hash) {
		return false, apperr.Errorf(apperr.Conflict, "record %s was already ingested with different content; the original is kept", env.ID)
	}
	return false, nil // a redelivery or a retried upload: already stored
}
