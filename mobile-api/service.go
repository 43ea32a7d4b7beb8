package mobileapi

import (
	"context"
	"embed"
	"flag"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/validate"
	"github.com/tani-platform/tani/mobile-api/media"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is mobile-api's schema.
var Migrations = postgres.Migrations{Name: "mobile", FS: postgres.MustSub(migrationsFS, "migrations")}

// MaxBatch is the most records one /sync may carry.
const MaxBatch = 500

// MaxBatchBytes is the largest /sync body: 500 records of a few KB, sized
// for a 2G link where a larger request rarely completes.
const MaxBatchBytes = "5M"

// RoleAgent is the access-token role of field agents.
const RoleAgent = "agent"

// Config tunes the API.
type Config struct {
	PublishTimeout time.Duration
}

// RegisterFlags registers the mobile.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.PublishTimeout, "mobile.publish-timeout", 10*time.Second, "how long /sync waits for JetStream to ack a batch before answering 503")
}

// Deps are what the service uses.
type Deps struct {
	Pool   *pgxpool.Pool
	JS     jetstream.JetStream
	Auth   *auth.Keys
	PII    *pii.Keys
	SMS    SMSSender
	Logger *slog.Logger
	// Media are the stored photos and documents; an erasure deletes the
	// farmer's, and Run sweeps abandoned uploads. Optional.
	Media *media.Service
	// Consumer counts what the erasure consumer does.
	Consumer *natsbus.Metrics
}

// Service is the mobile-api module.
type Service struct {
	cfg       Config
	pool      *pgxpool.Pool
	js        jetstream.JetStream
	auth      *auth.Keys
	pii       *pii.Keys
	sms       SMSSender
	logger    *slog.Logger
	validator *validate.Validator
	media     *media.Service
	erasures  *natsbus.Consumer
}

// New wires the service; it does no I/O.
func New(cfg Config, d Deps) *Service {
	s := &Service{cfg: cfg, pool: d.Pool, js: d.JS, auth: d.Auth, pii: d.PII, sms: d.SMS, logger: d.Logger, validator: validate.New(), media: d.Media}
	if d.JS != nil && d.Consumer != nil {
		s.erasures = forget.Consumer(ErasureConsumerName, d.JS, d.Logger, d.Consumer)
	}
	return s
}

// Start migrates mobile-api's schema and creates its erasure consumer.
func (s *Service) Start(ctx context.Context) error {
	if err := postgres.Migrate(ctx, s.pool, s.logger, Migrations); err != nil {
		return err
	}
	if s.erasures == nil {
		return nil
	}
	return s.erasures.Start(ctx)
}

// Run erases farmers who asked to be forgotten and sweeps abandoned media
// uploads, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	background := func(ctx context.Context) error {
		if s.media == nil {
			<-ctx.Done()
			return nil
		}
		return s.media.Run(ctx)
	}
	if s.erasures == nil {
		return background(ctx)
	}
	return forget.RunWith(ctx, s.erasures, eraser.Handler(s.pool, s.erase, s.logger), background)
}

// Routes mounts the agents' API on mobile (/mobile/v1) and the operators'
// identity administration on admin (/admin/v1, already guarded).
func (s *Service) Routes(mobile, admin *echo.Group) {
	mobile.GET("/openapi.json", s.openapi)
	mobile.POST("/auth/login", s.login)
	mobile.POST("/auth/refresh", s.refresh)

	agent := mobile.Group("", s.auth.RequireRole(RoleAgent))
	agent.POST("/devices", s.enrollDevice)
	agent.GET("/devices", s.listDevices)
	agent.POST("/devices/:id/revoke", s.revokeOwnDevice)
	agent.POST("/otp", s.createOTP)
	agent.POST("/sync", s.sync, middleware.BodyLimit(MaxBatchBytes))
	agent.GET("/records/:id", s.recordStatus)
	agent.GET("/farmers", s.farmers)
	agent.GET("/tasks", s.tasks)

	admin.POST("/organizations", s.createOrganization)
	admin.POST("/agents", s.createAgent)
	admin.POST("/assignments", s.createAssignment)
	admin.POST("/devices/:id/revoke", s.revokeDevice)
}

func jwtSubject(id string) jwt.RegisteredClaims { return jwt.RegisteredClaims{Subject: id} }
