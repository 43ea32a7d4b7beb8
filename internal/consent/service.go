package consent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/ledger"
)

// Config tunes the consent service.
type Config struct {
	// AnswerWithin is how long a consent request awaits the farmer's
	// answer before it expires.
	AnswerWithin time.Duration
	// SweepInterval is how often expiries are recorded and unjournaled
	// state changes journaled.
	SweepInterval time.Duration
	// DurableAccessLog makes every gated read wait until its access-log
	// row is flushed to disk (see NewGate).
	DurableAccessLog bool
}

// RegisterFlags registers the flags under prefix ("consent.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&c.AnswerWithin, prefix+"answer-within", 30*24*time.Hour, "how long a consent request awaits the farmer's answer before it expires")
	fs.DurationVar(&c.SweepInterval, prefix+"sweep-interval", time.Minute, "how often consent expiries are journaled (and journaling that failed is retried)")
	fs.BoolVar(&c.DurableAccessLog, prefix+"durable-access-log", true, "make read-only gated reads wait until their access-log row is flushed to disk before the data is served (the default: a read is never served unlogged, even across a crash of Postgres). false trades that for latency: a crash of Postgres may lose the access-log rows of the last 600 ms of reads already served; reads that write always wait")
}

// Deps are what the service uses; all are required.
type Deps struct {
	// Pool is the primary: requests are written and consents read where
	// a revocation was just written.
	Pool *pgxpool.Pool
	// Journal takes the state changes the service makes itself (a
	// request, its expiry, a consent's expiry).
	Journal *ledger.Journal
	Logger  *slog.Logger
	// JS carries farmers' erasure requests (the ERASURE stream) and
	// Consumer counts what the erasure consumer handles. Without JS (a
	// test of the sweep) the service takes part in no erasure.
	JS       jetstream.JetStream
	Consumer *natsbus.Metrics
}

// Service is consent as a resource: banks' and distributors' consent
// requests, their consents with status, scopes, expiry and journal
// receipts, and operators' view of the access log.
type Service struct {
	cfg     Config
	pool    *pgxpool.Pool
	journal *ledger.Journal
	logger  *slog.Logger
	now     func() time.Time
	// erasures consumes erasure requests (nil without JetStream).
	erasures *natsbus.Consumer
	// sweepMu orders sweeps; lastFull is when the last full one (looking
	// back without limit) started.
	sweepMu  sync.Mutex
	lastFull time.Time
}

// New wires the service; it validates and does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.Journal == nil || d.Logger == nil {
		return nil, errors.New("consent: Pool, Journal and Logger are required")
	}
	if cfg.AnswerWithin <= 0 || cfg.AnswerWithin > MaxAnswerWithin {
		return nil, fmt.Errorf("consent: -consent.answer-within must be positive and at most %s", MaxAnswerWithin)
	}
	if cfg.SweepInterval <= 0 {
		return nil, errors.New("consent: -consent.sweep-interval must be positive")
	}
	s := &Service{cfg: cfg, pool: d.Pool, journal: d.Journal, logger: d.Logger, now: time.Now}
	if d.JS != nil {
		s.erasures = forget.Consumer(ErasureConsumerName, d.JS, d.Logger, d.Consumer)
	}
	return s, nil
}

// MaxAnswerWithin bounds how long a request may wait: a farmer's one-time
// code is valid 14 days, and a request older than a season is stale.
const MaxAnswerWithin = 90 * 24 * time.Hour

// Start creates the erasure consumer.
func (s *Service) Start(ctx context.Context) error {
	if s.erasures == nil {
		return nil
	}
	return s.erasures.Start(ctx)
}

// Run records expiries and journals state changes every SweepInterval,
// and erases farmers who asked to be forgotten, until ctx is done. A
// failed sweep is logged and retried at the next.
func (s *Service) Run(ctx context.Context) error {
	if s.erasures == nil {
		return s.sweepLoop(ctx)
	}
	return forget.RunWith(ctx, s.erasures, eraser.Handler(s.pool, s.erase, s.logger), s.sweepLoop)
}

func (s *Service) sweepLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "consent sweep failed; retrying at the next", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Stop has nothing to release.
func (s *Service) Stop(context.Context) error { return nil }

// Routes mounts consent requests and consents on r.Bank and
// r.Distributor (each organization sees only its own), and the access
// log on r.Admin.
func (s *Service) Routes(r httpserver.Router) {
	for _, g := range []*echo.Group{r.Bank, r.Distributor} {
		if g == nil {
			continue
		}
		g.POST("/consent-requests", s.createRequest)
		g.GET("/consents", s.listConsents)
		g.GET("/consents/:id", s.getConsent)
	}
	if r.Admin != nil {
		r.Admin.GET("/access-log", s.accessLog)
	}
}
