package app

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"

	"github.com/tani-platform/tani/internal/apperr"

	"github.com/tani-platform/tani/internal/deadletter"

	"github.com/tani-platform/tani/ledger"

	"github.com/nats-io/nats.go"

	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/postgres"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/mobile-api/media"
	"github.com/tani-platform/tani/services/attest"
	"github.com/tani-platform/tani/services/erasure"
	"github.com/tani-platform/tani/services/ingest"
	"github.com/tani-platform/tani/services/lending"
	"github.com/tani-platform/tani/services/marketplace"
	"github.com/tani-platform/tani/services/webhooks"
)

func (a *App) initServer() (Service, error) {
	return funcService{
		start: a.server.Listen,
		run: func(ctx context.Context) error {
			if err := a.server.Serve(); err != nil {
				return err
			}
			<-ctx.Done() // Serve returned because stopAll shut the server down
			return nil
		},
	}, nil
}

func (a *App) initPostgres() (Service, error) {
	logger := a.logger.With("module", Postgres)
	return funcService{
		start: func(ctx context.Context) error {
			cfg := a.cfg.Postgres
			// Ingest maps plots: its first area on a connection would set
			// up PostGIS's spheroid inside a batch's transaction.
			cfg.PrimeGeography = slices.Contains(a.order, Ingest)
			pool, err := postgres.Open(ctx, cfg, logger)
			if err != nil {
				return err
			}
			// Every schema, whatever the targets: services read each other's
			// public views, so a split process must not depend on another
			// having migrated first. Idempotent and serialized by goose's lock.
			if err := postgres.Migrate(ctx, pool, logger, a.migrations...); err != nil {
				pool.Close()
				return err
			}
			a.pool = pool
			// Keys loaded by modules that started before the database.
			if err := a.checkKeys(ctx); err != nil {
				a.pool = nil
				pool.Close()
				return err
			}
			return nil
		},
		stop: func(context.Context) error {
			a.pool.Close()
			return nil
		},
	}, nil
}

func (a *App) initNATSServer() (Service, error) {
	if a.cfg.NATS.URL != "" {
		return nil, nil // an external cluster: nothing to run here
	}
	logger := a.logger.With("module", NATSServer)
	piiKeys, err := a.piiKeys()
	if err != nil {
		return nil, err
	}
	return funcService{
		start: func(context.Context) error {
			s, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{
				DataDir: a.cfg.DataDir, Listen: a.cfg.NATS.EmbeddedListen,
				StoreKey: hex.EncodeToString(piiKeys.Derive("jetstream-store")),
			}, logger)
			if err != nil {
				return err
			}
			a.natsServer = s
			return nil
		},
		stop: func(context.Context) error {
			a.natsServer.Shutdown()
			a.natsServer.WaitForShutdown()
			return nil
		},
	}, nil
}

func (a *App) initNATS() (Service, error) {
	if err := a.cfg.NATS.Validate(); err != nil {
		return nil, err
	}
	logger := a.logger.With("module", NATS)
	piiKeys, err := a.piiKeys()
	if err != nil {
		return nil, err
	}
	return funcService{
		start: func(ctx context.Context) error {
			nc, js, err := natsbus.Connect(a.cfg.NATS, a.natsServer, "tani "+a.cfg.Target, logger)
			if err != nil {
				return err
			}
			if err := natsbus.EnsureStreams(ctx, js, a.cfg.NATS.Replicas); err != nil {
				nc.Close()
				return err
			}
			a.nc, a.js = nc, js
			admin, err := a.adminGroup()
			if err != nil {
				return err
			}
			deadletter.New(js, piiKeys, logger).Routes(admin)
			return nil
		},
		stop: func(ctx context.Context) error {
			// Drain flushes pending acks before closing. If the broker is
			// unreachable there is nothing to flush to; nothing acknowledged
			// depends on it (clients were answered only after JetStream acks).
			closed := make(chan struct{})
			a.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
			if err := a.nc.Drain(); err != nil {
				logger.Warn("nats unreachable at shutdown; closing without draining", "err", err)
				a.nc.Close()
				return nil
			}
			select {
			case <-closed:
			case <-ctx.Done():
				a.nc.Close()
				return fmt.Errorf("drain nats: %w", ctx.Err())
			}
			return nil
		},
	}, nil
}

func (a *App) initIngest() (Service, error) {
	piiKeys, err := a.piiKeys()
	if err != nil {
		return nil, err
	}
	return ingest.New(a.cfg.Ingest, ingest.Deps{
		Pool: a.pool, JS: a.js, PII: piiKeys, Logger: a.logger.With("module", Ingest), Consumer: a.consumer, Memo: a.memo,
	})
}

// mediaPath is where agents upload media through tus.
const mediaPath = "/mobile/v1/media"

func (a *App) initMobileAPI() (Service, error) {
	authKeys, err := a.authKeys()
	if err != nil {
		return nil, err
	}
	piiKeys, err := a.piiKeys()
	if err != nil {
		return nil, err
	}
	admin, err := a.adminGroup()
	if err != nil {
		return nil, err
	}
	logger := a.logger.With("module", MobileAPI)
	med, err := media.New(a.cfg.Media.InDataDir(a.cfg.DataDir), media.Deps{
		Pool: a.pool, Logger: logger.With("component", "media"), BasePath: mediaPath + "/",
	})
	if err != nil {
		return nil, err
	}
	// Failed agent logins count per client address as identity finds it
	// (behind -identity.trusted-proxies, the client they name).
	var clientAddress func(*http.Request) string
	if dir := a.operatorDirectory(); dir != nil {
		clientAddress = dir.ClientAddress
	}
	svc, err := mobileapi.New(a.cfg.MobileAPI, mobileapi.Deps{
		Pool: a.pool, JS: a.js, Auth: authKeys, PII: piiKeys, SMS: mobileapi.LogSMS{Logger: logger}, Logger: logger,
		Media: med, Consumer: a.consumer, Registry: a.registry, Memo: a.memo, ClientAddress: clientAddress,
	})
	if err != nil {
		return nil, err
	}
	svc.Routes(httpserver.Router{Public: a.server.Echo.Group("/mobile/v1"), Admin: admin})
	// Media bytes may exceed the JSON body limit (tusd enforces
	// -media.max-size itself).
	a.server.ExemptFromBodyLimit(mediaPath)
	med.Routes(httpserver.Router{Public: a.server.Echo.Group(mediaPath, svc.RequireAgent())})
	return svc, nil // its Start and Run include the media store's
}

func (a *App) initAttest() (Service, error) {
	admin, err := a.adminGroup()
	if err != nil {
		return nil, err
	}
	piiKeys, err := a.piiKeys()
	if err != nil {
		return nil, err
	}
	svc, err := attest.New(a.cfg.Attest, attest.Deps{
		Pool: a.pool, JS: a.js, Journal: a.journal, PII: piiKeys, Logger: a.logger.With("module", Attest),
		Consumer: a.consumer, Registry: a.registry, Memo: a.memo,
	})
	if err != nil {
		return nil, err
	}
	svc.Routes(httpserver.Router{Admin: admin})
	return svc, nil
}

func (a *App) initErasure() (Service, error) {
	admin, err := a.adminGroup()
	if err != nil {
		return nil, err
	}
	svc, err := erasure.New(a.cfg.Erasure, erasure.Deps{Pool: a.pool, JS: a.js, Journal: a.journal, Logger: a.logger.With("module", Erasure)})
	if err != nil {
		return nil, err
	}
	svc.Routes(httpserver.Router{Admin: admin})
	return svc, nil
}

func (a *App) initIdentity() (Service, error) {
	admin, err := a.adminGroup()
	if err != nil {
		return nil, err
	}
	dir, err := identity.New(a.cfg.Identity, identity.Deps{Pool: a.pool, Logger: a.logger.With("module", Identity)})
	if err != nil {
		return nil, err
	}
	a.setDirectory(dir)
	// The organizations' APIs, shared by the modules that mount routes on
	// them: every route is authenticated as that kind of organization (an
	// API key, or a portal user's session cookie with its CSRF token).
	a.bankAPI = a.server.Echo.Group("/bank/v1", dir.Require(identity.Bank))
	a.distributorAPI = a.server.Echo.Group("/distributor/v1", dir.Require(identity.Distributor))
	dir.Routes(httpserver.Router{Admin: admin, Bank: a.bankAPI, Distributor: a.distributorAPI})
	// Signing in: portal users with a cookie (the marketplace owns the
	// portal's pages and draws the form in their look),
	// operators with a bearer token (outside the guarded admin group).
	dir.MountSignIn(a.server.Echo.Group("/portal"), marketplace.SignInPage)
	a.server.Echo.POST("/admin/v1/auth/login", dir.OperatorSignIn)
	return dir, nil
}

// initEvents runs the outbox relay (internal/events): every process
// running the module tries each pass, one publishes.
func (a *App) initEvents() (Service, error) {
	return events.NewRelay(a.cfg.Events, events.Deps{Pool: a.pool, JS: a.js, Logger: a.logger.With("module", Events), Registry: a.registry})
}

func (a *App) initWebhooks() (Service, error) {
	admin, err := a.adminGroup()
	if err != nil {
		return nil, err
	}
	piiKeys, err := a.piiKeys()
	if err != nil {
		return nil, err
	}
	roots, err := webhooks.RootCAs(a.cfg.Webhooks.ExtraCAFile)
	if err != nil {
		return nil, err
	}
	svc, err := webhooks.New(a.cfg.Webhooks, webhooks.Deps{
		Pool: a.pool, JS: a.js, Gate: a.gate, PII: piiKeys, Logger: a.logger.With("module", Webhooks),
		Consumer: a.consumer, Registry: a.registry, Retention: a.cfg.Events.Retention, RootCAs: roots,
	})
	if err != nil {
		return nil, err
	}
	svc.Routes(httpserver.Router{Bank: a.bankAPI, Distributor: a.distributorAPI, Admin: admin})
	a.webhooks = svc
	return svc, nil
}

// initConsent provides the consent gate; it has nothing to run.
func (a *App) initConsent() (Service, error) {
	a.gate = consent.NewGate(a.pool).WithDurableLog(a.cfg.Consent.DurableAccessLog)
	return nil, nil
}

func (a *App) initConsents() (Service, error) {
	admin, err := a.adminGroup()
	if err != nil {
		return nil, err
	}
	svc, err := consent.New(a.cfg.Consent, consent.Deps{Pool: a.pool, Journal: a.journal, Logger: a.logger.With("module", Consents),
		JS: a.js, Consumer: a.consumer})
	if err != nil {
		return nil, err
	}
	svc.Routes(httpserver.Router{Admin: admin, Bank: a.bankAPI, Distributor: a.distributorAPI})
	return svc, nil
}

func (a *App) initLending() (Service, error) {
	admin, err := a.adminGroup()
	if err != nil {
		return nil, err
	}
	// The banks' API document: lending's, with identity's, consent's and
	// the webhooks' routes and the event catalogue banks may subscribe to.
	doc, err := organizationDocument(lending.OpenAPI(), webhooks.BankPrefix, identity.Bank)
	if err != nil {
		return nil, err
	}
	deps := lending.Deps{
		Pool: a.pool, ReadPool: a.readPool, Gate: a.gate, Journal: a.journal, JS: a.js, Consumer: a.consumer,
		Logger: a.logger.With("module", Lending), Document: doc,
	}
	if a.vouchers != nil {
		// Input vouchers are issued as the banks' MSP; the chain records
		// the Tani organization of the bank inside it.
		cv := lending.ChainVouchers{Client: a.vouchers, MSPID: a.cfg.Lending.BankMSP}
		deps.Vouchers, deps.Settler = cv, cv
	}
	svc, err := lending.New(a.cfg.Lending, deps)
	if err != nil {
		return nil, err
	}
	// The OpenAPI document is public (Public has no key check); every
	// other route is a bank's.
	svc.Routes(httpserver.Router{Bank: a.bankAPI, Public: a.server.Echo.Group("/bank/v1"), Admin: admin})
	return svc, nil
}

func (a *App) initMarketplace() (Service, error) {
	dir := a.operatorDirectory()
	if dir == nil {
		return nil, errors.New("marketplace: no identity directory for the portal's sessions")
	}
	// The distributors' API document: the marketplace's, with identity's,
	// consent's and the webhooks' routes and the event catalogue.
	doc, err := organizationDocument(marketplace.OpenAPI(), webhooks.DistributorPrefix, identity.Distributor)
	if err != nil {
		return nil, err
	}
	deps := marketplace.Deps{
		Pool: a.pool, ReadPool: a.readPool, Gate: a.gate, Journal: a.journal, JS: a.js, Consumer: a.consumer,
		Logger: a.logger.With("module", Marketplace), Document: doc,
		Portal: &marketplace.PortalAuth{Require: dir.RequireSession(identity.Distributor), CSRFToken: identity.CSRFToken, SignOutPath: "/portal/sign-out"},
	}
	if a.webhooks != nil {
		// The portal's webhooks pages call the webhooks module's Go API
		// through the root's adapter (services share no code); the module
		// is initialized first: marketplace depends on it.
		deps.Webhooks = PortalWebhooks(a.webhooks)
	}
	if a.vouchers != nil {
		// Redemptions act as the distributors' MSP; the chain records
		// the Tani organization inside it.
		deps.Vouchers = marketplace.ChainVouchers{Client: a.vouchers, MSPID: a.cfg.Marketplace.DistributorMSP}
	}
	svc, err := marketplace.New(a.cfg.Marketplace, deps)
	if err != nil {
		return nil, err
	}
	svc.Routes(httpserver.Router{Distributor: a.distributorAPI, Public: a.server.Echo.Group("/distributor/v1"), Portal: a.server.Echo.Group("/portal")})
	return svc, nil
}

func (a *App) initLedger() (Service, error) {
	cfg, err := a.ledgerConfig()
	if err != nil {
		return nil, err
	}
	logger := a.logger.With("module", Ledger)
	j, err := ledger.New(cfg, a.pool, logger)
	if err != nil {
		return nil, err
	}
	readPayload, err := a.ledgerPayloadReaders()
	if err != nil {
		return nil, err
	}
	j.Routes(a.server.Echo.Group("/ledger/v1"), readPayload)
	// attest decides what is journaled, so it explains a record the
	// journal has no entry for (its schema is in every database).
	j.ExplainUnjournaled(func(ctx context.Context, recordID string) (string, error) {
		return attest.NotJournaledReason(ctx, a.pool, recordID)
	})
	if err := j.RegisterMetrics(a.registry); err != nil {
		return nil, err
	}
	if err := a.registry.Register(ledger.StateCollector(a.pool)); err != nil {
		return nil, err
	}
	// A journal that found a fork keeps running (so that it can say why)
	// but must get no traffic.
	a.server.AddReadinessCheck(Ledger, func() error {
		if e, ok := apperr.As(j.Halted()); ok {
			return errors.New(e.Message)
		}
		return nil
	})
	a.journal = j
	return funcService{
		start: func(ctx context.Context) error {
			if err := j.Start(ctx); err != nil {
				return err
			}
			return a.checkKey(ctx, keyID{ledger.SignerKeyKind(cfg.Origin).Name, j.VerifierKey()})
		},
		run: j.Run,
	}, nil
}
