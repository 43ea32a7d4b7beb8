package marketplace

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/httpserver"
)

// Config tunes the module. It has no settings yet: its API arrives with
// its issue. It is here so that the module has the face of every service.
type Config struct{}

// Deps are what the module uses. Pool, Gate and Logger are required; ReadPool
// is optional.
type Deps struct {
	// Pool is the primary: writes, and reads that must see them (a consent
	// just revoked, a loan just granted).
	Pool *pgxpool.Pool
	// ReadPool serves reads that may trail the primary by the replica's
	// lag (tani_postgres_replica_lag_seconds): listings and reports. Nil
	// means Pool, as when no -database.read-url is set.
	ReadPool *pgxpool.Pool
	// Gate is the one way to read a farmer's data for an organization.
	Gate   *consent.Gate
	Logger *slog.Logger
}

// Service is the marketplace module.
type Service struct {
	cfg      Config
	pool     *pgxpool.Pool
	readPool *pgxpool.Pool
	logger   *slog.Logger
}

// New wires the service; it validates and does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.Gate == nil || d.Logger == nil {
		return nil, errors.New("marketplace: Pool, Gate and Logger are required")
	}
	read := d.ReadPool
	if read == nil {
		read = d.Pool
	}
	return &Service{cfg: cfg, pool: d.Pool, readPool: read, logger: d.Logger}, nil
}

// Start has nothing to prepare.
func (s *Service) Start(context.Context) error { return nil }

// Run has no background work: it waits for ctx.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Stop has nothing to release.
func (s *Service) Stop(context.Context) error { return nil }

// Routes mounts the distributors' API on r.Distributor (/portal). It has no routes yet.
func (s *Service) Routes(r httpserver.Router) {}
