package marketplace

import (
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
)

// Service is the marketplace module.
type Service struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// New wires the service; it does no I/O.
func New(pool *pgxpool.Pool, logger *slog.Logger) *Service {
	return &Service{pool: pool, logger: logger}
}

// Routes mounts the module's routes on g.
func (s *Service) Routes(g *echo.Group) {}
