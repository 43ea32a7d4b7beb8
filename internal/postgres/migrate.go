package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Migrations is one owner's embedded SQL migrations (goose format). Each
// owner keeps its own version table, so services migrate independently.
type Migrations struct {
	Name string // owner, e.g. "ingest"; names the version table goose_<name>
	FS   fs.FS  // *.sql files at its root
}

//go:embed migrations/*.sql
var platformFS embed.FS

// Platform is the migration set every Tani database needs first (PostGIS
// and the other extensions services rely on).
var Platform = Migrations{Name: "platform", FS: mustSub(platformFS, "migrations")}

// MustSub returns the subtree of an embedded FS, for declaring Migrations.
func MustSub(fsys fs.FS, dir string) fs.FS { return mustSub(fsys, dir) }

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(fmt.Sprintf("embedded migrations %q: %v", dir, err))
	}
	return sub
}

// Migrate applies every pending migration of the given sets, in order, under
// a session lock so that several processes starting together do not race.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, sets ...Migrations) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	for _, set := range sets {
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		p, err := goose.NewProvider(goose.DialectPostgres, db, set.FS,
			goose.WithTableName("goose_"+set.Name),
			goose.WithSessionLocker(locker),
			goose.WithDisableGlobalRegistry(true),
		)
		if err != nil {
			return fmt.Errorf("migrations %s: %w", set.Name, err)
		}
		results, err := p.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", set.Name, err)
		}
		for _, r := range results {
			logger.InfoContext(ctx, "applied migration", "set", set.Name, "version", r.Source.Version, "duration", r.Duration)
		}
	}
	return nil
}
