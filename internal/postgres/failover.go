package postgres

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Surviving a failover. Tani keeps no session state in Postgres that a new
// primary would lack: the journal's sequencer lock is transaction-scoped,
// nothing LISTENs, and the only session lock (goose's, while migrating) is
// held at start-up. So recovering from a failover is the pool's job:
//
//   - A database URL may name several hosts, with
//     target_session_attrs=read-write, as libpq's do: each new connection
//     goes to whichever host is the primary now.
//   - Idle connections are pinged before use (pgxpool pings one idle for
//     more than a second), so connections to a dead primary are replaced
//     instead of failing a request; a ping gets pingTimeout to answer.
//   - A host that does not answer gets connectTimeout, then the next host
//     is tried (unless the URL sets connect_timeout itself).
//   - A server that says it is read-only or shutting down is no longer the
//     primary for any connection made to it: the whole pool is reset then
//     (idle connections closed, busy ones closed when released), so one
//     such error costs one request, not one per pooled connection.
//
// Work that fails meanwhile fails as any transient error does: consumers
// retry with backoff, HTTP clients get a 5xx and retry, the journal
// forgets its cached tree edge when a commit's outcome is unknown.
//
// What a pool cannot do is make an acknowledged commit survive the
// primary's loss: that takes synchronous replication (see
// docs/ARCHITECTURE.md, "Beyond one machine").
const (
	connectTimeout = 5 * time.Second
	pingTimeout    = 5 * time.Second
)

// SQLSTATEs after which a connection's server is no longer a primary that
// accepts writes.
var notPrimaryCodes = map[string]bool{
	"25006": true, // read_only_sql_transaction: a standby, or a demoted primary
	"57P01": true, // admin_shutdown
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now: starting up or in recovery
}

// IsNotPrimary reports whether err says the server is not (or no longer)
// a writable primary.
func IsNotPrimary(err error) bool { return notPrimaryCodes[pgCode(err)] }

// failoverTracer resets the pool when a statement fails because its
// server is not a writable primary.
type failoverTracer struct {
	pool      atomic.Pointer[pgxpool.Pool]
	logger    *slog.Logger
	lastReset atomic.Int64 // unix nanoseconds
	resets    atomic.Int64
}

func (t *failoverTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t *failoverTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.Err == nil || !IsNotPrimary(data.Err) {
		return
	}
	pool := t.pool.Load()
	if pool == nil {
		return
	}
	// Once per second at most: every busy connection reports the same.
	now := time.Now().UnixNano()
	last := t.lastReset.Load()
	if now-last < int64(time.Second) || !t.lastReset.CompareAndSwap(last, now) {
		return
	}
	t.resets.Add(1)
	t.logger.WarnContext(ctx, "the database server is not a writable primary; reconnecting every pooled connection", "err", data.Err)
	pool.Reset() // never blocks: busy connections are closed on release
}

// configureFailover applies the settings above to a parsed pool config
// and returns the tracer to attach to the pool once it exists.
func configureFailover(pcfg *pgxpool.Config, logger *slog.Logger) *failoverTracer {
	if pcfg.ConnConfig.ConnectTimeout == 0 { // the URL's connect_timeout, if any, wins
		pcfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if pcfg.PingTimeout == 0 {
		pcfg.PingTimeout = pingTimeout
	}
	t := &failoverTracer{logger: logger}
	pcfg.ConnConfig.Tracer = t
	return t
}
