package webhooks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the webhooks schema.
var Migrations = postgres.Migrations{Name: "webhooks", FS: postgres.MustSub(migrationsFS, "migrations")}

// ConsumerName is the durable consumer that fans EVENTS out to endpoints.
const ConsumerName = "webhooks"

// Config tunes the module.
type Config struct {
	// Development allows http:// endpoints and private, loopback and
	// link-local addresses (a receiver on the developer's machine). Never
	// in production: it opens Tani's own network to organizations (SSRF).
	Development bool
	// RequestTimeout bounds one delivery attempt, connection included.
	RequestTimeout time.Duration
	// EndpointConcurrency is how many attempts run at once to one
	// endpoint, in one process.
	EndpointConcurrency int
	// EndpointQueue is how many claimed deliveries wait per endpoint in
	// one process; more stay in Postgres until there is room.
	EndpointQueue int
	// MaxInFlight bounds the attempts one process runs at once.
	MaxInFlight int
	// RetryBase is the wait after the first failed attempt; each further
	// failure doubles it, up to RetryMax, with ±25 % jitter.
	RetryBase time.Duration
	RetryMax  time.Duration
	// RetryWindow is how long a delivery is retried before it is given
	// up; an endpoint whose every attempt failed for that long is disabled.
	RetryWindow time.Duration
	// Lease is how long a process owns a claimed delivery; a delivery of a
	// process that died is taken over once its lease runs out.
	Lease time.Duration
	// PollInterval is how often due retries are looked for.
	PollInterval time.Duration
	// MaxEndpoints is the most endpoints an organization may register.
	MaxEndpoints int
	// ExtraCAFile is a PEM file of CAs endpoint certificates may chain to
	// besides the system's (receivers on a private PKI; a developer's
	// receiver). The composition root reads it into Deps.RootCAs.
	ExtraCAFile string
}

// RegisterFlags registers the flags under prefix ("webhooks.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.BoolVar(&c.Development, prefix+"development", false, "allow http:// endpoints and loopback/private addresses (development only: it allows SSRF)")
	fs.DurationVar(&c.RequestTimeout, prefix+"request-timeout", 10*time.Second, "time limit of one delivery attempt")
	fs.IntVar(&c.EndpointConcurrency, prefix+"endpoint-concurrency", 16, "attempts at once to one endpoint, per process")
	fs.IntVar(&c.EndpointQueue, prefix+"endpoint-queue", 1024, "claimed deliveries waiting per endpoint, per process")
	fs.IntVar(&c.MaxInFlight, prefix+"max-in-flight", 512, "attempts at once, per process")
	fs.DurationVar(&c.RetryBase, prefix+"retry-base", 5*time.Second, "wait after a first failed attempt (doubling per failure, with jitter)")
	fs.DurationVar(&c.RetryMax, prefix+"retry-max", 6*time.Hour, "longest wait between attempts")
	fs.DurationVar(&c.RetryWindow, prefix+"retry-window", 72*time.Hour, "how long a delivery is retried before it is given up (and a failing endpoint disabled)")
	fs.DurationVar(&c.Lease, prefix+"lease", 2*time.Minute, "how long a process owns a claimed delivery before another may take it over")
	fs.DurationVar(&c.PollInterval, prefix+"poll-interval", time.Second, "how often due retries are looked for")
	fs.IntVar(&c.MaxEndpoints, prefix+"max-endpoints", 20, "most endpoints per organization")
	fs.StringVar(&c.ExtraCAFile, prefix+"extra-ca-file", "", "PEM file of CAs endpoint certificates may chain to besides the system's")
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RequestTimeout, 10*time.Second)
	def(&c.RetryBase, 5*time.Second)
	def(&c.RetryMax, 6*time.Hour)
	def(&c.RetryWindow, 72*time.Hour)
	def(&c.Lease, 2*time.Minute)
	def(&c.PollInterval, time.Second)
	if c.EndpointConcurrency <= 0 {
		c.EndpointConcurrency = 16
	}
	if c.EndpointQueue <= 0 {
		c.EndpointQueue = 1024
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 512
	}
	if c.MaxEndpoints <= 0 {
		c.MaxEndpoints = 20
	}
}

// Deps are what the module uses. Pool, JS, Gate, PII and Logger are
// required.
type Deps struct {
	Pool *pgxpool.Pool
	JS   jetstream.JetStream
	// Gate re-checks consent before each attempt of a farmer-scoped event.
	Gate *consent.Gate
	// PII seals the signing secrets at rest.
	PII      *pii.Keys
	Logger   *slog.Logger
	Consumer *natsbus.Metrics
	Registry prometheus.Registerer
	// Retention is how long events are kept (events.Config.Retention):
	// replay and polling reach back this far. Zero: 30 days.
	Retention time.Duration
	// RootCAs are the CAs endpoint certificates are checked against; nil
	// is the system's. Tests use their own.
	RootCAs *x509.CertPool
	// Resolver resolves endpoint hosts; nil is the system resolver. Tests
	// use a fixed one to play a rebinding DNS server.
	Resolver interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

// Service is the webhooks module.
type Service struct {
	cfg       Config
	pool      *pgxpool.Pool
	js        jetstream.JetStream
	gate      *consent.Gate
	pii       *pii.Keys
	logger    *slog.Logger
	retention time.Duration
	guard     guard
	client    *http.Client
	consumer  *natsbus.Consumer
	erasures  *natsbus.Consumer
	metrics   *metrics
	disp      *dispatcher
	checker   *consentChecker
	now       func() time.Time
}

// New wires the service; it validates and does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.Gate == nil || d.PII == nil || d.Logger == nil {
		return nil, errors.New("webhooks: Pool, Gate, PII and Logger are required")
	}
	cfg.defaults()
	retention := d.Retention
	if retention <= 0 {
		retention = 30 * 24 * time.Hour
	}
	var res resolver = net.DefaultResolver
	if d.Resolver != nil {
		res = d.Resolver
	}
	s := &Service{
		cfg: cfg, pool: d.Pool, js: d.JS, gate: d.Gate, pii: d.PII, logger: d.Logger, retention: retention,
		guard: guard{development: cfg.Development, resolver: res}, now: time.Now,
	}
	m, err := newMetrics(d.Registry, d.Pool)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.client = newClient(cfg, s.guard, d.RootCAs)
	if d.JS != nil {
		s.consumer = natsbus.NewConsumer(natsbus.ConsumerConfig{
			Stream:         natsbus.StreamEvents,
			Durable:        ConsumerName,
			FilterSubjects: []string{natsbus.SubjectEventsPrefix + ">"},
			// An event is never given up on: a fan-out that keeps failing
			// is Postgres being away, and it comes back.
			MaxDeliver: -1,
			MaxBatch:   1000,
			Buffer:     2000,
		}, d.JS, d.Logger, d.Consumer)
		s.erasures = forget.Consumer(ErasureConsumerName, d.JS, d.Logger, d.Consumer)
	}
	s.checker = newConsentChecker(d.Gate)
	s.disp = newDispatcher(s)
	return s, nil
}

// RootCAs is the system's CA pool with the certificates of the PEM file
// path added (Config.ExtraCAFile); "" is nil, the system's alone.
func RootCAs(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("webhooks: extra CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("webhooks: extra CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// newClient is the delivery HTTP client: no proxy (a proxy would dial for
// us, past the address checks), no redirects, the guard's dialer, bounded
// timeouts.
func newClient(cfg Config, g guard, roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: min(5*time.Second, cfg.RequestTimeout), KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            g.dialContext(dialer),
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    min(5*time.Second, cfg.RequestTimeout),
		ResponseHeaderTimeout:  cfg.RequestTimeout,
		MaxIdleConns:           cfg.MaxInFlight,
		MaxIdleConnsPerHost:    cfg.EndpointConcurrency,
		MaxConnsPerHost:        0,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.RequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is an answer, and a failure
		},
	}
}

// Start creates the fan-out consumer (the stream is the nats module's,
// the schema the postgres module's).
func (s *Service) Start(ctx context.Context) error {
	if s.consumer == nil {
		return errors.New("webhooks: started without JetStream")
	}
	if err := s.consumer.Start(ctx); err != nil {
		return err
	}
	return s.erasures.Start(ctx)
}

// Run fans events out, delivers, and erases farmers who asked to be
// forgotten, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.checker.run(ctx) })
	wg.Go(func() { s.disp.run(ctx) })
	wg.Go(func() { s.maintain(ctx) })
	err := forget.RunWith(ctx, s.erasures, eraser.Handler(s.pool, s.erase, s.logger), func(ctx context.Context) error {
		return s.consumer.RunBatch(ctx, s.HandleBatch)
	})
	cancel()
	wg.Wait()
	return err
}

// Stop has nothing to release: Run hands back what it had claimed.
func (s *Service) Stop(context.Context) error { return nil }

// maintain prunes deliveries older than the events' retention, hourly.
func (s *Service) maintain(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Prune(ctx, s.now()); err != nil && ctx.Err() == nil {
				s.logger.ErrorContext(ctx, "prune deliveries", "err", err)
			}
		}
	}
}

// Prune deletes deliveries created before now minus the retention (their
// events are gone from the outbox too) that are finished, or waiting for
// an endpoint that is disabled, and returns how many.
func (s *Service) Prune(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM webhooks.deliveries WHERE id IN (
			    SELECT d.id FROM webhooks.deliveries d JOIN webhooks.endpoints e ON e.id = d.endpoint_id
			    WHERE d.created_at < $1 AND (d.state <> 'pending' OR NOT e.enabled) LIMIT 10000)`, now.Add(-s.retention))
		if err != nil {
			return total, fmt.Errorf("prune deliveries: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 10000 {
			return total, nil
		}
	}
}
