package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/debug"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/postgres"
)

// ParseUp parses `tani up` arguments and environment into a Config, exactly
// as the binary does; end-to-end tests use it to boot the same way.
func ParseUp(args []string, stderr io.Writer, env Env) (app.Config, error) {
	cfg, _, err := parseUp(args, stderr, env)
	return cfg, err
}

func parseUp(args []string, stderr io.Writer, env Env) (app.Config, *flag.FlagSet, error) {
	var cfg app.Config
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := parse(fs, args, stderr, env); err != nil {
		return cfg, fs, err
	}
	if fs.NArg() > 0 {
		return cfg, fs, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, fs, nil
}

// gcPercent is the garbage collector's target when GOGC is not set: the
// heap may grow to three times what is live before a collection, instead
// of twice. Tani's live heap is small (tens of MB: the record memo, the
// JetStream buffers) and every record allocates while it is checked,
// published and stored, so at 100 the collector took 10-15 % of the CPU
// under load; at 200 it takes half that, for a peak heap a third larger.
// GOGC (and GOMEMLIMIT) in the environment win.
const gcPercent = 200

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	cfg, fs, err := parseUp(args, stderr, env)
	if err != nil {
		return err
	}
	if env("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	logger, err := cfg.Log.NewLogger(stderr)
	if err != nil {
		return err
	}
	logEffectiveConfig(logger, fs)
	a, err := app.New(cfg, logger)
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-a.Ready():
			base := "http://" + a.Addr()
			token := "-auth.operator-token"
			switch {
			case cfg.Auth.OperatorTokenFile != "":
				token = cfg.Auth.OperatorTokenFile
			case cfg.Auth.OperatorToken == "":
				token = filepath.Join(cfg.DataDir, auth.OperatorTokenKind.File)
			}
			fmt.Fprintf(stdout, "Tani is up (modules: %v)\n  ready:   %s/readyz\n  metrics: %s/metrics\n  mobile:  %s/mobile/v1/openapi.json\n  ledger:  %s/ledger/v1/checkpoint\n  admin:   %s/admin/v1 (operator token in %s)\n",
				a.Modules(), base, base, base, base, base, token)
		case <-ctx.Done():
		}
	}()
	return a.Run(ctx)
}

// logEffectiveConfig logs every setting once at start, secrets masked.
func logEffectiveConfig(logger *slog.Logger, fs *flag.FlagSet) {
	var attrs []any
	fs.VisitAll(func(f *flag.Flag) { attrs = append(attrs, f.Name, app.LoggableValue(f.Name, f.Value.String())) })
	logger.Info("effective configuration", attrs...)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	var cfg postgres.Config
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := parse(fs, args, stderr, env); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	pool, err := postgres.Open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool, logger, app.Migrations()...); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "migrations applied to", cfg.Redacted())
	return nil
}
