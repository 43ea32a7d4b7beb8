package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// copyMinLeaves is the group size from which the one-round-trip append
// writes its rows with binary COPY instead of unnest'ed parameter arrays.
// pgx encodes every element of those arrays through its type map; a COPY
// stream encoded here by hand costs a fraction of that (a quarter less
// process CPU per entry at 1,000 leaves), but takes two more round trips
// (COPY entries, commit) while the sequencer lock is held. Small groups
// lose by it: with 64 concurrent callers (groups of about 32) a threshold
// of 16 cut throughput to a third (docs/ledger-benchmarks.md; measured
// when the stored hashes were a COPY of their own, a third extra trip).
const copyMinLeaves = 256

// The COPY statements of the copy path: the columns fastInsertEntries
// writes, in copyEntries' order.
const (
	copyEntriesSQL = "COPY ledger.entries (idx, data, type, record_id, kind, revision, payload_hash, occurred_at, signature_ref, logged_at, payload) FROM STDIN (FORMAT binary)"
)

// copyBuf builds a PostgreSQL binary COPY stream.
type copyBuf struct{ b []byte }

func newCopyBuf(size int) *copyBuf {
	c := &copyBuf{b: make([]byte, 0, size)}
	c.b = append(c.b, copySignature...)
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // flags
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // header extension length
	return c
}

func (c *copyBuf) row(fields int) { c.b = binary.BigEndian.AppendUint16(c.b, uint16(fields)) }

func (c *copyBuf) bytes(v []byte) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(v)))
	c.b = append(c.b, v...)
}

func (c *copyBuf) text(v string) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(v)))
	c.b = append(c.b, v...)
}

func (c *copyBuf) int8(v int64) {
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(v))
}

// pgEpochMicros is 2000-01-01 UTC, PostgreSQL's timestamp epoch, in Unix
// microseconds.
const pgEpochMicros = 946_684_800_000_000

// timestamptz writes t, which the journal keeps to the microsecond.
func (c *copyBuf) timestamptz(t time.Time) { c.int8(t.UnixMicro() - pgEpochMicros) }

func (c *copyBuf) end() []byte {
	c.b = binary.BigEndian.AppendUint16(c.b, 0xffff)
	return c.b
}

// copyEntries encodes leaves, revisions stamped now at indexes from first,
// as the rows fastInsertEntries would insert.
func copyEntries(first int64, now time.Time, leaves []leaf) []byte {
	size := 32
	for _, l := range leaves {
		size += 11*4 + 2 + 8*3 + 8 + len(l.data) + len(l.entry.RecordID) + len(l.entry.Kind) + 32 + len(l.entry.SignatureRef) + len(l.payload) + len("revision")
	}
	c := newCopyBuf(size)
	for i, l := range leaves {
		e := &l.entry
		c.row(11)
		c.int8(first + int64(i))
		c.bytes(l.data)
		c.text("revision")
		c.text(e.RecordID)
		c.text(e.Kind)
		c.int8(e.Revision)
		c.bytes(e.PayloadHash[:])
		c.timestamptz(e.OccurredAt)
		c.text(e.SignatureRef)
		c.timestamptz(now)
		c.bytes(l.payload)
	}
	return c.end()
}

// sendCopy is sendFast for a large batch: on one connection, a pipeline
// takes the sequencer lock in an explicit transaction, runs the guard and
// inserts the batch's hash run; once the lock is held it returns, and
// wait streams the entries with binary COPY, advances the tree size and
// commits. The transaction checks and writes exactly what sendFast's does,
// in three round trips instead of one.
func (j *Journal) sendCopy(ctx context.Context, batch []*appendReq, base tree, now time.Time, leaves []leaf, front []int64, frontHashes [][]byte, run hashRun, grown tree) (wait func() error, err error) {
	ids := make([]string, len(leaves))
	for i, l := range leaves {
		ids[i] = l.entry.RecordID
	}
	entryRows := copyEntries(base.size, now, leaves)

	select {
	case j.inflight <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("ledger append: %w", ctx.Err())
	}
	conn, err := j.pool.Acquire(ctx)
	if err != nil {
		return func() error {
			<-j.inflight
			return fmt.Errorf("ledger append: acquire: %w", err)
		}, nil
	}
	// A connection given back inside a transaction (any failure below) is
	// closed by the pool, which rolls the transaction back.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT pg_advisory_xact_lock($1)", sequencerLock)
	b.Queue("SELECT ledger.append_guard($1, $2, $3, $4)", base.size, front, frontHashes, ids)
	b.Queue(insertHashRun, run.first, run.hashes)
	br := conn.SendBatch(ctx, b)
	fail := func(step string, err error) func() error {
		return func() error {
			defer func() { <-j.inflight }()
			br.Close()
			conn.Release()
			return fmt.Errorf("ledger append: %s: %w", step, err)
		}
	}
	if _, err := br.Exec(); err != nil {
		return fail("begin", err), nil
	}
	// Keep seq until this transaction holds the sequencer lock: the
	// pipeline is answered at its Sync, once the guard and the hash run
	// are through, and the explicit transaction stays open, so the next
	// append is sent now and queues behind this one in the database.
	if _, err := br.Exec(); err != nil {
		return fail("take sequencer lock", err), nil
	}
	j.spec = grown
	return func() error {
		defer func() { <-j.inflight }()
		defer conn.Release()
		_, err := br.Exec() // the guard
		if err == nil {
			_, err = br.Exec() // the hash run
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("ledger append: %w", err)
		}
		pc := conn.Conn().PgConn()
		if _, err := pc.CopyFrom(ctx, bytes.NewReader(entryRows), copyEntriesSQL); err != nil {
			return fmt.Errorf("ledger append: copy entries: %w", err)
		}
		if err := commitSize(ctx, pc, grown.size); err != nil {
			return err
		}
		j.commit(grown, "fast")
		j.entries.Add(float64(len(leaves)))
		placeBatch(batch, base.size)
		return nil
	}, nil
}

// commitSize advances the tree size and commits, in one round trip.
func commitSize(ctx context.Context, pc *pgconn.PgConn, size int64) error {
	results, err := pc.Exec(ctx, "UPDATE ledger.tree SET size = "+strconv.FormatInt(size, 10)+"; COMMIT").ReadAll()
	if err != nil {
		return fmt.Errorf("ledger append: commit: %w", err)
	}
	// COMMIT of a failed transaction answers ROLLBACK, not an error.
	if len(results) != 2 || results[1].CommandTag.String() != "COMMIT" {
		return fmt.Errorf("ledger append: commit: the transaction was rolled back")
	}
	return nil
}
