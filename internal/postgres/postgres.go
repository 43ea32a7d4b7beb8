package postgres

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is the local development database.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/tani?sslmode=disable"

// Config says where the database is and how many connections to keep.
type Config struct {
	URL      string
	MaxConns int
	// ReadURL names a streaming replica for reads that may trail the
	// primary by the replica's lag (bank and portal listings, reports);
	// empty sends every read to the primary.
	ReadURL string
	// PrimeGeography has every new connection set up PostGIS's spheroid
	// as it opens (see primeGeography): for processes that map plots.
	// Set by the composition root, not a flag.
	PrimeGeography bool
}

// RegisterFlags registers the database flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "database.url", DefaultURL, "PostgreSQL URL; the database is created if missing. Several hosts with target_session_attrs=read-write (postgres://u@h1:5432,h2:5432/tani?target_session_attrs=read-write) follow a failover to whichever is primary")
	fs.IntVar(&c.MaxConns, "database.max-conns", 16, "maximum open connections in the pool (and in the read pool)")
	fs.StringVar(&c.ReadURL, "database.read-url", "", "PostgreSQL URL of a streaming replica for reads that tolerate its lag (bank and portal listings); empty reads from the primary. Receipts, statuses and consent checks always read the primary")
}

// Redacted returns the URL with its password masked, for logs and errors.
func (c Config) Redacted() string { return Redact(c.URL) }

// Redact masks the password of a PostgreSQL URL.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable database URL)"
	}
	return u.Redacted()
}

// Open connects to the database, creating it first if it does not exist,
// and returns a pool that has answered a ping. An unreachable server yields
// one error that names the URL and says what to do.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %w", Redact(cfg.URL), err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = int32(cfg.MaxConns)
	}
	failover := configureFailover(pcfg, logger)
	if cfg.PrimeGeography {
		pcfg.AfterConnect = primer(logger)
	}
	if err := ensureDatabase(ctx, pcfg.ConnConfig, logger); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open pool for %s: %w", Redact(cfg.URL), err)
	}
	failover.pool.Store(pool)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, unreachable(cfg.URL, err)
	}
	return pool, nil
}

// ensureDatabase creates the configured database when the server says it
// does not exist, connecting to the server's "postgres" database to do so.
func ensureDatabase(ctx context.Context, cc *pgx.ConnConfig, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		return conn.Close(ctx)
	}
	if pgCode(err) != "3D000" { // invalid_catalog_name: anything else is a real failure
		return unreachable(cc.ConnString(), err)
	}
	admin := cc.Copy()
	admin.Database = "postgres"
	aconn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return unreachable(cc.ConnString(), err)
	}
	defer aconn.Close(ctx)
	_, err = aconn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cc.Database}.Sanitize())
	if err != nil && pgCode(err) != "42P04" { // duplicate_database: another process won the race
		return fmt.Errorf("create database %q: %w", cc.Database, err)
	}
	logger.InfoContext(ctx, "created database", "database", cc.Database)
	return nil
}

func unreachable(rawURL string, err error) error {
	return fmt.Errorf("postgres at %s is unreachable: %w\n"+
		"  start it (`make setup` installs and starts a local cluster) or point TANI_DATABASE_URL at a running server",
		Redact(rawURL), err)
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
