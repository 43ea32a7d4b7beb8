package mobileapi

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4/middleware"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/throttle"
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
	// AccessDigestInterval is how often farmers are texted a digest of
	// who read their data since the last one; 0 sends none.
	AccessDigestInterval time.Duration
	// Login throttles agents' failed password logins (zero fields take
	// DefaultLoginThrottle's).
	Login throttle.Policy
}

// DefaultLoginThrottle is the agents' login throttle when the
// configuration gives none. Its per-address allowance is five times the
// portal's: agents' phones reach us through mobile carriers' NAT, where a
// whole district can share one public address, and only failures count
// (each login that succeeds takes its own back), so 100 failures a day
// from one address is a guesser rather than a village of agents mistyping;
// the per-agent allowance (5) is what protects each account.
var DefaultLoginThrottle = throttle.Policy{AccountFree: 5, AddressFree: 100, Base: time.Second, Max: 15 * time.Minute, Forget: 24 * time.Hour}

// RegisterFlags registers the flags under prefix ("mobile.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&c.PublishTimeout, prefix+"publish-timeout", 10*time.Second, "how long /sync waits for JetStream to ack a batch before answering 503")
	fs.DurationVar(&c.AccessDigestInterval, prefix+"access-digest-interval", 24*time.Hour, "how often farmers are texted who read their data since the last text (0: never)")
	d := DefaultLoginThrottle
	fs.IntVar(&c.Login.AccountFree, prefix+"login-account-failures", d.AccountFree, "failed agent logins an agent login name (as typed) is allowed before each further failure locks it, for twice as long as the last")
	fs.IntVar(&c.Login.AddressFree, prefix+"login-address-failures", d.AddressFree, "failed agent logins a client address (an IPv6 /64; often a carrier NAT shared by many phones) is allowed before each further failure locks it, for twice as long as the last")
	fs.DurationVar(&c.Login.Base, prefix+"login-lockout", d.Base, "the first agent login lockout after the allowed failures; each further failure doubles it")
	fs.DurationVar(&c.Login.Max, prefix+"login-max-lockout", d.Max, "the longest a failed agent login locks a login name or address")
	fs.DurationVar(&c.Login.Forget, prefix+"login-forget", d.Forget, "a login name or address forgets its failed agent logins this long after the last")
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
	// Consumer counts what the erasure consumer and the consumer of DEAD do.
	Consumer *natsbus.Metrics
	// Registry takes tani_records_refused_after_ack_total.
	Registry prometheus.Registerer
	// Memo, when stages that run in this process read what /sync
	// publishes, is given every accepted record as checked, so that they
	// need not read and verify the same bytes again. Optional.
	Memo *record.Memo
	// ClientAddress is the address failed logins are counted under (the
	// identity module's, which honours -identity.trusted-proxies);
	// optional: without it, the connection's peer.
	ClientAddress func(*http.Request) string
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
	keys      *record.Keys // device keys, precomputed for verification
	memo      *record.Memo
	media     *media.Service
	erasures  *natsbus.Consumer
	dead      *natsbus.Consumer      // DEAD → mobile.refusals
	refused   *prometheus.CounterVec // tani_records_refused_after_ack_total
	logins    *throttle.Guard        // mobile.login_failures
	address   func(*http.Request) string
}

// New wires the service; it validates and does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.JS == nil || d.Auth == nil || d.PII == nil || d.SMS == nil || d.Logger == nil {
		return nil, errors.New("mobile-api: Pool, JS, Auth, PII, SMS and Logger are required")
	}
	logins, err := throttle.New(d.Pool, "mobile.login_failures", cfg.Login.OrDefaults(DefaultLoginThrottle))
	if err != nil {
		return nil, fmt.Errorf("mobile-api: login throttle: %w", err)
	}
	address := d.ClientAddress
	if address == nil {
		direct, _ := throttle.NewAddresses("")
		address = direct.Of
	}
	s := &Service{
		logins: logins, address: address,
		cfg: cfg, pool: d.Pool, js: d.JS, auth: d.Auth, pii: d.PII, sms: d.SMS, logger: d.Logger, validator: validate.New(), keys: record.NewKeys(), memo: d.Memo, media: d.Media,
		dead: natsbus.NewConsumer(natsbus.ConsumerConfig{
			Stream:         natsbus.StreamDead,
			Durable:        RefusalsConsumer,
			FilterSubjects: []string{natsbus.SubjectDeadPrefix + "farm.>"},
			// A dead letter is never refused here; while Postgres is
			// away it waits, in DEAD, however long that takes.
			MaxDeliver: -1,
		}, d.JS, d.Logger, d.Consumer),
		refused: refusalMetrics(d.Registry),
	}
	if d.JS != nil && d.Consumer != nil {
		s.erasures = forget.Consumer(ErasureConsumerName, d.JS, d.Logger, d.Consumer)
	}
	return s, nil
}

// Start readies the media store and creates the consumers: of DEAD
// (refusals) and of erasures (the schema is migrated by the postgres
// module and `tani migrate`).
func (s *Service) Start(ctx context.Context) error {
	if s.media != nil {
		if err := s.media.Start(ctx); err != nil {
			return err
		}
	}
	if err := s.dead.Start(ctx); err != nil {
		return err
	}
	if s.erasures == nil {
		return nil
	}
	return s.erasures.Start(ctx)
}

// Stop has nothing to release: Run drains the consumers when ctx ends.
func (s *Service) Stop(context.Context) error { return nil }

// Run erases farmers who asked to be forgotten, records dead letters of
// farm records as refusals the phone and operators see, and sweeps
// abandoned media uploads, until ctx is done. When one fails, the others
// stop too.
func (s *Service) Run(ctx context.Context) error {
	background := func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errs := make(chan error, 4)
		go func() { errs <- s.dead.Run(ctx, s.handleDead) }()
		go func() {
			if s.media == nil {
				<-ctx.Done()
				errs <- nil
				return
			}
			errs <- s.media.Run(ctx)
		}()
		go func() {
			if s.cfg.AccessDigestInterval <= 0 {
				<-ctx.Done()
				errs <- nil
				return
			}
			errs <- s.runAccessDigests(ctx, s.cfg.AccessDigestInterval)
		}()
		go func() { errs <- s.forgetLoginFailures(ctx) }()
		err := <-errs
		cancel()
		return errors.Join(err, <-errs, <-errs, <-errs)
	}
	if s.erasures == nil {
		return background(ctx)
	}
	return forget.RunWith(ctx, s.erasures, eraser.Handler(s.pool, s.erase, s.logger), background)
}

// Routes mounts the agents' API on r.Public (/mobile/v1) and the
// operators' identity administration on r.Admin (/admin/v1, already
// guarded). Media uploads are the media service's own routes.
func (s *Service) Routes(r httpserver.Router) {
	mobile, admin := r.Public, r.Admin
	mobile.GET("/openapi.json", s.openapi)
	mobile.POST("/auth/login", s.login)
	mobile.POST("/auth/refresh", s.refresh)

	agent := mobile.Group("", s.RequireAgent())
	agent.POST("/devices", s.enrollDevice)
	agent.GET("/devices", s.listDevices)
	agent.POST("/devices/:id/revoke", s.revokeOwnDevice)
	agent.POST("/otp", s.createOTP)
	agent.POST("/sync", s.sync, middleware.BodyLimit(MaxBatchBytes))
	agent.GET("/records/:id", s.recordStatus)
	agent.GET("/farmers", s.farmers)
	agent.GET("/tasks", s.tasks)
	agent.GET("/consent-requests", s.consentRequests)
	agent.GET("/orders", s.farmerOrders)
	agent.GET("/farmers/:id/access-log", s.farmerAccessLog)
	agent.GET("/farmers/:id/loans", s.farmerLoans)

	admin.POST("/agents", s.createAgent)
	admin.POST("/assignments", s.createAssignment)
	admin.POST("/devices/:id/revoke", s.revokeDevice)
	admin.GET("/refusals", s.listRefusals)
}

func jwtSubject(id string) jwt.RegisteredClaims { return jwt.RegisteredClaims{Subject: id} }
