package ingest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/tani-platform/tani/internal/parallel"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is ingest's schema.
var Migrations = postgres.Migrations{Name: "ingest", FS: postgres.MustSub(migrationsFS, "migrations")}

// ConsumerName is ingest's durable consumer on the FARM stream.
const ConsumerName = "ingest"

// DefaultMaxBatch is how many records one batch stores at most. Part of
// a batch's cost does not grow with its records: the erasure fence and
// the device look-up, each statement's planning and round trip, the
// commit's fsync, a farm.ingested message per type and device. Since
// records travel in bundles, 256 records are some 20 messages, and those
// costs came to a large share; at 2,048 the capture path stores more
// records a second on the same two cores (docs/performance.md, "eighth
// session"). When little is arriving a batch is whatever has arrived, so
// records wait no longer.
const DefaultMaxBatch = 2048

// Config tunes the consumer.
type Config struct {
	MaxDeliver int
	MaxBatch   int
	// Partitions is how many transactions store one batch, side by side:
	// the batch is split by farmer, so each farmer's records are stored in
	// one transaction, in the order they arrived.
	Partitions int
	// ExpiringInterval is how often consents about to expire are looked
	// for (consent.expiring events).
	ExpiringInterval time.Duration
}

// RegisterFlags registers the flags under prefix ("ingest.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.IntVar(&c.MaxDeliver, prefix+"max-deliver", 10, "deliveries of a failing record before it is dead-lettered")
	fs.IntVar(&c.MaxBatch, prefix+"max-batch", DefaultMaxBatch, "most records stored in one transaction (one commit, one fsync); a batch takes only what has arrived")
	fs.IntVar(&c.Partitions, prefix+"partitions", 2, "transactions that store one batch side by side, its records split by farmer (1 stores a batch in one transaction)")
	fs.DurationVar(&c.ExpiringInterval, prefix+"expiring-interval", 10*time.Minute, "how often consents expiring within 7 days are looked for (consent.expiring events)")
}

// Service is the ingest module.
type Service struct {
	cfg       Config
	pool      *pgxpool.Pool
	js        jetstream.JetStream
	pii       *pii.Keys
	logger    *slog.Logger
	consumer  *natsbus.Consumer
	erasures  *natsbus.Consumer
	validator *validate.Validator
	keys      *record.Keys // device keys, precomputed for verification
	memo      *record.Memo
}

// Deps are what the composition root hands in.
type Deps struct {
	Pool *pgxpool.Pool
	JS   jetstream.JetStream
	// PII hashes national IDs and seals phones and originals.
	PII    *pii.Keys
	Logger *slog.Logger
	// Consumer counts what the consumers do.
	Consumer *natsbus.Metrics
	// Memo holds the records mobile-api checked in this process; a
	// message with exactly those bytes is not read and verified again.
	// Optional.
	Memo *record.Memo
}

// New wires the service; it validates and does no I/O.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil || d.JS == nil || d.PII == nil || d.Logger == nil || d.Consumer == nil {
		return nil, errors.New("ingest: Pool, JS, PII, Logger and Consumer are required")
	}
	if cfg.Partitions < 0 || cfg.Partitions > 64 {
		return nil, fmt.Errorf("ingest: -ingest.partitions=%d: want 1 to 64", cfg.Partitions)
	}
	cfg.Partitions = max(cfg.Partitions, 1)
	return &Service{
		cfg:       cfg,
		pool:      d.Pool,
		js:        d.JS,
		pii:       d.PII,
		logger:    d.Logger,
		validator: validate.New(),
		keys:      record.NewKeys(),
		memo:      d.Memo,
		consumer: natsbus.NewConsumer(natsbus.ConsumerConfig{
			Stream:         natsbus.StreamFarm,
			Durable:        ConsumerName,
			FilterSubjects: []string{natsbus.SubjectSubmittedPrefix + ">"},
			MaxDeliver:     cfg.MaxDeliver,
			MaxBatch:       cfg.MaxBatch,
		}, d.JS, d.Logger, d.Consumer),
		erasures: forget.Consumer(ErasureConsumerName, d.JS, d.Logger, d.Consumer),
	}, nil
}

// Start creates the consumers (the schema is migrated by the postgres
// module and `tani migrate`).
func (s *Service) Start(ctx context.Context) error {
	if err := s.consumer.Start(ctx); err != nil {
		return err
	}
	return s.erasures.Start(ctx)
}

// Run consumes in batches until ctx is done, erases farmers who asked to
// be forgotten, and tells organizations of their consents about to expire.
func (s *Service) Run(ctx context.Context) error {
	interval := s.cfg.ExpiringInterval
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	go expiringLoop(ctx, s.pool, interval, s.logger)
	return forget.RunWith(ctx, s.erasures, eraser.Handler(s.pool, s.erase, s.logger), func(ctx context.Context) error {
		return s.consumer.RunStaged(ctx, s.Prepare)
	})
}

// Stop has nothing to release: Run drains the consumer when ctx ends.
func (s *Service) Stop(context.Context) error { return nil }

// Handle is HandleBatch for one message.
func (s *Service) Handle(ctx context.Context, msg jetstream.Msg) error {
	return s.HandleBatch(ctx, []jetstream.Msg{msg})[0]
}

// item is one message on its way through a batch; err is its outcome.
type item struct {
	msg       jetstream.Msg
	rec       record.Record
	env       record.Envelope
	payload   record.Payload
	canonical []byte
	stored    json.RawMessage   // the payload as stored: record.Protected's
	checkedBy ed25519.PublicKey // from the memo: the signature verified under this key
	sealed    []byte            // the signed record, sealed with the PII key
	hash      [32]byte
	seq       uint64
	received  time.Time
	agentID   string
	twinOf    *item // an earlier message of the batch with the same record id
	err       error
}

// HandleBatch verifies submitted records and stores each exactly once, with
// its normalized effect, then announces them; it returns one outcome per
// message. The stream is not trusted: the envelope, the payload, the
// signature and the device's binding to its agent are all checked again
// here. The batch is stored in one transaction, so one commit covers many
// records; a record that must be refused is taken out and the rest stored
// again, and if the transaction fails for a reason no record names, each
// record is retried in its own transaction so that one bad record cannot
// hold the others back. A refused record is dead-lettered by the consumer
// runner with its reason; the phone and operators hear of it from the DEAD
// stream (mobile.refusals), whatever the reason and whichever consumer
// refused it.
func (s *Service) HandleBatch(ctx context.Context, msgs []jetstream.Msg) []error {
	return s.Prepare(ctx, msgs)(ctx)
}

// Prepare is HandleBatch in the consumer's two stages: it decodes and
// checks the batch and verifies its signatures (CPU work that stores
// nothing), and returns what stores and announces it. The consumer
// prepares the next batch while this one commits.
func (s *Service) Prepare(ctx context.Context, msgs []jetstream.Msg) func(context.Context) []error {
	items := make([]*item, len(msgs))
	parallel.For(len(msgs), func(i int) { items[i] = s.prepare(msgs[i]) })
	s.verify(ctx, items)
	return func(ctx context.Context) []error {
		s.storeAll(ctx, items)
		s.forgetErased(ctx, items)
		s.announce(ctx, items)
		errs := make([]error, len(items))
		for i, it := range items {
			errs[i] = it.err
		}
		return errs
	}
}

// prepare checks what can be checked without the database.
func (s *Service) prepare(msg jetstream.Msg) *item {
	it := &item{msg: msg}
	md, err := msg.Metadata()
	if err != nil {
		it.err = fmt.Errorf("message metadata: %w", err)
		return it
	}
	it.seq, it.received = md.Sequence.Stream, md.Timestamp
	// The same strict read as mobile-api's: the record's canonical bytes
	// and the typed view of them, which is what is stored and announced.
	// Bytes mobile-api checked in this process are taken as it read them.
	data := msg.Data()
	hash := record.Hash(data)
	rec, key, memoized := s.memo.Take(hash, data)
	if !memoized {
		var problems []apperr.FieldError
		if rec, problems = record.Check(s.validator, data, md.Timestamp); len(problems) > 0 {
			it.err = apperr.Fields(fmt.Sprintf("invalid record %s on %s", rec.Env.ID, msg.Subject()), problems...)
			return it
		}
		hash = record.Hash(rec.Canonical)
	}
	env := rec.Env
	it.rec, it.env, it.payload, it.canonical, it.checkedBy = rec, env, rec.Payload, rec.Canonical, key
	if msg.Subject() != natsbus.SubjectSubmittedPrefix+string(env.Type) {
		it.err = apperr.Errorf(apperr.Invalid, "record %s of type %q arrived on %s", env.ID, env.Type, msg.Subject())
		return it
	}
	it.hash = hash
	// National IDs and phones never rest in clear: the queryable payload is
	// the protected form, the signed original is kept sealed.
	if it.stored, err = it.rec.ProtectedPayload(s.pii); err != nil {
		it.err = apperr.Wrap(apperr.Invalid, err, "record %s cannot be protected", env.ID)
		return it
	}
	it.sealed = s.pii.Encrypt(string(it.canonical))
	return it
}

// pending returns the items still without an outcome.
func pending(items []*item) []*item {
	var out []*item
	for _, it := range items {
		if it.err == nil && it.twinOf == nil {
			out = append(out, it)
		}
	}
	return out
}

// verify checks each signature with its device's enrolled key, loading
// every device of the batch at once, and sets the agent the device is
// bound to. A device revoked before the record reached the platform cannot
// vouch for it.
func (s *Service) verify(ctx context.Context, items []*item) {
	todo := pending(items)
	if len(todo) == 0 {
		return
	}
	ids := make([]string, 0, len(todo))
	for _, it := range todo {
		ids = append(ids, it.env.DeviceID)
	}
	type device struct {
		agentID   string
		key       []byte
		revokedAt *time.Time
	}
	devices := map[string]device{}
	rows, err := s.pool.Query(ctx, `SELECT device_id::text, agent_id::text, public_key, revoked_at FROM mobile.device_keys WHERE device_id = ANY($1::text[]::uuid[])`, ids)
	if err == nil {
		for rows.Next() {
			var id string
			var d device
			if err = rows.Scan(&id, &d.agentID, &d.key, &d.revokedAt); err != nil {
				break
			}
			devices[id] = d
		}
		rows.Close()
		err = cmp.Or(err, rows.Err())
	}
	if err != nil {
		for _, it := range todo {
			it.err = fmt.Errorf("load device %s: %w", it.env.DeviceID, err)
		}
		return
	}
	// The signatures of the batch are checked together (record.Keys).
	var recs []*record.Record
	var keys []ed25519.PublicKey
	var signed []*item
	for _, it := range todo {
		env := it.env
		d, ok := devices[env.DeviceID]
		switch {
		case !ok:
			it.err = apperr.Errorf(apperr.Invalid, "record %s: device %s is not enrolled", env.ID, env.DeviceID)
		case d.revokedAt != nil && d.revokedAt.Before(it.received):
			it.err = apperr.Errorf(apperr.Invalid, "record %s: device %s was revoked at %s", env.ID, env.DeviceID, d.revokedAt.Format(time.RFC3339))
		default:
			// A record this process verified under the same key is not
			// verified again.
			if it.checkedBy == nil || !it.checkedBy.Equal(ed25519.PublicKey(d.key)) {
				recs, keys, signed = append(recs, &it.rec), append(keys, ed25519.PublicKey(d.key)), append(signed, it)
			}
			it.agentID = d.agentID
		}
	}
	for i, err := range s.keys.Verify(recs, keys) {
		if err != nil {
			signed[i].err = apperr.Wrap(apperr.Invalid, err, "record %s: %v", signed[i].env.ID, err)
		}
	}
}

// storeAll stores the verified items, split by farmer into partitions that
// are stored side by side, each in its own transaction (storePartition).
// It returns when every partition's transaction has ended, so the batch's
// messages are settled only then, each by the outcome of the transaction
// that held its record: a partition that failed leaves its records
// without a nil outcome, and never changes the others'. A farmer's records
// are all in one partition, in the order they arrived, and batches are
// stored one after the other (the consumer commits them in order), so each
// farmer's records are applied in stream order, as with one transaction.
func (s *Service) storeAll(ctx context.Context, items []*item) {
	first := map[string]*item{}
	for _, it := range pending(items) {
		if f, ok := first[it.env.ID]; ok {
			it.twinOf = f
			continue
		}
		first[it.env.ID] = it
	}
	parts := partitionByFarmer(pending(items), s.cfg.Partitions)
	var wg sync.WaitGroup
	for _, part := range parts[1:] {
		if len(part) > 0 {
			wg.Go(func() { s.storePartition(ctx, part) })
		}
	}
	s.storePartition(ctx, parts[0])
	wg.Wait()
	// A record sent twice in one batch shares the first one's fate, unless
	// its content differs: then it is a conflict like any other.
	for _, it := range items {
		if f := it.twinOf; f != nil {
			it.twinOf = nil
			if f.hash != it.hash {
				it.err = apperr.Errorf(apperr.Conflict, "record %s was already ingested with different content; the original is kept", it.env.ID)
			} else {
				it.err, it.agentID = f.err, f.agentID
			}
		}
	}
}

// partitionByFarmer splits items into n partitions by their farmer,
// keeping their order within each partition. Records with the same id
// have the same farmer unless their content differs (then the later one
// is a twin refused as a conflict, never stored), so a record's
// redeliveries always meet in one partition too.
func partitionByFarmer(items []*item, n int) [][]*item {
	parts := make([][]*item, max(n, 1))
	if len(parts) == 1 {
		parts[0] = items
		return parts
	}
	for _, it := range items {
		p := maphash.String(farmerSeed, it.payload.Farmer()) % uint64(len(parts))
		parts[p] = append(parts[p], it)
	}
	return parts
}

// farmerSeed spreads farmers over partitions; any seed keeps a farmer in
// one partition for the life of the process, which is all order needs.
var farmerSeed = maphash.MakeSeed()

// storePartition stores items in one transaction, or one by one when that
// transaction fails for a reason no single record was named for.
func (s *Service) storePartition(ctx context.Context, todo []*item) {
	if len(todo) == 0 {
		return
	}
	err := s.store(ctx, todo)
	if err == nil {
		return
	}
	if len(todo) == 1 {
		todo[0].err = fmt.Errorf("ingest record %s: %w", todo[0].env.ID, err)
		return
	}
	s.logger.WarnContext(ctx, "batch not stored; storing its records one by one", "records", len(todo), "err", err)
	for _, it := range todo {
		if err := s.store(ctx, []*item{it}); err != nil {
			it.err = fmt.Errorf("ingest record %s: %w", it.env.ID, err)
		}
	}
}

// store inserts the raw records that are not already there and applies
// the new ones, in one transaction. The same id with different content is
// a conflict: the original is kept. Records refused on the way get their
// err set and the rest are stored again without them; the returned error
// is for the transaction as a whole.
func (s *Service) store(ctx context.Context, items []*item) error {
	for {
		todo := pending(items)
		if len(todo) == 0 {
			return nil
		}
		var refused bool
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			todo, err := s.fenceErased(ctx, tx, todo)
			if err != nil || len(todo) == 0 {
				return err
			}
			fresh, err := s.insert(ctx, tx, todo)
			if err != nil {
				return err
			}
			conflicts, err := s.apply(ctx, tx, fresh)
			if err != nil {
				return err
			}
			if len(conflicts) > 0 {
				refused = true
				return errRefused
			}
			return nil
		})
		if refused {
			continue // their submissions were rolled back with the rest
		}
		return err
	}
}

// errRefused rolls a batch back after some of its records were refused.
var errRefused = errors.New("records refused; storing the others again")

// submissionColumns are what ingest writes of an ingest.submissions row
// (ingested_at is the commit's clock), in copyNew's order.
var submissionColumns = []string{"id", "type", "captured_at", "payload", "sealed_record", "content_hash", "stream_seq", "device_id", "agent_id"}

// insert adds the raw records and returns those that were new. The others
// are redeliveries or retried uploads (nothing to do) or conflicts (err
// set).
//
// A batch almost always holds only records never stored before, and for
// those one binary COPY costs Postgres much less than an INSERT … ON
// CONFLICT from arrays (no speculative insertion, no array decoding, no
// RETURNING): copyNew tries that first, under a savepoint. If any id of
// the batch is already there, the COPY fails on the primary key as a
// whole, is rolled back to the savepoint, and the batch takes the INSERT
// … ON CONFLICT path, which tells the new records from the others.
func (s *Service) insert(ctx context.Context, tx pgx.Tx, items []*item) ([]*item, error) {
	switch err := copyNew(ctx, tx, items); {
	case err == nil:
		return items, nil
	case postgres.Code(err) != postgres.CodeUniqueViolation:
		return nil, err
	}
	return s.insertOrKeep(ctx, tx, items)
}

// copyNew stores items by COPY, all or none: an id already stored fails
// it (and rolls it back to its savepoint) with a unique violation.
func copyNew(ctx context.Context, tx pgx.Tx, items []*item) error {
	rows := make([][]any, len(items))
	for i, it := range items {
		id, err1 := uuid.Parse(it.env.ID)
		device, err2 := uuid.Parse(it.env.DeviceID)
		agent, err3 := uuid.Parse(it.agentID)
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("record %s: %w", it.env.ID, err)
		}
		// [16]byte, not uuid.UUID: pgx encodes the array type directly,
		// but a uuid.UUID is a driver.Valuer, which pgx turns into its
		// text form and parses back for every value of every row.
		rows[i] = []any{[16]byte(id), string(it.env.Type), it.env.Captured(), string(it.stored), it.sealed, it.hash[:], int64(it.seq), [16]byte(device), [16]byte(agent)}
	}
	return postgres.CopyNew(ctx, tx, pgx.Identifier{"ingest", "submissions"}, submissionColumns, rows)
}

// insertOrKeep stores the records whose id is not there yet and sorts the
// others into redeliveries and conflicts.
func (s *Service) insertOrKeep(ctx context.Context, tx pgx.Tx, items []*item) ([]*item, error) {
	n := len(items)
	ids, types, payloads, devices, agents := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	captured, sealed, hashes, seqs := make([]time.Time, n), make([][]byte, n), make([][]byte, n), make([]int64, n)
	for i, it := range items {
		ids[i], types[i], payloads[i], devices[i], agents[i] = it.env.ID, string(it.env.Type), string(it.stored), it.env.DeviceID, it.agentID
		captured[i], sealed[i], hashes[i], seqs[i] = it.env.Captured(), it.sealed, it.hash[:], int64(it.seq)
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO ingest.submissions (id, type, captured_at, payload, sealed_record, content_hash, stream_seq, device_id, agent_id)
		SELECT id, type, captured, payload::jsonb, sealed, hash, seq, device, agent
		FROM unnest($1::text[]::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::bytea[], $6::bytea[], $7::bigint[], $8::text[]::uuid[], $9::text[]::uuid[])
		    AS r(id, type, captured, payload, sealed, hash, seq, device, agent)
		ON CONFLICT (id) DO NOTHING
		RETURNING id::text`,
		ids, types, captured, payloads, sealed, hashes, seqs, devices, agents)
	if err != nil {
		return nil, fmt.Errorf("store %d records: %w", n, err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store %d records: %w", n, err)
	}
	isNew := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		isNew[id] = true
	}
	var fresh, old []*item
	for _, it := range items {
		if isNew[it.env.ID] {
			fresh = append(fresh, it)
		} else {
			old = append(old, it)
		}
	}
	if len(old) == 0 {
		return fresh, nil
	}
	oldIDs := make([]string, len(old))
	for i, it := range old {
		oldIDs[i] = it.env.ID
	}
	rows, err = tx.Query(ctx, `SELECT id::text, content_hash FROM ingest.submissions WHERE id = ANY($1::text[]::uuid[])`, oldIDs)
	if err != nil {
		return nil, fmt.Errorf("load %d stored records: %w", len(old), err)
	}
	stored := map[string][]byte{}
	var id string
	var hash []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &hash}, func() error { stored[id] = hash; return nil }); err != nil {
		return nil, fmt.Errorf("load %d stored records: %w", len(old), err)
	}
	for _, it := range old {
		if !bytes.Equal(stored[it.env.ID], it.hash[:]) {
			it.err = apperr.Errorf(apperr.Conflict, "record %s was already ingested with different content; the original is kept", it.env.ID)
		}
	}
	return fresh, nil
}

// announce publishes farm.ingested for every stored record, after the
// commit: the records that share a type, an agent and a device (the
// headers attest checks each record against) travel together, in bundles
// (natsbus.Bundle). A crash between commit and publish redelivers the
// message; store is then a no-op and the records are announced again,
// de-duplicated by message ID when the bundles come out the same, taken
// by attest as the redeliveries they are otherwise.
func (s *Service) announce(ctx context.Context, items []*item) {
	type origin struct {
		typ           record.Type
		agent, device string
	}
	groups := map[origin][]*item{}
	var order []origin
	announced := map[string]bool{} // a record sent twice in one batch is announced once
	for _, it := range items {
		if it.err != nil || announced[it.env.ID] {
			continue
		}
		announced[it.env.ID] = true
		o := origin{it.env.Type, it.agentID, it.env.DeviceID}
		if _, ok := groups[o]; !ok {
			order = append(order, o)
		}
		groups[o] = append(groups[o], it)
	}
	var msgs []*nats.Msg
	var carried [][]*item // the records of each message
	for _, o := range order {
		its := groups[o]
		records, ids := make([][]byte, len(its)), make([]string, len(its))
		for i, it := range its {
			records[i], ids[i] = it.canonical, "ingested:"+it.env.ID
		}
		for _, msg := range natsbus.Bundle(natsbus.SubjectIngestedPrefix+string(o.typ), records, ids) {
			msg.Header.Set(natsbus.HeaderAgentID, o.agent)
			msg.Header.Set(natsbus.HeaderDeviceID, o.device)
			n := natsbus.RecordsIn(msg.Header)
			msgs, carried, its = append(msgs, msg), append(carried, its[:n]), its[n:]
		}
	}
	if _, err := natsbus.PublishAll(ctx, s.js, msgs); err != nil {
		for i, its := range carried {
			if err := natsbus.FailedAt(err, i); err != nil {
				for _, it := range its {
					it.err = fmt.Errorf("announce ingested: %w", err)
				}
			}
		}
	}
}
