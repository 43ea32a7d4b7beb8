// Package postgres opens Tani's connection pool and applies each service's
// embedded SQL migrations. It creates the database when it is missing so a
// fresh machine needs no manual step. It must never hold domain logic: every
// service owns its own schema and migrations.
package postgres
