package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/app/loadgen"
	"github.com/tani-platform/tani/internal/postgres"
)

// parseLoad parses `tani load` arguments and environment and resolves the
// operator token (flag first, then the token file `tani up` generated).
func parseLoad(args []string, stderr io.Writer, env Env) (loadgen.Config, error) {
	cfg, _, err := parseLoadRatio(args, stderr, env)
	return cfg, err
}

// parseLoadRatio is parseLoad that also returns the -ratio settings. With
// -ratio, the URL and operator token are those of the processes the bench
// starts, so only the load's own settings are checked.
func parseLoadRatio(args []string, stderr io.Writer, env Env) (loadgen.Config, ratioConfig, error) {
	var cfg loadgen.Config
	var rc ratioConfig
	var tokenFile string
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	rc.RegisterFlags(fs)
	fs.StringVar(&cfg.OperatorToken, "operator-token", "", "operator bearer token for /admin/v1; empty reads -operator-token-file")
	fs.StringVar(&tokenFile, "operator-token-file", "./var/operator-token", "file holding the operator token (tani up writes <data-dir>/operator-token)")
	if err := parse(fs, args, stderr, env); err != nil {
		return cfg, rc, err
	}
	if fs.NArg() > 0 {
		return cfg, rc, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if rc.Enabled {
		warmupSet := false
		fs.Visit(func(f *flag.Flag) { warmupSet = warmupSet || f.Name == "warmup" })
		if !warmupSet {
			cfg.Warmup = ratioWarmup
		}
		check := cfg
		check.URL, check.OperatorToken = "http://started.by.the.bench", "set by the bench"
		if _, err := rc.selected(); err != nil {
			return cfg, rc, errors.Join(err, check.Validate())
		}
		return cfg, rc, check.Validate()
	}
	if cfg.OperatorToken == "" && tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return cfg, rc, fmt.Errorf("read operator token: %w", err)
		}
		cfg.OperatorToken = strings.TrimSpace(string(b))
	}
	return cfg, rc, cfg.Validate()
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	cfg, rc, err := parseLoadRatio(args, stderr, env)
	if err != nil {
		return err
	}
	if rc.Enabled {
		return runRatio(ctx, cfg, rc, stdout, stderr)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	var report loadgen.Report
	if cfg.DatabaseURL == "" {
		report, err = loadgen.Run(ctx, cfg, nil, logger)
	} else {
		// Not postgres.Open: a mistyped database must fail here, not be
		// created empty and waited on.
		pool, perr := pgxpool.New(ctx, cfg.DatabaseURL)
		if perr != nil {
			return fmt.Errorf("database %s: %w", postgres.Redact(cfg.DatabaseURL), perr)
		}
		defer pool.Close()
		if perr := pool.Ping(ctx); perr != nil {
			return fmt.Errorf("database %s: %w", postgres.Redact(cfg.DatabaseURL), perr)
		}
		report, err = loadgen.Run(ctx, cfg, pool, logger)
	}
	if err != nil {
		return err
	}
	report.Write(stdout)
	return report.Err()
}
