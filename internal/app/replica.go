package app

import (
	"context"
	"time"

	"github.com/tani-platform/tani/internal/postgres"
)

// replicaLagInterval is how often the read replica's lag is measured.
const replicaLagInterval = 5 * time.Second

// initPostgresRead provides the pool for reads that may trail the primary
// (lending and marketplace listings): a read-only pool on the replica of
// -database.read-url, whose lag it measures and exports, or the primary's
// pool itself when none is configured.
func (a *App) initPostgresRead() (Service, error) {
	if a.cfg.Postgres.ReadURL == "" {
		a.readPool = a.pool
		return nil, nil
	}
	logger := a.logger.With("module", PostgresRead)
	var monitor *postgres.ReplicaMonitor
	return funcService{
		start: func(ctx context.Context) error {
			pool, err := postgres.OpenReadOnly(ctx, a.cfg.Postgres.ReadURL, a.cfg.Postgres.MaxConns)
			if err != nil {
				return err
			}
			if monitor, err = postgres.NewReplicaMonitor(a.pool, pool, replicaLagInterval, a.registry, logger); err != nil {
				pool.Close()
				return err
			}
			a.readPool = pool
			return nil
		},
		run: func(ctx context.Context) error { return monitor.Run(ctx) },
		stop: func(context.Context) error {
			a.readPool.Close()
			return nil
		},
	}, nil
}
