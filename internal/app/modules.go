package app

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/vouchers"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/services/attest"
	"github.com/tani-platform/tani/services/erasure"
	"github.com/tani-platform/tani/services/ingest"
	"github.com/tani-platform/tani/services/lending"
	"github.com/tani-platform/tani/services/marketplace"
	"github.com/tani-platform/tani/services/webhooks"
)

// Module names. All is an aggregate: it has no service of its own.
const (
	Server   = "server"
	Postgres = "postgres"
	// PostgresRead opens the read replica's pool (-database.read-url).
	PostgresRead = "postgres-read"
	NATSServer   = "nats-server"
	NATS         = "nats"
	Ledger       = "ledger"
	// FabricDevnet runs an in-process Fabric devnet when no external
	// network is configured; Anchor anchors checkpoints on Fabric.
	FabricDevnet = "fabric-devnet"
	Anchor       = "anchor"
	Ingest       = "ingest"
	Attest       = "attest"
	Lending      = "lending"
	Marketplace  = "marketplace"
	MobileAPI    = "mobile-api"
	Demo         = "demo"
	// Identity authenticates banks and distributors; Consent is the one
	// gate in front of farmers' data.
	Identity = "identity"
	Consent  = "consent"
	// Consents serves consent as a resource: banks' and distributors'
	// consent requests and consents, the operators' access log, and
	// journals consent state changes.
	Consents = "consents"
	All      = "all"
)

// Events relays the outbox of events for organizations (internal/events)
// to JetStream.
const Events = "events"

// Webhooks fans events out to organizations' endpoints as Standard
// Webhooks (services/webhooks).
const Webhooks = "webhooks"

// Erasure takes operators' requests to forget a farmer; every owner of
// farmer data (mobile-api, ingest, attest) erases its own.
const Erasure = "erasure"

// Service is a started module. Start returns once the module is ready to
// serve; Run does its work until ctx is done (returning nil) or it fails;
// Stop releases what Start acquired after Run has returned.
type Service interface {
	Start(ctx context.Context) error
	Run(ctx context.Context) error
	Stop(ctx context.Context) error
}

// module is a name, its dependencies and how to wire its service. init runs
// after every dependency has started, so it may use what they provide; it
// returns nil for a module with nothing to run in this configuration.
type module struct {
	deps []string
	init func(a *App) (Service, error)
	// migrations are the module's schemas. Only the postgres module and
	// `tani migrate` apply them, every module's whatever the targets:
	// services read each other's public views.
	migrations []postgres.Migrations
	// unused reports a configuration in which the module has nothing to
	// do, so that the process does not list it as running.
	unused func(cfg Config) bool
}

// modules is the dependency map. Services never import each other: they
// share only Postgres, NATS subjects and HTTP.
var modules = map[string]module{
	Server:       {init: (*App).initServer},
	Postgres:     {init: (*App).initPostgres, migrations: []postgres.Migrations{deploymentMigrations}},
	NATSServer:   {init: (*App).initNATSServer},
	NATS:         {deps: []string{NATSServer}, init: (*App).initNATS},
	Ledger:       {deps: []string{Postgres, Server}, init: (*App).initLedger, migrations: []postgres.Migrations{ledger.Migrations}},
	FabricDevnet: {init: (*App).initFabricDevnet, unused: func(c Config) bool { return c.Fabric.Endpoint != "" }},
	Anchor:       {deps: []string{Ledger, FabricDevnet}, init: (*App).initAnchor},
	Ingest:       {deps: []string{Postgres, NATS, Server}, init: (*App).initIngest, migrations: []postgres.Migrations{ingest.Migrations}},
	Identity:     {deps: []string{Postgres, Server}, init: (*App).initIdentity, migrations: []postgres.Migrations{identity.Migrations}},
	Consent:      {deps: []string{Postgres}, init: (*App).initConsent, migrations: []postgres.Migrations{consent.Migrations}},
	MobileAPI:    {deps: []string{Postgres, NATS, Server, Identity}, init: (*App).initMobileAPI, migrations: []postgres.Migrations{mobileapi.Migrations}},
	Attest:       {deps: []string{Postgres, NATS, Server, Ledger}, init: (*App).initAttest, migrations: []postgres.Migrations{attest.Migrations}},
	PostgresRead: {deps: []string{Postgres}, init: (*App).initPostgresRead},
	Consents:     {deps: []string{Postgres, NATS, Server, Identity, Consent, Ledger}, init: (*App).initConsents},
	Lending:      {deps: []string{Postgres, PostgresRead, NATS, Server, Identity, Consent, Ledger, Vouchers}, init: (*App).initLending, migrations: []postgres.Migrations{lending.Migrations}},
	Marketplace:  {deps: []string{Postgres, PostgresRead, NATS, Server, Ledger, Identity, Consent, Vouchers, Webhooks}, init: (*App).initMarketplace, migrations: []postgres.Migrations{marketplace.Migrations}},
	Demo:         {deps: []string{MobileAPI, Server}, init: (*App).initDemo},
	Erasure:      {deps: []string{Postgres, NATS, Server, Ledger}, init: (*App).initErasure, migrations: []postgres.Migrations{erasure.Migrations}},
	Vouchers:     {deps: []string{Postgres, Server, FabricDevnet}, init: (*App).initVouchers, migrations: []postgres.Migrations{vouchers.Migrations}},
	Events:       {deps: []string{Postgres, NATS}, init: (*App).initEvents, migrations: []postgres.Migrations{events.Migrations}},
	Webhooks:     {deps: []string{Postgres, NATS, Server, Identity, Consent, Events}, init: (*App).initWebhooks, migrations: []postgres.Migrations{webhooks.Migrations}},
	All:          {deps: []string{Ingest, Attest, Lending, Marketplace, Consents, MobileAPI, Ledger, Anchor, Erasure, Vouchers, Events, Webhooks}},
}

// migrationOrder is the order in which modules' schemas are applied (a
// schema may refer to one before it). TestMigrationOrder checks that it
// names every module that declares migrations.
var migrationOrder = []string{Ledger, Identity, MobileAPI, Ingest, Consent, Attest, Erasure, Vouchers, Events, Webhooks, Lending, Marketplace, Postgres}

// ModuleNames lists the modules a target may name.
func ModuleNames() []string {
	names := make([]string, 0, len(modules))
	for n := range modules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// order returns the modules needed for targets, each after its
// dependencies, deterministically.
func order(targets []string) ([]string, error) {
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		m, ok := modules[name]
		if !ok {
			return fmt.Errorf("unknown module %q (modules: %v)", name, ModuleNames())
		}
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %v", append(path, name))
		}
		state[name] = 1
		deps := slices.Clone(m.deps)
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, name)
		return nil
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("no target given")
	}
	for _, t := range targets {
		if err := visit(t, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// withoutUnused drops from ord the modules cfg leaves with nothing to do.
func withoutUnused(ord []string, cfg Config) []string {
	return slices.DeleteFunc(ord, func(n string) bool { u := modules[n].unused; return u != nil && u(cfg) })
}

// funcService adapts plain functions to Service; a nil function does
// nothing (Run then waits for ctx).
type funcService struct {
	start, run, stop func(ctx context.Context) error
}

func (s funcService) Start(ctx context.Context) error {
	if s.start == nil {
		return nil
	}
	return s.start(ctx)
}

func (s funcService) Run(ctx context.Context) error {
	if s.run == nil {
		<-ctx.Done()
		return nil
	}
	return s.run(ctx)
}

func (s funcService) Stop(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	return s.stop(ctx)
}
