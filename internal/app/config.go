package app

import (
	"flag"
	"strings"

	"github.com/tani-platform/tani/internal/consent"

	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/vouchers"

	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/pii"

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

// Config is the whole configuration of a Tani process. Every component
// registers its own flags with its prefix.
type Config struct {
	Target  string
	DataDir string
	Log     LogConfig
	Demo    DemoConfig
	Debug   DebugConfig

	Auth     auth.Config
	PII      pii.Config
	HTTP     httpserver.Config
	Postgres postgres.Config
	NATS     natsbus.Config
	Ledger   ledger.Config
	Fabric   fabric.Config
	// FabricDevnet is the in-process devnet used when Fabric.Endpoint is empty.
	FabricDevnet FabricDevnetConfig
	Anchor       anchor.Config
	Vouchers     vouchers.Config
	Ingest       ingest.Config
	Attest       attest.Config
	MobileAPI    mobileapi.Config
	Media        media.Config
	Erasure      erasure.Config
	Identity     identity.Config
	Consent      consent.Config
	Lending      lending.Config
	Marketplace  marketplace.Config
	Events       events.Config
	Webhooks     webhooks.Config
}

// RegisterFlags registers every flag of every component.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Target, "target", All, "comma-separated modules to run: "+strings.Join(ModuleNames(), ", "))
	fs.StringVar(&c.DataDir, "data-dir", "./var", "directory for local state (embedded NATS store, keys)")
	c.Log.RegisterFlags(fs)
	c.Demo.RegisterFlags(fs)
	c.Debug.RegisterFlags(fs)
	c.Auth.RegisterFlags(fs)
	c.PII.RegisterFlags(fs)
	c.HTTP.RegisterFlags(fs)
	c.Postgres.RegisterFlags(fs)
	c.NATS.RegisterFlags(fs)
	c.Ledger.RegisterFlags(fs)
	c.Fabric.RegisterFlags(fs, "fabric.")
	c.FabricDevnet.RegisterFlags(fs)
	c.Anchor.RegisterFlags(fs, "anchor.")
	c.Vouchers.RegisterFlags(fs, "vouchers.")
	c.Ingest.RegisterFlags(fs, "ingest.")
	c.Attest.RegisterFlags(fs, "attest.")
	c.MobileAPI.RegisterFlags(fs, "mobile.")
	c.Media.RegisterFlags(fs, "media.")
	c.Erasure.RegisterFlags(fs, "erasure.")
	c.Lending.RegisterFlags(fs, "lending.")
	c.Identity.RegisterFlags(fs, "identity.")
	c.Marketplace.RegisterFlags(fs, "marketplace.")
	c.Consent.RegisterFlags(fs, "consent.")
	c.Events.RegisterFlags(fs, "events.")
	c.Webhooks.RegisterFlags(fs, "webhooks.")
}

// Targets returns the requested targets.
func (c Config) Targets() []string {
	var out []string
	for _, t := range strings.Split(c.Target, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// secretFlags names flags whose values are masked when the effective
// configuration is logged; URLs are logged with their password redacted.
var secretFlags = map[string]func(string) string{
	"database.url":      postgres.Redact,
	"database.read-url": postgres.Redact,
	"nats.url":          func(v string) string { return natsbus.Config{URL: v}.Redacted() },
}

// LoggableValue returns a flag's value as it may appear in logs.
func LoggableValue(name, value string) string {
	if mask, ok := secretFlags[name]; ok {
		return mask(value)
	}
	for _, word := range []string{"secret", "password", "token", "key"} {
		if strings.Contains(name, word) && value != "" && !strings.HasSuffix(name, "-file") {
			return "****"
		}
	}
	return value
}

// Migrations lists every schema in the order the postgres module and
// `tani migrate` apply them: the platform's first, then each module's as
// the module table declares it, in migrationOrder.
func Migrations() []postgres.Migrations {
	out := []postgres.Migrations{postgres.Platform}
	for _, name := range migrationOrder {
		out = append(out, modules[name].migrations...)
	}
	return out
}
