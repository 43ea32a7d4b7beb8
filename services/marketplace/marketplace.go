package marketplace

import (
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
)

// Service is the marketplace module.
type Service struct {
	pool     *pgxpool.Pool
	readPool *pgxpool.Pool
	logger   *slog.Logger
}

// Deps is what the composition root hands the service.
type Deps struct {
	// Pool is the primary: writes, and reads that must see them (a consent
	// just revoked, a loan just granted).
	Pool *pgxpool.Pool
	// ReadPool serves reads that may trail the primary by the replica's
	// lag (tani_postgres_replica_lag_seconds): listings and reports. It is
	// Pool itself when no -database.read-url is set.
	ReadPool *pgxpool.Pool
	Logger   *slog.Logger
}

// New wires the service; it does no I/O.
func New(deps Deps) *Service {
	read := deps.ReadPool
	if read == nil {
		read = deps.Pool
	}
	return &Service{pool: deps.Pool, readPool: read, logger: deps.Logger}
}

// Routes mounts the module's routes on g.
func (s *Service) Routes(g *echo.Group) {}
