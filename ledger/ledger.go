package ledger

import (
	"embed"

	"github.com/tani-platform/tani/internal/postgres"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations creates the ledger schema and its tables.
var Migrations = postgres.Migrations{Name: "ledger", FS: postgres.MustSub(migrationsFS, "migrations")}
