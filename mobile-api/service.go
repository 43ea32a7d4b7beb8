package mobileapi

import (
	"context"
	"embed"
	"flag"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/postgres"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is mobile-api's schema.
var Migrations = postgres.Migrations{Name: "mobile", FS: postgres.MustSub(migrationsFS, "migrations")}

// MaxBatch is the most records one /sync may carry.
const MaxBatch = 500

// Config tunes the API.
type Config struct {
	PublishTimeout time.Duration
}

// RegisterFlags registers the mobile.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.PublishTimeout, "mobile.publish-timeout", 10*time.Second, "how long /sync waits for JetStream to ack a batch before answering 503")
}

// Service is the mobile-api module.
type Service struct {
	cfg    Config
	pool   *pgxpool.Pool
	js     jetstream.JetStream
	logger *slog.Logger
}

// New wires the service; it does no I/O.
func New(cfg Config, pool *pgxpool.Pool, js jetstream.JetStream, logger *slog.Logger) *Service {
	return &Service{cfg: cfg, pool: pool, js: js, logger: logger}
}

// Start migrates mobile-api's schema.
func (s *Service) Start(ctx context.Context) error {
	return postgres.Migrate(ctx, s.pool, s.logger, Migrations)
}

// Routes mounts the API on g (the /mobile/v1 group).
func (s *Service) Routes(g *echo.Group) {
	g.POST("/sync", s.sync)
	g.GET("/records/:id", s.recordStatus)
}
