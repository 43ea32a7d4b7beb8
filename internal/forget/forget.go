package forget

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
)

// Request is an erasure request as every owner receives it on
// natsbus.SubjectErasureRequested. It carries ids only: the stream keeps it
// for as long as an owner may still have to act on it.
type Request struct {
	ErasureID   string    `json:"erasure_id"`
	FarmerID    string    `json:"farmer_id"`
	RequestedAt time.Time `json:"requested_at"`
}

// Journal kinds of an erasure's two entries, both under the erasure's id:
// revision 1 is the request (journaled by the erasure module when the
// operator asks), revision 2 its execution in the journal (ledger.Erasure,
// run by attest, which journaled the farmer's records).
const (
	KindRequested = "farmer.erasure.requested"
	KindExecuted  = "farmer.erasure.executed"
)

// MsgID is the JetStream message id of a request: a republished request
// is stored once.
func (r Request) MsgID() string { return "erasure:" + r.ErasureID }

// Publish puts the request on the ERASURE stream and waits for its ack.
func Publish(ctx context.Context, js jetstream.JetStream, r Request) error {
	msg := nats.NewMsg(natsbus.SubjectErasureRequested)
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode erasure request %s: %w", r.ErasureID, err)
	}
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, r.MsgID())
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish erasure request %s: %w", r.ErasureID, err)
	}
	return nil
}

// Decode reads a request strictly; anything else is Invalid.
func Decode(data []byte) (Request, error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, apperr.Wrap(apperr.Invalid, err, "undecodable erasure request")
	}
	if dec.More() {
		return Request{}, apperr.Errorf(apperr.Invalid, "undecodable erasure request: data after the object")
	}
	var fields []apperr.FieldError
	if _, err := uuid.Parse(r.ErasureID); err != nil {
		fields = append(fields, apperr.FieldError{Field: "erasure_id", Message: "must be a UUID"})
	}
	if _, err := uuid.Parse(r.FarmerID); err != nil {
		fields = append(fields, apperr.FieldError{Field: "farmer_id", Message: "must be a UUID"})
	}
	if len(fields) > 0 {
		return Request{}, apperr.Fields("invalid erasure request", fields...)
	}
	r.FarmerID = strings.ToLower(r.FarmerID)
	return r, nil
}

// Owner is one owner of farmer data as erasure sees it: a name for the
// operator's status and the table, in the owner's own schema, that holds
// one row per erasure it ran. That row is the tombstone its writers check
// (a farmer with a row is refused from then on) and the progress the
// status endpoint reads through the owner's erasure_progress view.
//
// The table has at least the columns erasure_id uuid PRIMARY KEY,
// farmer_id uuid UNIQUE, started_at, attempts, last_error, completed_at
// and erased jsonb.
type Owner struct {
	Name  string
	Table string // schema-qualified, e.g. "ingest.erasures"
	// Clear names columns of Table set to NULL once an erasure completes:
	// working state (ids, hashes) kept only while it is needed.
	Clear []string
}

var identifier = regexp.MustCompile(`^[a-z_]+(\.[a-z_]+)?$`)

// valid guards the identifiers spliced into SQL: an Owner is a constant of
// its package, never input, but a typo must not become a query.
func (o Owner) valid() error {
	for _, id := range append([]string{o.Table}, o.Clear...) {
		if !identifier.MatchString(id) {
			return fmt.Errorf("forget: owner %s: bad identifier %q", o.Name, id)
		}
	}
	return nil
}

// lockClass is the first key of the per-farmer advisory locks ("ERAS").
const lockClass int32 = 0x45524153

// lockBuckets is how many locks farmers share (by a hash of their id). A
// writer takes one shared lock per bucket its batch touches, so a batch of
// hundreds of farmers takes at most this many locks (PostgreSQL's lock
// table is small: max_locks_per_transaction per connection); an erasure
// holds one bucket, pausing the writers of 1/lockBuckets of the farmers
// for its first, short transaction.
const lockBuckets = 64

// bucket is the SQL expression of a farmer's lock bucket (a power of
// two, so a mask); %s is the farmer id as text.
var bucket = "(hashtext(%s) & " + strconv.Itoa(lockBuckets-1) + ")"

// Begin starts (or resumes) an erasure in tx: it takes the farmer's lock
// exclusively, so that every transaction of this owner that wrote about
// the farmer has committed and no new one can until tx ends, and writes
// the tombstone. It reports whether the erasure had already completed.
func (o Owner) Begin(ctx context.Context, tx pgx.Tx, r Request) (done bool, err error) {
	if err := o.valid(); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, `+fmt.Sprintf(bucket, "$2::text")+`)`, lockClass, r.FarmerID); err != nil {
		return false, fmt.Errorf("lock farmer %s: %w", r.FarmerID, err)
	}
	err = tx.QueryRow(ctx, `
		INSERT INTO `+o.Table+` AS e (erasure_id, farmer_id) VALUES ($1, $2)
		ON CONFLICT (erasure_id) DO UPDATE SET attempts = e.attempts + 1
		RETURNING completed_at IS NOT NULL`, r.ErasureID, r.FarmerID).Scan(&done)
	if err != nil {
		return false, fmt.Errorf("record erasure %s in %s: %w", r.ErasureID, o.Table, err)
	}
	return done, nil
}

// Farmers is a set of erased farmers.
type Farmers map[string]bool

// Has reports whether the farmer is in the set, however its id is spelled.
func (f Farmers) Has(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && f[u.String()]
}

// Fence is what a writer of farmer data runs first in its transaction: it
// takes the farmers' locks shared (waiting for any erasure of them in
// progress to commit) and returns those that were erased, whose records it
// must refuse. Ids that are not UUIDs are left out.
func (o Owner) Fence(ctx context.Context, tx pgx.Tx, farmers []string) (Farmers, error) {
	ids := uuids(farmers)
	if len(ids) == 0 {
		return Farmers{}, nil
	}
	if err := o.valid(); err != nil {
		return nil, err
	}
	// One round trip: the two statements run one after the other, and the
	// second reads with a snapshot taken once the locks are held, so it
	// sees any erasure that committed while this waited.
	b := &pgx.Batch{}
	b.Queue(`
		SELECT pg_advisory_xact_lock_shared($1, b)
		FROM (SELECT DISTINCT `+fmt.Sprintf(bucket, "f")+` AS b FROM unnest($2::text[]) AS f ORDER BY 1) AS buckets`, lockClass, ids)
	b.Queue(`SELECT farmer_id::text FROM `+o.Table+` WHERE farmer_id = ANY($1::text[]::uuid[])`, ids)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("lock %d farmers: %w", len(ids), err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("look up erased farmers: %w", err)
	}
	erased, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up erased farmers: %w", err)
	}
	out := Farmers{}
	for _, id := range erased {
		out[id] = true
	}
	return out, br.Close()
}

// QueueFence is Fence for a writer whose transaction goes to Postgres as
// one batch: it queues on b the statement taking the farmers' locks
// shared. The writer's own statements queued after it must then leave out
// the farmers in the owner's table (NOT EXISTS): each takes its snapshot
// once the locks are held, so it sees any erasure that committed while
// the batch waited, and an erasure that starts later waits for the batch's
// transaction to end.
func (o Owner) QueueFence(b *pgx.Batch, farmers []string) error {
	if err := o.valid(); err != nil {
		return err
	}
	if ids := uuids(farmers); len(ids) > 0 {
		b.Queue(`
			SELECT pg_advisory_xact_lock_shared($1, b)
			FROM (SELECT DISTINCT `+fmt.Sprintf(bucket, "f")+` AS b FROM unnest($2::text[]) AS f ORDER BY 1) AS buckets`, lockClass, ids)
	}
	return nil
}

// Querier is a pool or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Erased returns which of farmers were erased, without waiting for an
// erasure in progress: for decisions that write nothing about them.
func (o Owner) Erased(ctx context.Context, q Querier, farmers []string) (Farmers, error) {
	return o.erasedAmong(ctx, q, uuids(farmers))
}

// ExciseErased deletes for good, from the message msg came in (Excise),
// the records about every farmer the owner has erased: not only msg's
// record, but any other erased farmer's in the same bundle. So excising a
// bundle again, for another of its records, keeps the same records and
// publishes them under the same message ID, which JetStream drops.
func (o Owner) ExciseErased(ctx context.Context, q Querier, js jetstream.JetStream, stream string, msg jetstream.Msg) error {
	units := natsbus.Units(natsbus.Whole(msg))
	farmers := make([]string, len(units))
	for i, u := range units {
		farmers[i] = FarmerOf(u.Data())
	}
	erased, err := o.Erased(ctx, q, farmers)
	if err != nil {
		return err
	}
	_, err = Excise(ctx, js, stream, msg, func(u jetstream.Msg) bool { return erased.Has(FarmerOf(u.Data())) })
	return err
}

func (o Owner) erasedAmong(ctx context.Context, q Querier, ids []string) (Farmers, error) {
	out := Farmers{}
	if len(ids) == 0 {
		return out, nil
	}
	if err := o.valid(); err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT farmer_id::text FROM `+o.Table+` WHERE farmer_id = ANY($1::text[]::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up erased farmers: %w", err)
	}
	erased, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up erased farmers: %w", err)
	}
	for _, id := range erased {
		out[id] = true
	}
	return out, nil
}

// uuids returns the distinct farmer ids that are UUIDs, lower-cased and
// sorted (locks are then always taken in one order).
func uuids(farmers []string) []string {
	var out []string
	for _, f := range farmers {
		if u, err := uuid.Parse(f); err == nil {
			out = append(out, u.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// EraseFunc erases one farmer's data of one owner, idempotently (it may
// run again after a crash or a failure), and returns what it erased (counts
// by table, stream and file: never the data) for the status.
type EraseFunc func(ctx context.Context, r Request) (erased any, err error)

// Handler runs erase for every request and records its outcome in the
// owner's table. A failed erasure is retried, never dead-lettered: the
// error returned is transient whatever its cause, and the last one is
// shown on the status until an attempt succeeds.
func (o Owner) Handler(pool *pgxpool.Pool, erase EraseFunc, logger *slog.Logger) natsbus.Handler {
	return func(ctx context.Context, msg jetstream.Msg) error {
		if err := o.valid(); err != nil {
			return err
		}
		r, err := Decode(msg.Data())
		if err != nil {
			return err // not a request: dead-lettered (it holds ids at most)
		}
		var done bool
		err = pool.QueryRow(ctx, `SELECT completed_at IS NOT NULL FROM `+o.Table+` WHERE erasure_id = $1`, r.ErasureID).Scan(&done)
		switch {
		case err == nil && done:
			return nil // a redelivery
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("load erasure %s: %w", r.ErasureID, err)
		}
		erased, err := erase(ctx, r)
		if err == nil {
			err = o.finish(ctx, pool, r, erased)
		}
		if err != nil {
			if _, ferr := pool.Exec(context.WithoutCancel(ctx), `UPDATE `+o.Table+` SET last_error = $2 WHERE erasure_id = $1`,
				r.ErasureID, err.Error()); ferr != nil {
				logger.WarnContext(ctx, "record erasure failure", "erasure", r.ErasureID, "err", ferr)
			}
			logger.WarnContext(ctx, "erasure failed; will retry", "erasure", r.ErasureID, "owner", o.Name, "err", err)
			// Not %w: an Invalid or Conflict cause must not make the
			// runner dead-letter the request; erasure is retried until
			// it succeeds.
			return fmt.Errorf("erasure %s of farmer %s by %s: %s", r.ErasureID, r.FarmerID, o.Name, err.Error())
		}
		logger.InfoContext(ctx, "farmer erased", "erasure", r.ErasureID, "owner", o.Name)
		return nil
	}
}

func (o Owner) finish(ctx context.Context, pool *pgxpool.Pool, r Request, erased any) error {
	summary, err := json.Marshal(erased)
	if err != nil {
		return fmt.Errorf("encode erasure summary: %w", err)
	}
	set := "completed_at = now(), last_error = NULL, erased = $2"
	for _, c := range o.Clear {
		set += ", " + c + " = NULL"
	}
	tag, err := pool.Exec(ctx, `UPDATE `+o.Table+` SET `+set+` WHERE erasure_id = $1`, r.ErasureID, summary)
	if err != nil {
		return fmt.Errorf("complete erasure %s: %w", r.ErasureID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("complete erasure %s: no row in %s (erase did not call Begin)", r.ErasureID, o.Table)
	}
	return nil
}

// Consumer is the owner's durable consumer of erasure requests, named
// durable. Requests are handled one at a time with a generous timeout (an
// erasure scans streams), and retried without limit.
func Consumer(durable string, js jetstream.JetStream, logger *slog.Logger, metrics *natsbus.Metrics) *natsbus.Consumer {
	return natsbus.NewConsumer(natsbus.ConsumerConfig{
		Stream:         natsbus.StreamErasure,
		Durable:        durable,
		FilterSubjects: []string{natsbus.SubjectErasureRequested},
		MaxDeliver:     1_000_000_000, // never give up: the backoff caps at a minute
		HandleTimeout:  10 * time.Minute,
		AckWait:        11 * time.Minute,
		Buffer:         1,
		MaxBatch:       1,
	}, js, logger, metrics)
}

// RunWith runs an owner's erasure consumer beside the owner's own work
// (run) until ctx is done. If either fails, the other is stopped and the
// failure returned: a module must not go on without its erasures.
func RunWith(ctx context.Context, c *natsbus.Consumer, h natsbus.Handler, run func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		err := c.Run(ctx, h)
		if err != nil {
			cancel()
		}
		errc <- err
	}()
	err := run(ctx)
	cancel()
	return errors.Join(err, <-errc)
}
