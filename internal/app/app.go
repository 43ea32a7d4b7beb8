package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/services/webhooks"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/vouchers"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
)

// stopTimeout bounds how long one module may take to stop.
const stopTimeout = 30 * time.Second

// App is one Tani process: the modules of its targets and what they share.
type App struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry
	server   *httpserver.Server
	consumer *natsbus.Metrics
	order    []string

	// Provided by modules as they start; read by the modules after them.
	pool       *pgxpool.Pool
	readPool   *pgxpool.Pool // the replica of -database.read-url, else pool
	natsServer *server.Server
	nc         *nats.Conn
	js         jetstream.JetStream
	journal    *ledger.Journal
	devnet     *devnet.Network // nil when anchoring on an external network
	gate       *consent.Gate
	// bankAPI (/bank/v1) and distributorAPI (/distributor/v1) are
	// authenticated by the identity module.
	bankAPI, distributorAPI *echo.Group
	vouchers                *vouchers.Client
	// webhooks is the webhooks module, when it runs here (the portal's
	// webhooks pages call it).
	webhooks *webhooks.Service

	keys keys
	// pprof serves Go profiles when -debug.pprof is set (nil otherwise).
	pprof *pprofServer
	// memo carries the records /sync checked to the stages of this process
	// that read them from the stream next (nil when none runs here).
	memo *record.Memo
	// migrations are every module's schemas (Migrations), applied by the
	// postgres module.
	migrations []postgres.Migrations

	ready chan struct{}
}

// New resolves the targets into modules. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*App, error) {
	targets := cfg.Targets()
	if cfg.Demo.Enabled {
		targets = append(targets, Demo)
	}
	ord, err := order(targets)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", cfg.Target, err)
	}
	ord = withoutUnused(ord, cfg)
	if err := cfg.Debug.validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &App{
		memo:       recordMemo(ord),
		cfg:        cfg,
		logger:     logger,
		registry:   reg,
		server:     httpserver.New(cfg.HTTP, logger.With("module", Server), reg),
		consumer:   natsbus.NewMetrics(reg),
		order:      ord,
		migrations: Migrations(),
		ready:      make(chan struct{}),
	}, nil
}

// recordMemo returns the memo of checked records for a process running
// modules: when mobile-api runs beside ingest or attest, each of them
// takes what /sync checked instead of reading and verifying the same
// bytes again (record.Memo). Other processes read everything in full.
func recordMemo(modules []string) *record.Memo {
	if !slices.Contains(modules, MobileAPI) {
		return nil
	}
	readers := 0
	for _, m := range []string{Ingest, Attest} {
		if slices.Contains(modules, m) {
			readers++
		}
	}
	if readers == 0 {
		return nil
	}
	return record.NewMemo(readers, record.MemoCapacity, record.MemoMaxAge)
}

// Memo is the memo of records /sync checked for the later stages of this
// process (nil when none runs here), for end-to-end tests.
func (a *App) Memo() *record.Memo { return a.memo }

// Modules returns the modules this process runs, in start order.
func (a *App) Modules() []string { return a.order }

// Ready is closed once every module runs.
func (a *App) Ready() <-chan struct{} { return a.ready }

// Routes lists the HTTP routes the modules mounted (for API documents'
// tests); call it after Ready.
func (a *App) Routes() []*echo.Route { return a.server.Echo.Routes() }

// Addr is the HTTP address, once the server module has started.
func (a *App) Addr() string { return a.server.Addr() }

// FabricDevnetAddr is the in-process devnet's gRPC address, or "" when
// anchoring on an external network.
func (a *App) FabricDevnetAddr() string {
	if a.devnet == nil {
		return ""
	}
	return a.devnet.Addr()
}

// PprofAddr is where -debug.pprof serves Go profiles once Run started, or
// "" when it is off.
func (a *App) PprofAddr() string {
	if a.pprof == nil {
		return ""
	}
	return a.pprof.Addr()
}

// Journal is the ledger module's journal (nil without it), for end-to-end
// tests that append exactly as a service in this process would.
func (a *App) Journal() *ledger.Journal { return a.journal }

// started is a module whose Run is in progress.
type started struct {
	name   string
	svc    Service
	cancel context.CancelFunc
	done   chan error
}

// Run starts every module in dependency order, serves until ctx is done or
// a module fails, then stops them in reverse order. It returns nil after a
// requested shutdown and the failure otherwise.
func (a *App) Run(ctx context.Context) error {
	var (
		running  []*started
		failures = make(chan error, len(a.order))
	)
	stopAll := func() error {
		a.server.SetReady(false)
		// Stop taking requests at the edge first, so no request reaches a
		// module that is already stopping.
		var errs []error
		if err := a.server.Shutdown(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		for i := len(running) - 1; i >= 0; i-- {
			if err := a.stop(running[i]); err != nil {
				errs = append(errs, err)
			}
		}
		if a.pprof != nil {
			a.pprof.stop()
		}
		return errors.Join(errs...)
	}

	// Profiles first, so that a slow or stuck start can be looked at too.
	if a.cfg.Debug.PprofAddr != "" {
		p, err := startPprof(a.cfg.Debug, a.logger.With("module", "debug"))
		if err != nil {
			return err
		}
		a.pprof = p
	}

	for _, name := range a.order {
		m := modules[name]
		if m.init == nil {
			continue // an aggregate such as all
		}
		logger := a.logger.With("module", name)
		svc, err := m.init(a)
		if err != nil {
			return errors.Join(fmt.Errorf("module %s: %w", name, err), stopAll())
		}
		if svc == nil {
			continue
		}
		if err := svc.Start(ctx); err != nil {
			return errors.Join(fmt.Errorf("module %s: %w", name, err), stopAll())
		}
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		s := &started{name: name, svc: svc, cancel: cancel, done: make(chan error, 1)}
		go func() {
			err := svc.Run(runCtx)
			if err == nil && runCtx.Err() == nil {
				err = errors.New("stopped unexpectedly")
			}
			if err != nil && runCtx.Err() == nil {
				failures <- fmt.Errorf("module %s: %w", name, err)
			}
			s.done <- err
		}()
		running = append(running, s)
		logger.DebugContext(ctx, "module started")
	}

	a.server.Open()
	a.server.SetReady(true)
	close(a.ready)
	a.logger.InfoContext(ctx, "tani is up", "modules", a.order, "http", "http://"+a.server.Addr())

	var failure error
	select {
	case <-ctx.Done():
		a.logger.Info("shutting down")
	case failure = <-failures:
		a.logger.Error("module failed; shutting down", "err", failure)
	}
	return errors.Join(failure, stopAll())
}

// stop ends a module's Run and then calls its Stop, each bounded in time.
func (a *App) stop(s *started) error {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		return fmt.Errorf("module %s: did not finish within %s", s.name, stopTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := s.svc.Stop(ctx); err != nil {
		return fmt.Errorf("stop module %s: %w", s.name, err)
	}
	a.logger.Debug("module stopped", "module", s.name)
	return nil
}
