package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/verify"
)

// Journal is the verifiable journal. It is safe for concurrent use.
type Journal struct {
	cfg    Config
	pool   *pgxpool.Pool
	logger *slog.Logger

	signer      note.Signer
	verifier    note.Verifier
	verifierKey string

	// seq is held (a token in a one-slot channel, so that waiting honours
	// ctx) by the goroutine building and sending this process's next
	// sequencer transaction. It guards spec.
	seq chan struct{}
	// queue holds appends waiting for the next sequencer transaction: the
	// goroutine that takes seq commits every queued append in one
	// transaction (group commit), so concurrent single-revision callers
	// share one WAL flush. It first waits, briefly, for the callers the
	// last transaction answered to queue again (rejoin).
	qmu    sync.Mutex
	queue  []*appendReq
	rejoin rejoin
	// spec is the tree as it will be once every append transaction sent
	// so far commits: what the next one-round-trip append extends (the
	// database checks it did). Size -1 when unknown: after a start or a
	// failed append, until a careful append reads the stored tree.
	spec tree
	// inflight holds a slot per one-round-trip or COPY append sent and
	// not yet answered. A COPY append hears that it holds the sequencer
	// lock before it streams its rows, so the next append is built and
	// sent while it streams and commits, and waits in the database for the
	// lock. A one-round-trip append hears it only with its commit (the
	// server answers a pipeline at its Sync), so the next is sent after.
	inflight chan struct{}
	// committed is the newest tree this process knows committed, which
	// the careful path extends without reading the stored hashes when the
	// stored tree still has its size. Guarded by cmu: answers arrive
	// outside seq.
	cmu       sync.Mutex
	committed tree

	// haltMu guards halted and pins (see halt.go): halted is nil while the
	// journal signs, and pins are the trees it must extend.
	haltMu  sync.Mutex
	halted  error
	pins    [pinKinds]pin
	refused prometheus.Counter
	// txs counts append transactions by path ("fast", "careful"), entries
	// the leaves they appended: their ratio is the group commit's size.
	txs     *prometheus.CounterVec
	entries prometheus.Counter

	// explain, when set, says why the journal holds no entry for a record
	// another module knows (see ExplainUnjournaled).
	explain func(ctx context.Context, recordID string) (string, error)
}

// Revision is one revision of one record, as a service appends it.
type Revision struct {
	// RecordID identifies the record across its revisions (a UUID string
	// for farm records).
	RecordID string
	// Kind names what the revision records, e.g. "plot.mapped".
	Kind string
	// Revision numbers the record's revisions from 1.
	Revision int64
	// Payload is the revision's content (canonical JSON for farm records).
	// The log commits to its SHA-256 only, so that it can be redacted.
	Payload []byte
	// OccurredAt is when the fact happened by the recorder's clock. It is
	// kept to the microsecond.
	OccurredAt time.Time
	// SignatureRef points at the device or agent signature over the payload.
	SignatureRef string
}

// Appended says where a revision is in the log.
type Appended struct {
	RecordID  string
	Revision  int64
	LeafIndex int64
	LoggedAt  time.Time
	// Existed is true when the same revision was already in the log and the
	// append was a no-op.
	Existed bool
}

// New returns a journal. It does no I/O; Start does.
func New(cfg Config, pool *pgxpool.Pool, logger *slog.Logger) (*Journal, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("ledger: nil pool")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tani_ledger_signatures_refused_total",
		Help: "Checkpoint signatures and receipts the journal refused because it halted on a fork.",
	})
	txs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tani_ledger_append_transactions_total",
		Help: "Append transactions committed, by path: fast (one round trip) or careful (stored and erased revisions looked up first).",
	}, []string{"path"})
	entries := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tani_ledger_appended_entries_total",
		Help: "Entries appended by this process; divided by tani_ledger_append_transactions_total, the entries per group commit.",
	})
	lingers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tani_ledger_append_lingers_total",
		Help: "Times the sequencer waited for the callers the last transaction answered to append again, by how the wait ended: rejoined (they did) or bound (it gave up after half a round trip).",
	}, []string{"ended"})
	return &Journal{cfg: cfg, pool: pool, logger: logger, seq: make(chan struct{}, 1), rejoin: rejoin{arrived: make(chan struct{}, 1), lingers: lingers},
		spec: tree{size: -1}, committed: tree{size: -1}, inflight: make(chan struct{}, fastDepth),
		refused: refused, txs: txs, entries: entries}, nil
}

// Start loads the signing key, generating it into DataDir on first run,
// checks that the stored journal extends the newest checkpoint signed with
// that key (halting if not: see Halted), and makes the journal ready to
// append and sign. The anchorer checks it against the chain (PinAnchor).
func (j *Journal) Start(ctx context.Context) error {
	s, v, vkey, err := loadKeys(j.cfg)
	if err != nil {
		return err
	}
	j.signer, j.verifier, j.verifierKey = s, v, vkey
	if err := j.pinLatestSigned(ctx); err != nil {
		return fmt.Errorf("ledger start: %w", err)
	}
	j.logger.InfoContext(ctx, "ledger ready", "origin", j.cfg.Origin, "verifier_key", vkey)
	return nil
}

// ExplainUnjournaled installs how the receipt routes explain a record the
// journal has no entry for: fn returns why (for instance "not yet
// journaled: …") for a record another module knows, or "" for one it does
// not. The module that decides what is journaled (attest) knows this; the
// journal does not. Call it before the routes serve.
func (j *Journal) ExplainUnjournaled(fn func(ctx context.Context, recordID string) (string, error)) {
	j.explain = fn
}

// VerifierKey returns the log's public note verifier key, the one receipts
// and checkpoints are checked against.
func (j *Journal) VerifierKey() string { return j.verifierKey }

// Verifier returns the log's note verifier.
func (j *Journal) Verifier() note.Verifier { return j.verifier }

// Run signs a checkpoint every CheckpointInterval while the tree grows,
// until ctx is done; it then returns nil. A failed checkpoint is logged and
// retried at the next tick: a database blip must not stop the process. Once
// the journal has halted on a fork it signs nothing more, and the process
// keeps running so that /readyz and the metrics can say why.
func (j *Journal) Run(ctx context.Context) error {
	t := time.NewTicker(j.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// Once halted, SignCheckpoint refuses: that was logged once and
			// /readyz and the metrics show it, so it is not logged per tick.
			if _, err := j.SignCheckpoint(ctx); err != nil && ctx.Err() == nil && j.Halted() == nil {
				j.logger.ErrorContext(ctx, "sign checkpoint", "err", err)
			}
		}
	}
}

// sequencerLock is the advisory lock key that makes one sequencer across
// processes (the ASCII bytes "TANILEDG").
const sequencerLock int64 = 0x5441_4e49_4c45_4447 // "TANILEDG"

// leaf is an entry about to be appended.
type leaf struct {
	entry   verify.Entry
	data    []byte
	payload []byte // nil for redactions
}

// Append appends revisions to the log and returns where each one is, in
// order. It is durable when it returns. Appending a revision already in the
// log is a no-op (Existed is set); the same record id and revision with
// different content is a Conflict, and then none of revs is appended.
//
// Revisions of one call always share one transaction; concurrent calls are
// grouped into one transaction too. If ctx ends before the append commits,
// Append returns ctx's error and the revisions may still be appended later:
// retrying is safe, since appends are idempotent.
func (j *Journal) Append(ctx context.Context, revs ...Revision) ([]Appended, error) {
	if len(revs) == 0 {
		return nil, nil
	}
	req := &appendReq{
		norm:     make([]verify.Entry, len(revs)),
		encoded:  make([][]byte, len(revs)),
		payloads: make([][]byte, len(revs)),
		out:      make([]Appended, len(revs)),
		relative: make([]bool, len(revs)),
		done:     make(chan struct{}),
	}
	var fields []apperr.FieldError
	for i, r := range revs {
		e := verify.Entry{
			Type: verify.TypeRevision, RecordID: r.RecordID, Kind: r.Kind, Revision: r.Revision,
			PayloadHash: sha256.Sum256(r.Payload), OccurredAt: r.OccurredAt.UTC().Truncate(time.Microsecond),
			SignatureRef: r.SignatureRef,
			LoggedAt:     time.Unix(0, 0).UTC(), // a placeholder for validation; the sequencer stamps it
		}
		data, err := e.Marshal()
		if err != nil {
			fields = append(fields, apperr.FieldError{Field: fmt.Sprintf("revisions[%d]", i), Message: err.Error()})
		}
		req.norm[i], req.encoded[i], req.payloads[i] = e, data, nonNil(r.Payload)
	}
	if len(fields) > 0 {
		return nil, apperr.Fields("invalid revisions", fields...)
	}

	j.enqueue(req)
	for {
		select {
		case <-req.done:
			return req.out, req.err
		case <-ctx.Done():
			return nil, fmt.Errorf("ledger append: %w", ctx.Err())
		case j.seq <- struct{}{}:
			// Both cases may be ready: req answered by the sequencer
			// this goroutine just was. Then the goroutines of what is
			// queued sequence it; this one must not linger for callers
			// while its own is the one to return.
			select {
			case <-req.done:
				<-j.seq
				return req.out, req.err
			default:
			}
			// This goroutine is the sequencer now: commit everything
			// queued, which includes req unless an earlier sequencer
			// already took it. appendBatch gives seq back.
			j.linger()
			j.qmu.Lock()
			batch := j.queue
			j.queue = nil
			j.qmu.Unlock()
			if len(batch) > 0 {
				j.appendBatch(ctx, batch)
			} else {
				<-j.seq
			}
		}
	}
}

// appendReq is one Append call waiting for its transaction.
type appendReq struct {
	norm []verify.Entry
	// encoded holds norm's leaf bytes, checked and encoded once by
	// Append; the sequencer stamps the log time (verify.Stamp).
	encoded  [][]byte
	payloads [][]byte
	out      []Appended
	// relative marks results whose LeafIndex is a position in the batch,
	// known as a log index only once the batch is placed.
	relative []bool
	err      error
	done     chan struct{}
}

// appendTimeout bounds one group-commit transaction. The transaction does
// not end with the context of the caller that happens to run it, since it
// carries other callers' appends too.
const appendTimeout = time.Minute

// tree is a tree this process appended to: its size and the stored hashes
// of the complete subtrees on its right edge (its frontier), exactly what
// the next append and the next tree hash read.
type tree struct {
	size     int64
	frontier map[int64]tlog.Hash
}

// fastDepth is how many appends may be in flight: one committing, the
// next waiting for the sequencer lock in the database (see inflight).
const fastDepth = 2

// appendBatch commits the queued appends in one transaction and completes
// each request. A conflicting request fails alone; a database failure fails
// them all. It is called holding seq and gives it back.
//
// While this process knows the tree it will extend (spec), the batch goes
// in one round trip (sendFast): the process guesses that no revision of
// the batch is stored or erased yet and that no other process appended,
// and the database checks the guess under the sequencer lock. seq is given
// back as soon as the database answers that the batch holds the lock (for
// a COPY append, before its rows are sent; for a one-round-trip append,
// with its commit). Otherwise, or when the guess was wrong, the
// careful path looks the revisions up first (appendCareful), holding seq.
func (j *Journal) appendBatch(ctx context.Context, batch []*appendReq) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), appendTimeout)
	defer cancel()
	err := j.appendHolding(ctx, batch)
	for _, r := range batch {
		if err != nil && r.err == nil {
			r.err = err
		}
		if r.err != nil {
			r.out = nil
		}
		close(r.done)
	}
}

// appendHolding is appendBatch's work; it gives seq back.
func (j *Journal) appendHolding(ctx context.Context, batch []*appendReq) error {
	if j.spec.size >= 0 {
		wait, err := j.sendFast(ctx, batch)
		if wait != nil {
			<-j.seq
			if err = wait(); err == nil {
				return nil
			}
			select {
			case j.seq <- struct{}{}:
			case <-ctx.Done():
				return fmt.Errorf("ledger append: %w", ctx.Err())
			}
		}
		// Every batch sent on top of this one fails its guard as well. The
		// guard may have failed because the stored tree is not the one
		// this process appended to: the careful path reads it.
		j.spec = tree{size: -1}
		j.cmu.Lock()
		j.committed = tree{size: -1}
		j.cmu.Unlock()
		j.logger.DebugContext(ctx, "ledger append: one round trip refused, taking the careful path", "err", err)
		for _, r := range batch {
			r.reset()
		}
	}
	defer func() { <-j.seq }()
	return j.appendCareful(ctx, batch)
}

// reset forgets what an attempt decided about r.
func (r *appendReq) reset() {
	r.err = nil
	clear(r.out)
	clear(r.relative)
}

// decide places the revisions of batch after the stored ones: a revision
// already stored (existing) is a no-op or, with other content, a conflict
// that fails its request alone, as does an erased record; a revision
// repeated within the batch is placed once. It returns the leaves to
// append, stamped now, and sets each request's results with LeafIndex
// relative to the first leaf.
func decide(batch []*appendReq, existing map[revKey]storedEntry, erased map[string]string, now time.Time) ([]leaf, error) {
	// accepted holds the revisions this batch appends, by key: the
	// request and position of their first occurrence. A request that
	// fails takes back the keys and leaves it added.
	type ref struct {
		req *appendReq
		i   int
	}
	total := 0
	for _, r := range batch {
		total += len(r.norm)
	}
	accepted := make(map[revKey]ref, total)
	leaves := make([]leaf, 0, total)
	var added []revKey
	for _, r := range batch {
		start := len(leaves)
		added = added[:0]
		for i, e := range r.norm {
			if erasure, ok := erased[e.RecordID]; ok {
				r.err = erasedConflict(e, erasure)
				break
			}
			k := revKey{e.RecordID, e.Revision}
			if old, ok := existing[k]; ok {
				if !sameRevision(old.entry, e) {
					r.err = conflict(e)
					break
				}
				r.out[i] = Appended{RecordID: e.RecordID, Revision: e.Revision, LeafIndex: old.idx, LoggedAt: old.entry.LoggedAt, Existed: true}
				continue
			}
			if first, ok := accepted[k]; ok {
				if !sameRevision(first.req.norm[first.i], e) {
					r.err = conflict(e)
					break
				}
				r.out[i], r.relative[i] = first.req.out[first.i], true
				r.out[i].Existed = true
				continue
			}
			e.LoggedAt = now
			data, err := verify.Stamp(r.encoded[i], now)
			if err != nil {
				return nil, fmt.Errorf("encode entry: %w", err)
			}
			accepted[k] = ref{r, i}
			added = append(added, k)
			r.out[i] = Appended{RecordID: e.RecordID, Revision: e.Revision, LeafIndex: int64(len(leaves)), LoggedAt: now}
			r.relative[i] = true
			leaves = append(leaves, leaf{entry: e, data: data, payload: r.payloads[i]})
		}
		if r.err != nil {
			for _, k := range added {
				delete(accepted, k)
			}
			clear(leaves[start:])
			leaves = leaves[:start]
		}
	}
	return leaves, nil
}

// placeBatch turns the batch's relative leaf indexes into log indexes once
// its first leaf is placed at first.
func placeBatch(batch []*appendReq, first int64) {
	for _, r := range batch {
		if r.err != nil {
			continue
		}
		for i := range r.out {
			if r.relative[i] {
				r.out[i].LeafIndex += first
			}
		}
	}
}

// appendCareful appends batch in a transaction that first looks up which
// of its revisions are stored or erased.
func (j *Journal) appendCareful(ctx context.Context, batch []*appendReq) error {
	return j.transact(ctx, func(ctx context.Context, tx pgx.Tx, now time.Time) ([]leaf, error) {
		var all []verify.Entry
		for _, r := range batch {
			all = append(all, r.norm...)
		}
		existing, err := loadExisting(ctx, tx, all)
		if err != nil {
			return nil, err
		}
		erased, err := loadErased(ctx, tx, all)
		if err != nil {
			return nil, err
		}
		return decide(batch, existing, erased, now)
	}, func(first int64) { placeBatch(batch, first) })
}

// The statements of the one-round-trip append. Appends are revisions only
// (redactions are journaled by Erase, on the careful path), all stamped
// with one time, at consecutive indexes from $1.
const (
	fastInsertEntries = `
		INSERT INTO ledger.entries (idx, data, type, record_id, kind, revision, payload_hash, occurred_at, signature_ref, logged_at, payload)
		SELECT $1 + u.n - 1, u.data, 'revision', u.record_id, u.kind, u.revision, u.payload_hash, u.occurred_at, u.signature_ref, $2, u.payload
		FROM unnest($3::bytea[], $4::text[], $5::text[], $6::bigint[], $7::bytea[], $8::timestamptz[], $9::text[], $10::bytea[])
			WITH ORDINALITY AS u(data, record_id, kind, revision, payload_hash, occurred_at, signature_ref, payload, n)`
	// The batch's stored hashes are one run (see hashLeaves).
	insertHashRun = `INSERT INTO ledger.hash_runs (first, hashes) VALUES ($1, $2)`
)

// sendFast sends batch as one pipelined implicit transaction that takes
// the sequencer lock, has ledger.append_guard check that the stored tree
// is spec (its size and the hashes of its complete subtrees, from which
// every new hash is computed here) and that no record of the batch was
// erased, then inserts the entries and their hashes and advances the tree
// size. A revision already stored aborts it through the unique index. It
// returns once the lock statement is answered, which the server does with
// the rest of the pipeline at its Sync, after the commit: the next
// transaction is sent after this one's answer and can never overtake it.
// (A Flush request after the lock makes the answer come at once and puts
// two transactions in flight; measured with 64 callers it gained nothing,
// see docs/ledger-benchmarks.md, "Fourth pass".) On success spec becomes
// the grown tree, and wait returns once the
// transaction is answered: nil when it committed, else an error, and then
// the caller takes the careful path, which tells a wrong guess from a
// failed database. A nil wait means nothing was sent. A batch of
// copyMinLeaves leaves or more goes through sendCopy: the same checks and
// writes, its rows in binary COPY.
func (j *Journal) sendFast(ctx context.Context, batch []*appendReq) (wait func() error, err error) {
	base := j.spec
	now := time.Now().UTC().Truncate(time.Microsecond)
	leaves, err := decide(batch, nil, nil, now)
	if err != nil {
		return nil, err
	}
	if len(leaves) == 0 {
		// Every request conflicts within the batch: nothing to write.
		return func() error { return nil }, nil
	}
	front := frontierIndexes(base.size)
	frontHashes := make([][]byte, len(front))
	for i, id := range front {
		h, ok := base.frontier[id]
		if !ok {
			return nil, fmt.Errorf("frontier hash %d not known", id)
		}
		frontHashes[i] = h[:]
	}
	run, grown, err := hashLeaves(ctx, nil, base, leaves)
	if err != nil {
		return nil, err
	}
	n := len(leaves)
	if n >= copyMinLeaves {
		return j.sendCopy(ctx, batch, base, now, leaves, front, frontHashes, run, grown)
	}
	var (
		data, hashCol, payload = make([][]byte, n), make([][]byte, n), make([][]byte, n)
		ids, kinds, sigs       = make([]string, n), make([]string, n), make([]string, n)
		revs                   = make([]int64, n)
		occurred               = make([]time.Time, n)
	)
	for i, l := range leaves {
		e := l.entry
		data[i], ids[i], kinds[i], revs[i], occurred[i], sigs[i], payload[i] = l.data, e.RecordID, e.Kind, e.Revision, e.OccurredAt, e.SignatureRef, l.payload
		hashCol[i] = e.PayloadHash[:]
	}
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1)", sequencerLock)
	b.Queue("SELECT ledger.append_guard($1, $2, $3, $4)", base.size, front, frontHashes, ids)
	b.Queue(fastInsertEntries, base.size, now, data, ids, kinds, revs, hashCol, occurred, sigs, payload)
	b.Queue(insertHashRun, run.first, run.hashes)
	b.Queue("UPDATE ledger.tree SET size = $1", grown.size)
	select {
	case j.inflight <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("ledger append: %w", ctx.Err())
	}
	sent := time.Now()
	br := j.pool.SendBatch(ctx, b)
	// Keep seq until the lock statement is answered (with the commit,
	// see above): the next transaction, sent on another connection, must
	// not overtake this one and fail its guard.
	if _, err := br.Exec(); err != nil {
		return func() error {
			defer func() { <-j.inflight }()
			br.Close()
			return fmt.Errorf("ledger append: take sequencer lock: %w", err)
		}, nil
	}
	j.spec = grown
	j.expectRejoin(len(batch), time.Since(sent))
	return func() error {
		defer func() { <-j.inflight }()
		if err := br.Close(); err != nil {
			return fmt.Errorf("ledger append: %w", err)
		}
		j.commit(grown, "fast")
		j.entries.Add(float64(n))
		placeBatch(batch, base.size)
		return nil
	}, nil
}

// commit records that this process committed an append transaction that
// grew the stored tree to t.
func (j *Journal) commit(t tree, path string) {
	j.cmu.Lock()
	if t.size > j.committed.size {
		j.committed = t
	}
	j.cmu.Unlock()
	j.txs.WithLabelValues(path).Inc()
}

// revKey identifies a revision.
type revKey struct {
	id  string
	rev int64
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func conflict(e verify.Entry) error {
	return apperr.Errorf(apperr.Conflict, "record %s revision %d is already in the log with different content", e.RecordID, e.Revision)
}

// sameRevision compares what the caller supplied, ignoring the log time.
func sameRevision(a, b verify.Entry) bool {
	return a.Type == b.Type && a.RecordID == b.RecordID && a.Kind == b.Kind && a.Revision == b.Revision &&
		a.PayloadHash == b.PayloadHash && a.OccurredAt.Equal(b.OccurredAt) && a.SignatureRef == b.SignatureRef
}

type storedEntry struct {
	idx   int64
	entry verify.Entry
}

// loadExisting returns the revisions of norm already in the log.
func loadExisting(ctx context.Context, tx pgx.Tx, norm []verify.Entry) (map[revKey]storedEntry, error) {
	ids := make([]string, len(norm))
	revs := make([]int64, len(norm))
	for i, e := range norm {
		ids[i], revs[i] = e.RecordID, e.Revision
	}
	// One index probe per key: the LIMIT keeps the planner from turning the
	// lateral join into a hash join over every stored revision, which grows
	// with the log.
	rows, err := tx.Query(ctx, `
		SELECT e.idx, e.record_id, e.revision, e.kind, e.payload_hash, e.occurred_at, e.signature_ref, e.logged_at
		FROM unnest($1::text[], $2::bigint[]) AS k(record_id, revision)
		CROSS JOIN LATERAL (
			SELECT * FROM ledger.entries e
			WHERE e.type = 'revision' AND e.record_id = k.record_id AND e.revision = k.revision
			LIMIT 1) e`, ids, revs)
	if err != nil {
		return nil, fmt.Errorf("look up existing revisions: %w", err)
	}
	defer rows.Close()
	out := map[revKey]storedEntry{}
	for rows.Next() {
		var s storedEntry
		var hash []byte
		s.entry.Type = verify.TypeRevision
		if err := rows.Scan(&s.idx, &s.entry.RecordID, &s.entry.Revision, &s.entry.Kind, &hash, &s.entry.OccurredAt, &s.entry.SignatureRef, &s.entry.LoggedAt); err != nil {
			return nil, fmt.Errorf("scan existing revision: %w", err)
		}
		copy(s.entry.PayloadHash[:], hash)
		out[revKey{s.entry.RecordID, s.entry.Revision}] = s
	}
	return out, rows.Err()
}

// sequence runs one append transaction under the sequencer lock. build
// returns the leaves to append given the current state; their indexes start
// at the tree size, which placed receives once the transaction commits. The
// stored hashes are computed in memory from the tree's frontier and written
// with the entries.
func (j *Journal) sequence(ctx context.Context, build func(ctx context.Context, tx pgx.Tx, now time.Time) ([]leaf, error), placed func(first int64), after ...func(ctx context.Context, tx pgx.Tx, first int64) error) error {
	select {
	case j.seq <- struct{}{}:
		defer func() { <-j.seq }()
	case <-ctx.Done():
		return fmt.Errorf("ledger append: %w", ctx.Err())
	}
	return j.transact(ctx, build, placed, after...)
}

// transact is sequence for a caller that holds seq.
func (j *Journal) transact(ctx context.Context, build func(ctx context.Context, tx pgx.Tx, now time.Time) ([]leaf, error), placed func(first int64), after ...func(ctx context.Context, tx pgx.Tx, first int64) error) error {
	tx, err := j.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("ledger append: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", sequencerLock); err != nil {
		return fmt.Errorf("ledger append: take sequencer lock: %w", err)
	}
	var size int64
	if err := tx.QueryRow(ctx, "SELECT size FROM ledger.tree").Scan(&size); err != nil {
		return fmt.Errorf("ledger append: read tree size: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	leaves, err := build(ctx, tx, now)
	if err != nil {
		return err
	}
	if len(leaves) > 0 {
		grown, err := j.write(ctx, tx, size, leaves)
		if err != nil {
			return err
		}
		for _, f := range after {
			if err := f(ctx, tx, size); err != nil {
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			j.spec = tree{size: -1}
			return fmt.Errorf("ledger append: commit: %w", err)
		}
		j.spec = grown
		j.commit(grown, "careful")
		j.entries.Add(float64(len(leaves)))
	} else if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("ledger append: commit: %w", err)
	}
	placed(size)
	return nil
}

// write inserts leaves at indexes size, size+1, … with their stored hashes
// and advances the tree size. It returns the grown tree.
func (j *Journal) write(ctx context.Context, tx pgx.Tx, size int64, leaves []leaf) (tree, error) {
	j.cmu.Lock()
	base := j.committed
	j.cmu.Unlock()
	if base.size != size {
		base = tree{size: size}
	}
	run, grown, err := hashLeaves(ctx, tx, base, leaves)
	if err != nil {
		return tree{}, err
	}
	entryRows := make([][]any, len(leaves))
	for i, l := range leaves {
		e := l.entry
		var occurred, target any
		if e.Type == verify.TypeRevision {
			occurred = e.OccurredAt
		} else {
			target = e.Target
		}
		var payload any
		if l.payload != nil {
			payload = l.payload
		}
		entryRows[i] = []any{size + int64(i), l.data, string(e.Type), e.RecordID, e.Kind, e.Revision, e.PayloadHash[:], occurred, e.SignatureRef, e.LoggedAt, target, payload}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ledger", "entries"},
		[]string{"idx", "data", "type", "record_id", "kind", "revision", "payload_hash", "occurred_at", "signature_ref", "logged_at", "target", "payload"},
		pgx.CopyFromRows(entryRows)); err != nil {
		return tree{}, fmt.Errorf("ledger append: copy entries: %w", err)
	}
	if _, err := tx.Exec(ctx, insertHashRun, run.first, run.hashes); err != nil {
		return tree{}, fmt.Errorf("ledger append: insert hash run: %w", err)
	}
	newSize := size + int64(len(leaves))
	if _, err := tx.Exec(ctx, "UPDATE ledger.tree SET size = $1", newSize); err != nil {
		return tree{}, fmt.Errorf("ledger append: advance tree size: %w", err)
	}
	return grown, nil
}

// hashRun is the stored hashes an append adds: those of ids first,
// first+1, … concatenated, one ledger.hash_runs row.
type hashRun struct {
	first  int64
	hashes []byte
}

// hashLeaves computes the stored hashes that leaves add to base, and the
// grown tree. The hashes of leaf n are ids StoredHashIndex(0, n) onwards
// and those of leaf n+1 follow them, so an append's hashes are one run.
// The hashes it needs from base come from base's frontier when it has
// one, else from tx; with a nil tx, a hash not in memory is an error.
func hashLeaves(ctx context.Context, tx pgx.Tx, base tree, leaves []leaf) (run hashRun, grown tree, err error) {
	// The hashes tlog reads are the run's own, found in run.hashes by
	// offset, or of subtrees left of it: base's frontier, or read from tx
	// once and kept in mem.
	mem := maps.Clone(base.frontier)
	if mem == nil {
		mem = map[int64]tlog.Hash{}
	}
	// inRun returns where hash id starts in run.hashes, if it is there.
	inRun := func(id int64) (int64, bool) {
		k := (id - run.first) * tlog.HashSize
		return k, k >= 0 && k < int64(len(run.hashes))
	}
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		var left []int64
		for i, id := range indexes {
			if k, ok := inRun(id); ok {
				copy(out[i][:], run.hashes[k:])
			} else {
				left = append(left, id)
			}
		}
		if len(left) == 0 {
			return out, nil
		}
		hs, err := readHashes(ctx, tx, mem, left)
		if err != nil {
			return nil, err
		}
		for i, id := range indexes {
			if _, ok := inRun(id); !ok {
				out[i], hs = hs[0], hs[1:]
			}
		}
		return out, nil
	})
	run.first = tlog.StoredHashIndex(0, base.size)
	run.hashes = make([]byte, 0, (2*len(leaves)+1)*tlog.HashSize)
	for i, l := range leaves {
		n := base.size + int64(i)
		hs, err := tlog.StoredHashes(n, l.data, reader)
		if err != nil {
			return hashRun{}, tree{}, fmt.Errorf("ledger append: hashes for leaf %d: %w", n, err)
		}
		first := tlog.StoredHashIndex(0, n)
		if first != run.first+int64(len(run.hashes)/tlog.HashSize) {
			return hashRun{}, tree{}, fmt.Errorf("ledger append: stored hashes of leaf %d start at %d, not after the run's", n, first)
		}
		for _, h := range hs {
			run.hashes = append(run.hashes, h[:]...)
		}
	}
	// The grown tree's frontier: hashes computed above, or of subtrees
	// left of them, which base's frontier or tx has.
	grown.size = base.size + int64(len(leaves))
	fids := frontierIndexes(grown.size)
	fhs, err := reader.ReadHashes(fids)
	if err != nil {
		return hashRun{}, tree{}, fmt.Errorf("ledger append: frontier: %w", err)
	}
	grown.frontier = make(map[int64]tlog.Hash, len(fids))
	for i, id := range fids {
		grown.frontier[id] = fhs[i]
	}
	return run, grown, nil
}

// frontierIndexes returns the stored-hash indexes of the complete subtrees
// that make up a tree of size n: what tlog reads to append leaf n or to hash
// the tree of size n.
func frontierIndexes(n int64) []int64 {
	var ids []int64
	for level := 0; n>>level > 0; level++ {
		if (n>>level)&1 == 1 {
			ids = append(ids, tlog.StoredHashIndex(level, (n>>level)-1))
		}
	}
	return ids
}

// readHashes answers tlog's hash reads from memory first, then from the
// database, in the order asked.
func readHashes(ctx context.Context, q pgx.Tx, mem map[int64]tlog.Hash, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int64
	for i, id := range indexes {
		if h, ok := mem[id]; ok {
			out[i] = h
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	if q == nil {
		return nil, &missingHashError{missing[0]}
	}
	got, err := queryHashes(ctx, q, missing)
	if err != nil {
		return nil, err
	}
	for i, id := range indexes {
		if _, ok := mem[id]; ok {
			continue
		}
		h, ok := got[id]
		if !ok {
			return nil, &missingHashError{id}
		}
		out[i] = h
		if mem != nil {
			mem[id] = h
		}
	}
	return out, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// runHashesSQL reads stored hashes by id from ledger.hash_runs: for each
// id, the run with the greatest first at or below it (one backward probe
// of the primary key), and the id's 32 bytes in it. An id no run holds has
// no row. (The ledger.hashes view answers the same but expands every run.)
const runHashesSQL = `
	SELECT u.id, substring(r.hashes FROM (u.id - r.first)::int * 32 + 1 FOR 32)
	FROM unnest($1::bigint[]) AS u(id)
	CROSS JOIN LATERAL (
		SELECT first, hashes FROM ledger.hash_runs WHERE first <= u.id ORDER BY first DESC LIMIT 1) AS r
	WHERE (u.id - r.first + 1) * 32 <= octet_length(r.hashes)`

func queryHashes(ctx context.Context, q querier, ids []int64) (map[int64]tlog.Hash, error) {
	rows, err := q.Query(ctx, runHashesSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("read stored hashes: %w", err)
	}
	defer rows.Close()
	got := make(map[int64]tlog.Hash, len(ids))
	for rows.Next() {
		var id int64
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			return nil, fmt.Errorf("scan stored hash: %w", err)
		}
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("stored hash %d has %d bytes", id, len(b))
		}
		got[id] = tlog.Hash(b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stored hashes: %w", err)
	}
	return got, nil
}

// hashReader reads stored hashes from the database.
func hashReader(ctx context.Context, q querier) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		got, err := queryHashes(ctx, q, indexes)
		if err != nil {
			return nil, err
		}
		out := make([]tlog.Hash, len(indexes))
		for i, id := range indexes {
			h, ok := got[id]
			if !ok {
				return nil, &missingHashError{id}
			}
			out[i] = h
		}
		return out, nil
	})
}
