package marketplace

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/validate"
	"github.com/tani-platform/tani/ledger"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the marketplace schema.
var Migrations = postgres.Migrations{Name: "marketplace", FS: postgres.MustSub(migrationsFS, "migrations")}

// ConsumerName is the marketplace's durable consumer of attest's
// decisions on orders and deliveries.
const ConsumerName = "marketplace"

// K is the k of the demand outlook's k-anonymity: a cell describing fewer
// farmers is never stored or shown.
const K = 10

// Config tunes the module.
type Config struct {
	// SweepInterval is how often order revisions not yet journaled and
	// voucher redemptions not yet done are retried.
	SweepInterval time.Duration
	// DemandInterval is how often the demand outlook is recomputed (0:
	// only on demand, POST /distributor/v1/demand/refresh).
	DemandInterval time.Duration
	// DemandRebuildInterval is how old the outlook's plan may grow before
	// a refresh rebuilds it from attest's tables (0: only when the season
	// or the rate table changes), which repairs anything the stream of
	// decisions missed (a dead-lettered announcement, a fix made in
	// attest's tables by hand).
	DemandRebuildInterval time.Duration
	// MaxDeliver bounds deliveries of an attested message whose handling
	// keeps failing before it is dead-lettered.
	MaxDeliver int
	// DistributorMSP is the Fabric MSP the process redeems vouchers as,
	// for every distributor organization (the chain records which).
	DistributorMSP string
}

// RegisterFlags registers the flags under prefix ("marketplace.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&c.SweepInterval, prefix+"sweep-interval", 5*time.Second, "how often unjournaled order changes and pending voucher redemptions are retried")
	fs.DurationVar(&c.DemandInterval, prefix+"demand-interval", 5*time.Minute, "how often the regional demand outlook is published from its plan (0: only on request)")
	fs.DurationVar(&c.DemandRebuildInterval, prefix+"demand-rebuild-interval", 24*time.Hour,
		"how old the demand outlook's plan may grow before a refresh rebuilds it from attest's tables (0: only when the season or the rate table changes)")
	fs.IntVar(&c.MaxDeliver, prefix+"max-deliver", 10, "deliveries of an attested order or delivery whose projection keeps failing before it is dead-lettered")
	fs.StringVar(&c.DistributorMSP, prefix+"distributor-msp", "DistributorMSP", "Fabric MSP ID the marketplace redeems vouchers as (an identity of -vouchers.identities)")
}

// Vouchers redeems input vouchers on the vouchers chaincode. The composition
// root hands in the Fabric client; nil means no chain is configured, and a
// voucher-paid delivery then waits (redemption "pending") until one is.
type Vouchers interface {
	// Redeem redeems voucherID once against a verified delivery, as the
	// distributor's organization, and returns the transaction id. An
	// error wrapping ErrVoucherRefused is the chain's final refusal
	// (redeemed already, expired, wrong distributor, goods outside its
	// categories or above its amount); any other error is retried.
	Redeem(ctx context.Context, voucherID string, r Redemption) (txID string, err error)
}

// ErrVoucherRefused marks a redemption the chaincode refused for good.
var ErrVoucherRefused = errors.New("voucher redemption refused by the chain")

// Redemption is what a voucher is redeemed against: the verified delivery
// (its record, journal leaf and receipt hash) and the goods by category.
type Redemption struct {
	DistributorOrg string
	DeliveryID     string
	LeafIndex      int64
	ReceiptSHA256  string
	Region         string
	Goods          []Goods
}

// Goods is the value of one category of goods delivered.
type Goods struct {
	Category string
	Minor    int64
	Currency string
}

// Deps are what the module uses. Pool, Gate, Journal and Logger are
// required; ReadPool, JS (tests that drive the handlers themselves),
// Vouchers and Sessions are optional.
type Deps struct {
	// Pool is the primary: writes, and reads that must see them (a consent
	// just revoked, an order just accepted).
	Pool *pgxpool.Pool
	// ReadPool serves reads that may trail the primary by the replica's
	// lag (tani_postgres_replica_lag_seconds): listings and reports. Nil
	// means Pool, as when no -database.read-url is set.
	ReadPool *pgxpool.Pool
	// Gate is the one way to read a farmer's data for an organization.
	Gate    *consent.Gate
	Journal *ledger.Journal
	JS      jetstream.JetStream
	Logger  *slog.Logger
	// Consumer counts what the consumer did (shared metrics).
	Consumer *natsbus.Metrics
	Vouchers Vouchers
	// Portal guards the portal's pages: the session middleware, the
	// sign-in handlers and the CSRF token of a request. Nil: the portal
	// is not mounted.
	Portal *PortalAuth
	// Webhooks, when set, adds the organization's webhooks pages to the
	// portal (the webhooks module's *Service).
	Webhooks PortalWebhooks
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Document is the OpenAPI document served at
	// /distributor/v1/openapi.json: OpenAPI() with what other modules
	// mount under /distributor/v1 merged in by the composition root
	// (identity, consent, webhooks). Nil serves OpenAPI() alone.
	Document []byte
}

// Service is the marketplace module.
type Service struct {
	cfg       Config
	pool      *pgxpool.Pool
	readPool  *pgxpool.Pool
	gate      *consent.Gate
	journal   *ledger.Journal
	logger    *slog.Logger
	vouchers  Vouchers
	portal    *PortalAuth
	webhooks  PortalWebhooks
	consumer  *natsbus.Consumer
	erasures  *natsbus.Consumer
	validator *validate.Validator
	now       func() time.Time
	pages     *pages
	document  []byte
}

// New wires the service; it validates and does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.Gate == nil || d.Journal == nil || d.Logger == nil {
		return nil, errors.New("marketplace: Pool, Gate, Journal and Logger are required")
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	read := d.ReadPool
	if read == nil {
		read = d.Pool
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	pg, err := loadPages()
	if err != nil {
		return nil, fmt.Errorf("marketplace: %w", err)
	}
	s := &Service{cfg: cfg, pool: d.Pool, readPool: read, gate: d.Gate, journal: d.Journal, logger: d.Logger,
		vouchers: d.Vouchers, portal: d.Portal, webhooks: d.Webhooks, validator: validate.New(), now: now, pages: pg, document: d.Document}
	if s.document == nil {
		s.document = OpenAPI()
	}
	if d.JS != nil {
		s.consumer = natsbus.NewConsumer(natsbus.ConsumerConfig{
			Stream:  natsbus.StreamFarm,
			Durable: ConsumerName,
			FilterSubjects: []string{
				natsbus.SubjectAttestedPrefix + "order.placed",
				natsbus.SubjectAttestedPrefix + "delivery.confirmed",
				// The demand outlook's plan (demand_plan.go).
				natsbus.SubjectAttestedPrefix + "farmer.registered",
				natsbus.SubjectAttestedPrefix + "plot.mapped",
				natsbus.SubjectAttestedPrefix + "crop.planted",
			},
			MaxDeliver: cfg.MaxDeliver,
		}, d.JS, d.Logger, d.Consumer)
		s.erasures = forget.Consumer(ErasureConsumerName, d.JS, d.Logger, d.Consumer)
	}
	return s, nil
}

// Start creates the consumers (attest's decisions, erasure requests).
func (s *Service) Start(ctx context.Context) error {
	if s.consumer == nil {
		return errors.New("marketplace: started without JetStream")
	}
	if err := s.consumer.Start(ctx); err != nil {
		return err
	}
	return s.erasures.Start(ctx)
}

// Run consumes attest's decisions on orders and deliveries and, beside it,
// erases farmers who asked to be forgotten, journals order changes and
// redeems vouchers whose first attempt failed, and recomputes the demand
// outlook, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	go s.sweepLoop(ctx)
	if s.cfg.DemandInterval > 0 {
		go s.demandLoop(ctx)
	}
	return forget.RunWith(ctx, s.erasures, eraser.Handler(s.pool, s.erase, s.logger), func(ctx context.Context) error {
		return s.consumer.RunBatch(ctx, s.HandleAttested)
	})
}

// Stop has nothing to release: Run drains the consumer when ctx ends.
func (s *Service) Stop(context.Context) error { return nil }

// Routes mounts the distributors' JSON API on r.Distributor
// (/distributor/v1), its OpenAPI document on r.Public (the same prefix, no
// credential needed to read the document) and the portal's pages on
// r.Portal (/portal).
func (s *Service) Routes(r httpserver.Router) {
	if r.Public != nil {
		r.Public.GET("/openapi.json", s.serveDocument)
	}
	if r.Distributor != nil {
		s.apiRoutes(r.Distributor)
	}
	if r.Portal != nil && s.portal != nil {
		s.portalRoutes(r.Portal)
	}
}

func (s *Service) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.journalPending(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "journal order changes", "err", err)
		}
		if err := s.redeemPending(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "redeem vouchers", "err", err)
		}
	}
}

func (s *Service) demandLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.DemandInterval)
	defer t.Stop()
	for {
		if _, err := s.RefreshDemand(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "refresh demand outlook", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
