package lending

import (
	"context"
	"embed"
	"errors"
	"flag"
	"log/slog"
	"sync"
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
	"github.com/tani-platform/tani/services/lending/scorecard"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the lending schema.
var Migrations = postgres.Migrations{Name: "lending", FS: postgres.MustSub(migrationsFS, "migrations")}

// ConsumerName is lending's durable consumer of attested loan records.
const ConsumerName = "lending"

// Config tunes the module.
type Config struct {
	// ServicingInterval is how often offers are expired, days past due
	// brought up to date, restructurings proposed and journal entries
	// whose first attempt failed retried.
	ServicingInterval time.Duration
	// MaxDeliver bounds redeliveries of an attested loan record whose
	// handling keeps failing before it is dead-lettered.
	MaxDeliver int
	// BankMSP is the Fabric MSP the process issues vouchers as for banks
	// (an identity the vouchers module holds).
	BankMSP string
}

// RegisterFlags registers the flags under prefix ("lending.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&c.ServicingInterval, prefix+"servicing-interval", time.Minute,
		"how often offers expire, days past due are updated, restructurings are proposed and unjournaled loan entries are retried")
	fs.IntVar(&c.MaxDeliver, prefix+"max-deliver", 10, "deliveries of an attested loan record whose handling keeps failing before it is dead-lettered")
	fs.StringVar(&c.BankMSP, prefix+"bank-msp", "BankMSP", "Fabric MSP ID lending issues vouchers as for banks (an identity of -vouchers.identities)")
}

// Deps are what the module uses. Pool, Gate, Journal and Logger are
// required. JS and Consumer are required to Start (the consumer of the
// agents' signed loan records); tests that drive the handler themselves
// may leave them nil. ReadPool, Vouchers, Settler and Now are optional.
type Deps struct {
	// Pool is the primary: writes, and reads that must see them (a consent
	// just revoked, a loan just granted).
	Pool *pgxpool.Pool
	// ReadPool serves reads that may trail the primary by the replica's
	// lag (tani_postgres_replica_lag_seconds): listings and reports. Nil
	// means Pool, as when no -database.read-url is set.
	ReadPool *pgxpool.Pool
	// Gate is the one way to read a farmer's data for an organization.
	Gate *consent.Gate
	// Journal holds loan agreements, state changes and scores.
	Journal  *ledger.Journal
	JS       jetstream.JetStream
	Consumer *natsbus.Metrics
	// Vouchers issues input vouchers on Fabric for disbursements in kind;
	// nil refuses voucher disbursements (cash still works).
	Vouchers VoucherIssuer
	// Settler reads the banks' vouchers on the chain and settles the
	// redeemed ones; nil answers settlements 503 (listings read the
	// projection and still work).
	Settler VoucherSettler
	Logger  *slog.Logger
	// Now is the clock (servicing, offers, days past due); nil is
	// time.Now. Tests move it forward to let loans fall due.
	Now func() time.Time
	// Document is the OpenAPI document served at /bank/v1/openapi.json:
	// OpenAPI() with what other modules mount under /bank/v1 merged in by
	// the composition root (webhooks). Nil serves OpenAPI() alone.
	Document []byte
}

// Service is the lending module.
type Service struct {
	cfg       Config
	pool      *pgxpool.Pool
	readPool  *pgxpool.Pool
	gate      *consent.Gate
	journal   *ledger.Journal
	vouchers  VoucherIssuer
	settler   VoucherSettler
	logger    *slog.Logger
	now       func() time.Time
	model     *scorecard.Model
	validator *validate.Validator
	consumer  *natsbus.Consumer
	erasures  *natsbus.Consumer
	document  []byte
	// background counts journal appends still running for requests
	// already answered (journalScoresLater).
	background sync.WaitGroup
	// scoringProducts holds the products scores were asked for
	// (scoringProduct), by organization/id.
	scoringProducts sync.Map
}

// New wires the service; it validates and does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.Gate == nil || d.Journal == nil || d.Logger == nil {
		return nil, errors.New("lending: Pool, Gate, Journal and Logger are required")
	}
	if cfg.ServicingInterval <= 0 {
		cfg.ServicingInterval = time.Minute
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 10
	}
	read := d.ReadPool
	if read == nil {
		read = d.Pool
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	s := &Service{cfg: cfg, pool: d.Pool, readPool: read, gate: d.Gate, journal: d.Journal, vouchers: d.Vouchers, settler: d.Settler,
		logger: d.Logger, now: now, model: scorecard.V1(), validator: validate.New(), document: d.Document}
	if s.document == nil {
		s.document = OpenAPI()
	}
	if d.JS != nil {
		s.consumer = natsbus.NewConsumer(natsbus.ConsumerConfig{
			Stream:  natsbus.StreamFarm,
			Durable: ConsumerName,
			FilterSubjects: []string{
				natsbus.SubjectAttestedPrefix + "loan.applied",
				natsbus.SubjectAttestedPrefix + "loan.accepted",
				natsbus.SubjectAttestedPrefix + "repayment.collected",
			},
			MaxDeliver: cfg.MaxDeliver,
		}, d.JS, d.Logger, d.Consumer)
		s.erasures = forget.Consumer(ErasureConsumerName, d.JS, d.Logger, d.Consumer)
	}
	return s, nil
}

// Start creates the consumers of attested loan records and of erasure
// requests.
func (s *Service) Start(ctx context.Context) error {
	if s.consumer == nil {
		return errors.New("lending: started without JetStream")
	}
	if err := s.consumer.Start(ctx); err != nil {
		return err
	}
	return s.erasures.Start(ctx)
}

// Run applies attested loan records, erases farmers who asked to be
// forgotten and, beside them, services the book (offers expiring, days
// past due, restructuring proposals, journal retries) every
// ServicingInterval, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	go s.servicingLoop(ctx)
	return forget.RunWith(ctx, s.erasures, eraser.Handler(s.pool, s.erase, s.logger), func(ctx context.Context) error {
		return s.consumer.Run(ctx, s.HandleRecord)
	})
}

// Stop waits for the journal appends of answered requests still running
// (until ctx ends: the servicing loop journals what they leave); Run
// drains the consumer when its ctx ends.
func (s *Service) Stop(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.background.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Routes mounts the banks' API on r.Bank (/bank/v1), its OpenAPI document
// on r.Public (the same prefix, no key needed to read the document) and
// the operators' regional shocks on r.Admin.
func (s *Service) Routes(r httpserver.Router) {
	if r.Public != nil {
		r.Public.GET("/openapi.json", s.openapi)
	}
	if b := r.Bank; b != nil {
		b.POST("/products", s.createProduct)
		b.GET("/products", s.listProducts)
		b.GET("/products/:id", s.getProduct)
		b.POST("/products/:id/retire", s.retireProduct)

		b.GET("/farmers/:id/profile", s.profile)
		b.GET("/farmers/:id/evidence-bundle", s.evidenceBundle)
		b.POST("/farmers/:id/score", s.scoreFarmer)
		b.POST("/rescore", s.rescore)

		b.POST("/loans", s.apply)
		b.GET("/loans", s.listLoans)
		b.GET("/loans/:id", s.getLoan)
		b.POST("/loans/:id/decision", s.decide)
		b.POST("/loans/:id/disbursement", s.disburse)
		b.POST("/loans/:id/repayments", s.repayOne)
		b.GET("/loans/:id/repayments", s.listRepayments)
		b.POST("/loans/:id/write-off", s.writeOff)
		b.GET("/loans/:id/agreement", s.agreement)
		b.GET("/loans/:id/events", s.loanEvents)
		b.GET("/loans/:id/restructurings", s.listRestructurings)
		b.POST("/loans/:id/restructurings/:rid/decision", s.decideRestructuring)
		b.POST("/repayments", s.repayBatch)

		b.GET("/vouchers", s.listVouchers)
		b.POST("/vouchers/:id/settlement", s.settleVoucher)
		b.GET("/scores/:id", s.getScore)

		b.GET("/portfolio", s.portfolio)
		b.GET("/portfolio.csv", s.portfolioCSV)
	}
	if a := r.Admin; a != nil {
		a.POST("/lending/shocks", s.declareShock)
		a.GET("/lending/shocks", s.listShocks)
	}
}
