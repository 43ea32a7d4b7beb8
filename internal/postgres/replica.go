package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// OpenReadOnly opens a pool on the read replica at rawURL. Its sessions
// are read-only (default_transaction_read_only), so a write sent there by
// mistake fails loudly even if the URL names a primary. It neither creates
// the database nor migrates: the primary does, and the replica follows.
func OpenReadOnly(ctx context.Context, rawURL string, maxConns int) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse read database URL %s: %w", Redact(rawURL), err)
	}
	if maxConns > 0 {
		pcfg.MaxConns = int32(maxConns)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if pcfg.PingTimeout == 0 {
		pcfg.PingTimeout = pingTimeout
	}
	pcfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open read pool for %s: %w", Redact(rawURL), err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("read replica at %s is unreachable: %w", Redact(rawURL), err)
	}
	return pool, nil
}

// ReplicaMonitor measures how far the read replica behind -database.read-url
// trails the primary, for the metrics and the alert on replica lag. Reads
// served from the replica are that stale; reads that must see what a
// client was just told (a receipt, a record's status, a consent check)
// never go there.
type ReplicaMonitor struct {
	primary, replica *pgxpool.Pool
	interval         time.Duration
	logger           *slog.Logger

	up      prometheus.Gauge
	seconds prometheus.Gauge
	bytes   prometheus.Gauge
	lastErr string
}

// NewReplicaMonitor registers the replica metrics on reg:
// tani_postgres_replica_up, tani_postgres_replica_lag_seconds and
// tani_postgres_replica_lag_bytes.
func NewReplicaMonitor(primary, replica *pgxpool.Pool, interval time.Duration, reg prometheus.Registerer, logger *slog.Logger) (*ReplicaMonitor, error) {
	m := &ReplicaMonitor{
		primary: primary, replica: replica, interval: interval, logger: logger,
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tani_postgres_replica_up",
			Help: "1 while the read replica (-database.read-url) answers as a server in recovery, 0 otherwise.",
		}),
		seconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tani_postgres_replica_lag_seconds",
			Help: "How long ago the read replica replayed the last transaction it has received, 0 when it has replayed everything it received: how stale its reads are.",
		}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tani_postgres_replica_lag_bytes",
			Help: "WAL bytes the primary has written that the read replica has not replayed yet.",
		}),
	}
	for _, c := range []prometheus.Collector{m.up, m.seconds, m.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register replica metrics: %w", err)
		}
	}
	return m, nil
}

// Lag is one measurement.
type Lag struct {
	Seconds float64
	Bytes   float64
}

// Measure asks both servers once. A replica that is not in recovery (a
// read URL pointing at a primary, or a promoted replica) is an error: its
// reads no longer follow the primary's writes.
func (m *ReplicaMonitor) Measure(ctx context.Context) (Lag, error) {
	var lag Lag
	var inRecovery bool
	var replayed string
	// When everything received is replayed the replica is as fresh as the
	// primary has let it be; otherwise the age of the last replayed
	// transaction is how stale it is.
	err := m.replica.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		coalesce(pg_last_wal_replay_lsn()::text, '0/0'),
		CASE WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
		     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END`).Scan(&inRecovery, &replayed, &lag.Seconds)
	if err != nil {
		return Lag{}, fmt.Errorf("read replica: %w", err)
	}
	if !inRecovery {
		return Lag{}, fmt.Errorf("the read replica is not in recovery: -database.read-url names a primary")
	}
	if err := m.primary.QueryRow(ctx, `SELECT greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn), 0)`, replayed).Scan(&lag.Bytes); err != nil {
		return Lag{}, fmt.Errorf("primary's WAL position: %w", err)
	}
	return lag, nil
}

// Run measures every interval until ctx ends. A failed measurement sets
// tani_postgres_replica_up to 0 and is logged when it first happens.
func (m *ReplicaMonitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.measure(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *ReplicaMonitor) measure(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, m.interval)
	defer cancel()
	lag, err := m.Measure(mctx)
	if err != nil {
		m.up.Set(0)
		if ctx.Err() == nil && err.Error() != m.lastErr {
			m.logger.WarnContext(ctx, "cannot measure the read replica's lag", "err", err)
		}
		m.lastErr = err.Error()
		return
	}
	if m.lastErr != "" {
		m.logger.InfoContext(ctx, "read replica measured again", "lag_seconds", lag.Seconds, "lag_bytes", lag.Bytes)
	}
	m.lastErr = ""
	m.up.Set(1)
	m.seconds.Set(lag.Seconds)
	m.bytes.Set(lag.Bytes)
}
