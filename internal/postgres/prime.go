package postgres

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5"
)

// primeGeography computes one small geography's area on a new connection
// when PostGIS is installed. The first spheroidal area a backend computes
// sets up the WGS 84 spheroid (PostGIS asks PROJ, which reads its own
// database): 25–40 ms of the server's CPU, once per backend. Paid as the
// connection opens, it no longer lands in the first ingest transaction
// that maps a plot on that connection, with the batch's rows locked
// (docs/performance.md, "ninth session"). The functions are named in
// PostGIS's own schema, wherever it was installed; a database without
// PostGIS (before the platform migration) skips it.
const primeGeography = `DO $$
DECLARE
    postgis text;
BEGIN
    SELECT extnamespace::regnamespace::text INTO postgis FROM pg_extension WHERE extname = 'postgis';
    IF FOUND THEN
        EXECUTE format('SELECT %1$s.ST_Area(%1$s.ST_GeogFromText(%2$L))', postgis,
                       'SRID=4326;POLYGON((0 0, 0.001 0, 0.001 0.001, 0 0.001, 0 0))');
    END IF;
END $$`

// primer returns the pool's AfterConnect. A failure is logged and the
// connection kept: it serves everything but spheroidal areas as well as
// before, and the statement that needs one reports its own error.
func primer(logger *slog.Logger) func(context.Context, *pgx.Conn) error {
	return func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, primeGeography); err != nil {
			logger.WarnContext(ctx, "could not prime the connection's PostGIS spheroid; the first plot it maps will", "err", err)
		}
		return nil
	}
}
