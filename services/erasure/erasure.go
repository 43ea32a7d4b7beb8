package erasure

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/ledger"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the erasure schema.
var Migrations = postgres.Migrations{Name: "erasure", FS: postgres.MustSub(migrationsFS, "migrations")}

// Config tunes the module.
type Config struct {
	SweepInterval time.Duration
}

// RegisterFlags registers the erasure.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.SweepInterval, "erasure.sweep-interval", 5*time.Second, "how often erasure requests not yet journaled or published are retried")
}

// Deps are what the module uses; all are required.
type Deps struct {
	Pool    *pgxpool.Pool
	JS      jetstream.JetStream
	Journal *ledger.Journal
	Logger  *slog.Logger
}

// Service is the erasure module.
type Service struct {
	cfg     Config
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	journal *ledger.Journal
	logger  *slog.Logger
}

// New wires the service; it does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.JS == nil || d.Journal == nil || d.Logger == nil {
		return nil, errors.New("erasure: pool, JetStream, journal and logger are required")
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	return &Service{cfg: cfg, pool: d.Pool, js: d.JS, journal: d.Journal, logger: d.Logger}, nil
}

// Start has nothing to prepare: the schema is migrated by the postgres
// module and the stream by the nats module.
func (s *Service) Start(context.Context) error { return nil }

// Run journals and publishes requests whose first attempt failed, until
// ctx is done.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.logger.ErrorContext(ctx, "erasure sweep", "err", err)
			}
		}
	}
}

// Stop has nothing to release.
func (s *Service) Stop(context.Context) error { return nil }

// Sweep advances every request not yet journaled or published.
func (s *Service) Sweep(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM erasure.requests WHERE leaf_index IS NULL OR published_at IS NULL ORDER BY requested_at LIMIT 1000`)
	if err != nil {
		return fmt.Errorf("find unfinished erasure requests: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("find unfinished erasure requests: %w", err)
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, s.advance(ctx, id))
	}
	return errors.Join(errs...)
}

// request is one stored request.
type request struct {
	ID          string
	FarmerID    string
	Reason      string
	RequestedBy string
	RequestedAt time.Time
	LeafIndex   *int64
	PublishedAt *time.Time
}

func (s *Service) load(ctx context.Context, q pgx.Row) (request, error) {
	var r request
	err := q.Scan(&r.ID, &r.FarmerID, &r.Reason, &r.RequestedBy, &r.RequestedAt, &r.LeafIndex, &r.PublishedAt)
	return r, err
}

const requestColumns = `id::text, farmer_id::text, reason, requested_by, requested_at, leaf_index, published_at`

// requestedPayload is the journaled request: the farmer's id and why,
// never anything about the farmer.
type requestedPayload struct {
	ErasureID   string `json:"erasure_id"`
	FarmerID    string `json:"farmer_id"`
	Reason      string `json:"reason"`
	RequestedBy string `json:"requested_by"`
	RequestedAt string `json:"requested_at"`
}

// revision is the journal revision of a stored request; it is rebuilt from
// the row byte for byte the same, so a retried append is a no-op.
func (r request) revision() (ledger.Revision, error) {
	at := r.RequestedAt.UTC().Truncate(time.Microsecond)
	payload, err := json.Marshal(requestedPayload{ErasureID: r.ID, FarmerID: r.FarmerID, Reason: r.Reason, RequestedBy: r.RequestedBy,
		RequestedAt: at.Format("2006-01-02T15:04:05.000000Z")})
	if err != nil {
		return ledger.Revision{}, err
	}
	return ledger.Revision{RecordID: r.ID, Kind: forget.KindRequested, Revision: 1, Payload: payload, OccurredAt: at,
		SignatureRef: SignatureRef(r.RequestedBy)}, nil
}

// SignatureRef names the operator who asked, for journal entries.
func SignatureRef(requestedBy string) string {
	return "operator-token " + strings.Join(strings.Fields(requestedBy), "_")
}

// advance journals a request, then publishes it, each step once.
func (s *Service) advance(ctx context.Context, id string) error {
	r, err := s.load(ctx, s.pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM erasure.requests WHERE id = $1`, id))
	if err != nil {
		return fmt.Errorf("load erasure request %s: %w", id, err)
	}
	if r.LeafIndex == nil {
		rev, err := r.revision()
		if err != nil {
			return err
		}
		app, err := s.journal.Append(ctx, rev)
		if err != nil {
			return fmt.Errorf("journal erasure request %s: %w", id, err)
		}
		if _, err := s.pool.Exec(ctx, `UPDATE erasure.requests SET leaf_index = $2 WHERE id = $1`, id, app[0].LeafIndex); err != nil {
			return fmt.Errorf("record journaled erasure request %s: %w", id, err)
		}
	}
	if r.PublishedAt == nil {
		// Owners act only on a journaled request: the journal says it was
		// asked for before anything is erased.
		if err := forget.Publish(ctx, s.js, forget.Request{ErasureID: r.ID, FarmerID: r.FarmerID, RequestedAt: r.RequestedAt}); err != nil {
			return err
		}
		if _, err := s.pool.Exec(ctx, `UPDATE erasure.requests SET published_at = now() WHERE id = $1`, id); err != nil {
			return fmt.Errorf("record published erasure request %s: %w", id, err)
		}
	}
	return nil
}
