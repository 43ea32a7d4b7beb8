package ledger

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"
)

// The audit reads both tables (ledger.entries and ledger.hash_runs) whole,
// each as one binary COPY … TO STDOUT streamed on a connection of its own
// in the audit's snapshot, so that the server sends entries and hash runs
// at once; the entry rows are decoded as they arrive and checked by a
// worker per core (leaf bytes against their columns, leaf and payload
// hashes), and the auditor recomputes the tree from them in order, taking
// the stored hashes out of the runs as it reaches them. Memory stays
// bounded: a few batches in flight.
//
// The tables are copied as stored, not sorted: a plain COPY of a table is
// the cheapest read PostgreSQL has, and an append-only table is stored in
// index order. Rows stored out of order (an entry whose payload a
// redaction erased was rewritten elsewhere) are read ahead by index when
// the stream skips them, and skipped when the stream reaches them.

// entryColumns are the columns of ledger.entries the audit reads, in the
// order decodeEntry expects.
const entryColumns = "idx, data, type, record_id, kind, revision, payload_hash, occurred_at, signature_ref, logged_at, target, payload, redacted_by"

const (
	// streamBatch is how many rows travel together from a stream to the
	// workers and the auditor.
	streamBatch = 2048
	// streamAhead bounds the batches decoded ahead of the auditor, per
	// stream.
	streamAhead = 8
)

// entryRow is one row of ledger.entries as the audit reads it. Its byte
// fields point into the batch's buffer; the audit never keeps them past
// the chunk they are in.
type entryRow struct {
	idx                                             int64
	data, typ, recordID, kind, payloadHash, sigRef  []byte
	revision                                        int64
	occurredAt, loggedAt                            time.Time
	hasOccurred, hasTarget, hasPayload, hasRedacted bool
	target, redactedBy                              int64
	payload                                         []byte

	// Set by a worker (checkRow).
	check rowCheck
}

// hashRow is one stored hash, as the auditor takes them out of the runs.
type hashRow struct {
	id   int64
	hash []byte
}

// entryBatch is a run of rows in index order; done is closed once the
// workers checked every row. Batches are used again once the auditor is
// past them, with the buffer their rows point into.
type entryBatch struct {
	rows  []entryRow
	arena []byte
	done  chan struct{}
}

// streamReadBuffer is the read buffer of an audit stream's connection.
const streamReadBuffer = 256 << 10

// snapshotName is what pg_export_snapshot returns.
var snapshotName = regexp.MustCompile(`^[0-9A-Fa-f-]+$`)

// openInSnapshot opens a connection of its own (so that the pool's size
// does not matter) whose transaction sees exactly the snapshot named.
func openInSnapshot(ctx context.Context, pool *pgxpool.Pool, snapshot string) (*pgx.Conn, error) {
	if !snapshotName.MatchString(snapshot) {
		return nil, fmt.Errorf("audit: unexpected snapshot name %q", snapshot)
	}
	cfg := pool.Config().ConnConfig.Copy()
	// The stream arrives in the server's 8 KB sends; read from the socket
	// in pieces of up to streamReadBuffer instead of one read(2) per 8 KB
	// (a tenth of the audit's own CPU went to those syscalls).
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, streamReadBuffer), w)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("audit: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("audit: begin: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("audit: share the snapshot: %w", err)
	}
	return conn, nil
}

// streams are the two table streams of one audit.
type streams struct {
	entries chan *entryBatch // in index order
	free    chan *entryBatch // batches the auditor is done with
	hashes  chan []hashRun   // in first order
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error

	// The auditor's cursors.
	cur   *entryBatch
	pos   int
	hcur  []hashRun
	hpos  int  // the run of hcur the auditor is in
	hoff  int  // the hash of that run it is at
	hseen bool // that run was handed to hashesBelow's seen
	hdone bool
	edone bool
}

func (s *streams) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
}

func (s *streams) firstErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// startStreams starts streaming every row of both tables in snapshot, in
// the order they are stored. Cancel ctx and call wait to stop early.
func startStreams(ctx context.Context, pool *pgxpool.Pool, snapshot string) (*streams, error) {
	ec, err := openInSnapshot(ctx, pool, snapshot)
	if err != nil {
		return nil, err
	}
	hc, err := openInSnapshot(ctx, pool, snapshot)
	if err != nil {
		ec.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	s := &streams{entries: make(chan *entryBatch, streamAhead), free: make(chan *entryBatch, 2*streamAhead+2),
		hashes: make(chan []hashRun, streamAhead)}
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *entryBatch, streamAhead)
	for range workers {
		s.wg.Go(func() {
			var w rowChecker
			for b := range work {
				for i := range b.rows {
					w.check(&b.rows[i])
				}
				close(b.done)
			}
		})
	}
	s.wg.Go(func() {
		defer ec.Close(context.WithoutCancel(ctx))
		defer close(work)
		defer close(s.entries)
		p := &copyParser{fields: 13}
		newBatch := func() *entryBatch {
			select {
			case b := <-s.free:
				b.rows, b.done = b.rows[:0], make(chan struct{})
				return b
			default:
				return &entryBatch{rows: make([]entryRow, 0, streamBatch), arena: make([]byte, 0, 1<<20), done: make(chan struct{})}
			}
		}
		// The parser copies each row into the arena of the batch it goes
		// in (or into a buffer of its own once that is full), so a batch
		// is taken before its first row is read.
		batch := newBatch()
		p.arena = batch.arena[:0]
		flush := func() bool {
			if len(batch.rows) == 0 {
				return true
			}
			select {
			case work <- batch:
			case <-ctx.Done():
				return false
			}
			select {
			case s.entries <- batch:
			case <-ctx.Done():
				return false
			}
			batch = newBatch()
			p.arena = batch.arena[:0]
			return true
		}
		p.emit = func(f [][]byte, buf []byte) error {
			r, err := decodeEntry(f)
			if err != nil {
				return err
			}
			batch.rows = append(batch.rows, r)
			if len(batch.rows) == streamBatch && !flush() {
				return ctx.Err()
			}
			return nil
		}
		if _, err := ec.PgConn().CopyTo(ctx, p, "COPY ledger.entries ("+entryColumns+") TO STDOUT (FORMAT binary)"); err != nil {
			s.fail(fmt.Errorf("audit: read entries: %w", err))
			return
		}
		if err := p.finish(); err != nil {
			s.fail(fmt.Errorf("audit: read entries: %w", err))
			return
		}
		flush()
	})
	s.wg.Go(func() {
		defer hc.Close(context.WithoutCancel(ctx))
		defer close(s.hashes)
		var batch []hashRun
		var batchBytes int
		flush := func() bool {
			if len(batch) == 0 {
				return true
			}
			select {
			case s.hashes <- batch:
				batch, batchBytes = nil, 0
				return true
			case <-ctx.Done():
				return false
			}
		}
		p := &copyParser{fields: 2}
		p.emit = func(f [][]byte, buf []byte) error {
			if len(f[0]) != 8 || f[1] == nil {
				return errors.New("hash run: unexpected first or hashes encoding")
			}
			if batch == nil {
				batch = make([]hashRun, 0, streamBatch)
			}
			batch = append(batch, hashRun{first: int64(binary.BigEndian.Uint64(f[0])), hashes: f[1]})
			batchBytes += len(f[1])
			// A batch of about as many hashes as an entry batch has
			// leaves' hashes, whatever the runs' lengths.
			if (len(batch) == cap(batch) || batchBytes >= 2*streamBatch*tlog.HashSize) && !flush() {
				return ctx.Err()
			}
			return nil
		}
		if _, err := hc.PgConn().CopyTo(ctx, p, "COPY ledger.hash_runs (first, hashes) TO STDOUT (FORMAT binary)"); err != nil {
			s.fail(fmt.Errorf("audit: read hashes: %w", err))
			return
		}
		if err := p.finish(); err != nil {
			s.fail(fmt.Errorf("audit: read hashes: %w", err))
			return
		}
		flush()
	})
	return s, nil
}

// wait waits for every goroutine of the streams; the caller cancels their
// context first when it stops early.
func (s *streams) wait() error {
	// Drain what is left so that no sender blocks.
	go func() {
		for range s.entries {
		}
	}()
	go func() {
		for range s.hashes {
		}
	}()
	s.wg.Wait()
	return s.firstErr()
}

// nextEntry returns the next entry row, or nil once the stream ended.
func (s *streams) nextEntry() (*entryRow, error) {
	for s.cur == nil || s.pos == len(s.cur.rows) {
		if s.edone {
			return nil, nil
		}
		if s.cur != nil {
			select {
			case s.free <- s.cur:
			default:
			}
			s.cur = nil
		}
		b, ok := <-s.entries
		if !ok {
			s.edone = true
			if err := s.firstErr(); err != nil {
				return nil, err
			}
			return nil, nil
		}
		<-b.done
		s.cur, s.pos = b, 0
	}
	r := &s.cur.rows[s.pos]
	return r, nil
}

// peekEntryIdx returns the index of the next entry row, or -1 at the end.
func (s *streams) peekEntryIdx() (int64, error) {
	r, err := s.nextEntry()
	if err != nil || r == nil {
		return -1, err
	}
	return r.idx, nil
}

// advanceEntry moves past the row nextEntry returned.
func (s *streams) advanceEntry() { s.pos++ }

// hashesBelow calls fn for the stored hashes the stream holds, run by
// run, before the first with an id of end or more (up to limit, beyond
// which hashes are passed over: they are not the tree's). It calls seen
// once for each run, before any of its hashes, and hands fn only whole
// hashes: the bytes after a run's last multiple of 32 are seen's to
// report.
func (s *streams) hashesBelow(end, limit int64, seen func(hashRun), fn func(hashRow)) error {
	for {
		for s.hpos < len(s.hcur) {
			r := s.hcur[s.hpos]
			if !s.hseen {
				seen(r)
				s.hseen = true
			}
			n := len(r.hashes) / tlog.HashSize
			for ; s.hoff < n; s.hoff++ {
				id := r.first + int64(s.hoff)
				if id >= end && id < limit {
					return nil
				}
				if id < end {
					fn(hashRow{id: id, hash: r.hashes[s.hoff*tlog.HashSize : (s.hoff+1)*tlog.HashSize : (s.hoff+1)*tlog.HashSize]})
				}
			}
			s.hpos, s.hoff, s.hseen = s.hpos+1, 0, false
		}
		if s.hdone {
			return nil
		}
		b, ok := <-s.hashes
		if !ok {
			s.hdone = true
			return s.firstErr()
		}
		s.hcur, s.hpos, s.hoff, s.hseen = b, 0, 0, false
	}
}

// pgEpoch is where PostgreSQL's binary timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func decodeTime(b []byte) (time.Time, error) {
	if len(b) != 8 {
		return time.Time{}, errors.New("timestamp: not 8 bytes")
	}
	us := int64(binary.BigEndian.Uint64(b))
	return pgEpoch.Add(time.Duration(us) * time.Microsecond), nil
}

func decodeInt8(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, errors.New("bigint: not 8 bytes")
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// decodeEntry decodes one row of the entries stream: idx, data, type,
// record_id, kind, revision, payload_hash, occurred_at, signature_ref,
// logged_at, target, payload, redacted_by.
func decodeEntry(f [][]byte) (entryRow, error) {
	var r entryRow
	var err error
	if f[0] == nil || f[1] == nil || f[2] == nil || f[3] == nil || f[4] == nil || f[5] == nil || f[6] == nil || f[8] == nil || f[9] == nil {
		return r, errors.New("entry row: NULL in a NOT NULL column")
	}
	if r.idx, err = decodeInt8(f[0]); err != nil {
		return r, err
	}
	r.data, r.typ, r.recordID, r.kind = f[1], f[2], f[3], f[4]
	if r.revision, err = decodeInt8(f[5]); err != nil {
		return r, err
	}
	r.payloadHash, r.sigRef = f[6], f[8]
	if f[7] != nil {
		r.hasOccurred = true
		if r.occurredAt, err = decodeTime(f[7]); err != nil {
			return r, err
		}
	}
	if r.loggedAt, err = decodeTime(f[9]); err != nil {
		return r, err
	}
	if f[10] != nil {
		r.hasTarget = true
		if r.target, err = decodeInt8(f[10]); err != nil {
			return r, err
		}
	}
	if f[11] != nil {
		r.hasPayload, r.payload = true, f[11]
	}
	if f[12] != nil {
		r.hasRedacted = true
		if r.redactedBy, err = decodeInt8(f[12]); err != nil {
			return r, err
		}
	}
	return r, nil
}

// copyParser decodes the binary COPY format (a signature and header, then
// tuples of length-prefixed fields, then a -1 trailer) as CopyTo writes
// it, in pieces of any size. emit gets each tuple's fields (nil for NULL),
// which stay valid: every tuple is copied into a buffer of its own batch.
type copyParser struct {
	fields int
	emit   func(fields [][]byte, buf []byte) error

	pending []byte // bytes of an incomplete tuple (or of the header)
	header  bool   // the header was read
	ended   bool   // the trailer was read
	arena   []byte
	tuple   [][]byte // the fields handed to emit, reused
}

var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// Write consumes the next piece of the stream.
func (p *copyParser) Write(b []byte) (int, error) {
	n := len(b)
	if len(p.pending) > 0 {
		p.pending = append(p.pending, b...)
		b = p.pending
	}
	rest, err := p.consume(b)
	if err != nil {
		return 0, err
	}
	p.pending = append(p.pending[:0:0], rest...)
	return n, nil
}

// consume decodes every complete tuple in b and returns what is left.
func (p *copyParser) consume(b []byte) ([]byte, error) {
	if !p.header {
		if len(b) < len(copySignature)+8 {
			return b, nil
		}
		if string(b[:len(copySignature)]) != string(copySignature) {
			return nil, errors.New("not a binary COPY stream")
		}
		ext := int(binary.BigEndian.Uint32(b[len(copySignature)+4:]))
		if len(b) < len(copySignature)+8+ext {
			return b, nil
		}
		b = b[len(copySignature)+8+ext:]
		p.header = true
	}
	if len(p.tuple) != p.fields {
		p.tuple = make([][]byte, p.fields)
	}
	fields := p.tuple
	for len(b) >= 2 {
		if p.ended {
			return nil, errors.New("data after the COPY trailer")
		}
		n := int16(binary.BigEndian.Uint16(b))
		if n == -1 {
			p.ended = true
			b = b[2:]
			continue
		}
		if int(n) != p.fields {
			return nil, fmt.Errorf("tuple of %d fields, want %d", n, p.fields)
		}
		// Find the tuple's end before copying it.
		off := 2
		complete := true
		for range p.fields {
			if len(b) < off+4 {
				complete = false
				break
			}
			l := int32(binary.BigEndian.Uint32(b[off:]))
			off += 4
			if l > 0 {
				off += int(l)
			}
			if len(b) < off {
				complete = false
				break
			}
		}
		if !complete {
			return b, nil
		}
		if cap(p.arena)-len(p.arena) < off {
			p.arena = make([]byte, 0, max(256<<10, off))
		}
		start := len(p.arena)
		p.arena = append(p.arena, b[:off]...)
		t := p.arena[start : start+off : start+off]
		pos := 2
		for i := range p.fields {
			l := int32(binary.BigEndian.Uint32(t[pos:]))
			pos += 4
			if l < 0 {
				fields[i] = nil
				continue
			}
			fields[i] = t[pos : pos+int(l) : pos+int(l)]
			pos += int(l)
		}
		if err := p.emit(fields, t); err != nil {
			return nil, err
		}
		b = b[off:]
	}
	return b, nil
}

// finish checks that the stream ended with its trailer.
func (p *copyParser) finish() error {
	if !p.ended || len(p.pending) > 0 {
		return errors.New("binary COPY stream cut short")
	}
	return nil
}
