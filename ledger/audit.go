package ledger

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/ledger/verify"
)

// FaultKind names what an audit found happened to the stored journal: an
// auditor must be told what was done, not only where the numbers stop
// adding up.
type FaultKind string

// The faults an audit reports.
const (
	// Rows of ledger.entries.
	FaultEntryRewritten   FaultKind = "entry data rewritten" // leaf bytes changed; the hash rows above still commit to the old ones
	FaultEntryDeleted     FaultKind = "entry deleted"        // no row for a leaf index inside the tree
	FaultEntriesReordered FaultKind = "entries reordered"    // a row holds the leaf committed at another index
	FaultEntryExtra       FaultKind = "entry beyond tree"    // a row past the tree size
	FaultEntryMalformed   FaultKind = "entry malformed"      // leaf bytes are not a canonical entry
	FaultColumnChanged    FaultKind = "index column changed" // a lookup column disagrees with the leaf bytes
	FaultPayloadChanged   FaultKind = "payload changed"      // the payload's hash is not the one the leaf commits to
	FaultPayloadErased    FaultKind = "payload erased"       // a payload is gone without a journaled redaction
	// Stored tree hashes (rows of ledger.hash_runs; a "hash row" is one
	// hash of a run, a row of the ledger.hashes view).
	FaultLeafHashEdited     FaultKind = "leaf hash row edited"     // a level-0 hash row disagrees with its entry and with the tree above it
	FaultInteriorHashEdited FaultKind = "interior hash row edited" // a higher-level hash row is not the hash of the leaves below it
	FaultHashMissing        FaultKind = "hash row missing"         // a stored tree hash is absent
	FaultHashExtra          FaultKind = "hash row beyond tree"     // stored tree hashes past the tree size
	FaultHashRunsOverlap    FaultKind = "hash runs overlap"        // two runs hold hashes of the same ids; appends never write that
	FaultHashRunMalformed   FaultKind = "hash run malformed"       // a run's length is not a positive multiple of 32 bytes
	// Signed and anchored trees.
	FaultHistoryRewritten   FaultKind = "history rewritten"                  // a signed or anchored root is not the root of the stored entries
	FaultTruncated          FaultKind = "truncated"                          // the log signed, or the chain anchored, more entries than are stored
	FaultKeyFork            FaultKind = "key signed a fork"                  // the log key signed two trees that are not consistent
	FaultCheckpointOtherKey FaultKind = "checkpoint signed with another key" // the note carries no signature by the log key
	FaultCheckpointAltered  FaultKind = "checkpoint altered"                 // the log key's signature does not verify, or the row disagrees with its note
	FaultCheckpointDeleted  FaultKind = "checkpoint deleted"                 // the chain anchors a size ledger.checkpoints has no row for
	FaultAnchorRemoved      FaultKind = "anchor reference removed"           // the chain anchors a checkpoint whose row names no anchor
	FaultAnchorRewritten    FaultKind = "anchor reference rewritten"         // a row names an anchor the chain does not hold
	FaultChainKey           FaultKind = "chain holds another key"            // the chain registers, or anchored notes of, a key that is not the audit's
)

// Fault is one thing wrong with the stored journal. Index is the first leaf
// index known to be bad, or -1 when the fault is not about a leaf.
type Fault struct {
	Kind   FaultKind
	Index  int64
	Size   int64 // tree size of the checkpoint or anchor concerned, or 0
	Detail string
}

func (f Fault) String() string {
	var where []string
	if f.Index >= 0 {
		where = append(where, fmt.Sprintf("index %d", f.Index))
	}
	if f.Size > 0 {
		where = append(where, fmt.Sprintf("size %d", f.Size))
	}
	if len(where) == 0 {
		where = append(where, "log")
	}
	return fmt.Sprintf("%s: %s: %s", strings.Join(where, ", "), f.Kind, f.Detail)
}

// Report is the outcome of an audit.
type Report struct {
	TreeSize    int64
	Entries     int64 // rows examined
	Checkpoints int64 // checkpoints examined
	// Chain is set when the audit was given the chain's anchors; without
	// them truncation, rollback and deleted checkpoints cannot be seen.
	Chain          bool
	ChainAnchors   int64 // anchors the chain holds for the log's origin
	LatestAnchored int64 // the largest of them, 0 if none
	AnchorRefs     int64 // anchor references in ledger.checkpoints
	Anchors        int64 // of those, found exactly as the chain holds them
	// SignedSize is the largest signed or anchored size whose root matched
	// the entries; entries after it are checked against their hash rows
	// only, since no signature covers them yet.
	SignedSize int64
	Faults     []Fault
	// Truncated is set when more faults were found than MaxFaults.
	Truncated bool
	Duration  time.Duration
}

// FirstBadIndex returns the smallest leaf index named by a fault, or -1.
func (r *Report) FirstBadIndex() int64 {
	first := int64(-1)
	for _, f := range r.Faults {
		if f.Index >= 0 && (first < 0 || f.Index < first) {
			first = f.Index
		}
	}
	return first
}

// OK reports whether the audit found nothing wrong.
func (r *Report) OK() bool { return len(r.Faults) == 0 }

// AuditOptions tunes an audit.
type AuditOptions struct {
	// Progress, when set, is called after each chunk with the leaves done.
	Progress func(done, total int64)
	// Chain is every anchor the chain holds for the log's origin (see
	// anchor.ReadChain), read before the audit starts. Nil means the chain
	// was not consulted: anchor references are counted but not checked,
	// and an attacker who also deletes the checkpoints above a rewrite or a
	// truncation goes unseen.
	Chain *Chain
	// MaxFaults bounds the report (default 100).
	MaxFaults int
	// ChunkSize is how many leaves are read per query (default 10,000).
	ChunkSize int64
}

// Audit recomputes the journal from its stored rows; see the package-level
// Audit.
func (j *Journal) Audit(ctx context.Context, opts AuditOptions) (*Report, error) {
	return Audit(ctx, j.pool, j.verifier, opts)
}

// Audit recomputes the Merkle tree from the stored entries and checks every
// stored hash row, every entry's index columns and payload, every stored
// checkpoint's signature and root and, given the chain, every anchor the
// chain holds: the stored tree must have the chain's root at each anchored
// size, and reach the largest. It streams: memory does not grow with the
// log (only with the number of anchors). Faults go in the report; the error
// is only for failing to audit.
func Audit(ctx context.Context, pool *pgxpool.Pool, verifier note.Verifier, opts AuditOptions) (*Report, error) {
	if opts.MaxFaults <= 0 {
		opts.MaxFaults = 100
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 10_000
	}
	rf := &compact.RangeFactory{Hash: hashChildren}
	a := &auditor{
		verifier: verifier, opts: opts, rep: &Report{}, chain: opts.Chain,
		rf: rf, rng: rf.NewEmptyRange(0), erased: map[int64]bool{}, early: map[int64]bool{},
	}
	start := time.Now()
	if err := a.checkChain(); err != nil {
		return nil, err
	}
	// One snapshot for the whole audit: appends, checkpoints and redactions
	// committed meanwhile must not look like faults. The chain was read
	// before it, so every anchor in Chain had its checkpoint and entries
	// committed before the snapshot.
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("audit: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	a.db = tx
	if err := a.run(ctx, pool); err != nil {
		return nil, err
	}
	if err := tx.Rollback(ctx); err != nil {
		return nil, fmt.Errorf("audit: end snapshot: %w", err)
	}
	if err := a.recheckRemoved(ctx, pool); err != nil {
		return nil, err
	}
	a.rep.Duration = time.Since(start)
	return a.rep, nil
}

type auditor struct {
	db       pgx.Tx // a read-only snapshot, exported to the streams; queries run one at a time on it
	verifier note.Verifier
	opts     AuditOptions
	rep      *Report
	rf       *compact.RangeFactory
	rng      *compact.Range

	// hashes holds this chunk's stored hash rows, by id from hlo; nil
	// where there is no row. leafAt finds a leaf hash among them, made on
	// demand.
	hlo       int64
	hashes    [][]byte
	leafIndex map[tlog.Hash]int64
	// covered holds the ranges of stored-hash ids of the runs the stream
	// delivered so far, merged: a run that meets it overlaps another.
	covered []idRange
	// early holds the indexes of entries read ahead of the stream, which
	// stored them out of order: the stream's copies are passed over.
	early map[int64]bool
	// erased holds revisions whose payload is gone, until a redaction entry
	// naming them is seen.
	erased map[int64]bool
	// doubt is the last leaf of the tree when its row and its hash row
	// disagree and no stored parent says which one changed.
	doubt *leafDoubt

	// checkpoints is the queue of stored checkpoints not yet reached.
	checkpoints []*Checkpoint
	cpDone      bool
	loadedUpTo  int64 // size of the last checkpoint fetched

	chain     *Chain
	chainNext int  // index in chain.Anchors of the next anchor to reach
	chainBad  bool // a chain key fault is reported; anchored notes are not checked one by one
	// removed holds "anchor reference removed" faults to look at again
	// after the snapshot: the anchorer records an anchor just after the
	// chain commits it, so the snapshot may predate the reference.
	removed []removedRef

	// lastMatch is the largest signed size whose root matched the entries,
	// lastChainMatch the largest anchored one. dbRun and chainRun are the
	// open runs of checkpoints and anchors that did not match.
	lastMatch, lastChainMatch int64
	lastGood                  *claim
	dbRun, chainRun           *mismatchRun
	chainDiverged             bool // a chain run was opened: later anchors cannot match
}

type removedRef struct {
	fault int
	size  int64
	ref   verify.Anchor
}

// fault records f and returns its position in the report, or -1 when the
// report is full.
func (a *auditor) fault(f Fault) int {
	if len(a.rep.Faults) >= a.opts.MaxFaults {
		a.rep.Truncated = true
		return -1
	}
	a.rep.Faults = append(a.rep.Faults, f)
	return len(a.rep.Faults) - 1
}

// plural picks one or many (a format with one %d) by n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf(many, n)
}

func keyName(v note.Verifier) string { return fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash()) }

// checkChain checks what the chain says about the log before the entries:
// its anchors must be in size order (anchor.ReadChain guarantees it), and
// the key the chain registers must be the audit's.
func (a *auditor) checkChain() error {
	c := a.chain
	if c == nil {
		return nil
	}
	a.rep.Chain = true
	for i := range c.Anchors {
		if i > 0 && c.Anchors[i].Size <= c.Anchors[i-1].Size {
			return fmt.Errorf("audit: chain anchors are not in size order (%d after %d)", c.Anchors[i].Size, c.Anchors[i-1].Size)
		}
	}
	a.rep.ChainAnchors = int64(len(c.Anchors))
	a.rep.LatestAnchored = c.Latest()
	switch {
	case c.PublicKey == "" && len(c.Anchors) > 0:
		a.chainBad = true
		a.fault(Fault{Kind: FaultChainKey, Index: -1, Detail: fmt.Sprintf("the chain holds %d anchors of %s but no registered key for it", len(c.Anchors), a.verifier.Name())})
	case c.PublicKey != "":
		v, err := note.NewVerifier(c.PublicKey)
		if err != nil || v.Name() != a.verifier.Name() || v.KeyHash() != a.verifier.KeyHash() {
			a.chainBad = true
			a.fault(Fault{Kind: FaultChainKey, Index: -1, Detail: fmt.Sprintf(
				"the chain registers %s with key %s, but this audit checks with %s: the journal is not the log the chain knows, or -key names the wrong key",
				a.verifier.Name(), c.PublicKey, keyName(a.verifier))})
		}
	}
	return nil
}

func (a *auditor) run(ctx context.Context, pool *pgxpool.Pool) error {
	var size int64
	if err := a.db.QueryRow(ctx, "SELECT size FROM ledger.tree").Scan(&size); err != nil {
		return fmt.Errorf("audit: read tree size: %w", err)
	}
	a.rep.TreeSize = size
	if size > 0 {
		var snapshot string
		if err := a.db.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
			return fmt.Errorf("audit: export snapshot: %w", err)
		}
		sctx, cancel := context.WithCancel(ctx)
		s, err := startStreams(sctx, pool, snapshot)
		if err != nil {
			cancel()
			return err
		}
		for lo := int64(0); lo < size; lo += a.opts.ChunkSize {
			hi := min(lo+a.opts.ChunkSize, size)
			if err = a.chunk(ctx, s, lo, hi); err != nil {
				break
			}
			if a.opts.Progress != nil {
				a.opts.Progress(hi, size)
			}
		}
		if err == nil {
			err = s.wait()
		} else {
			cancel()
			s.wait()
		}
		cancel()
		if err != nil {
			return err
		}
	}
	if a.opts.Progress != nil && size == 0 {
		a.opts.Progress(0, 0)
	}
	return a.finish(ctx, size)
}

// stored returns this chunk's stored hash id, nil if it has no row.
func (a *auditor) stored(id int64) []byte {
	if id < a.hlo || id >= a.hlo+int64(len(a.hashes)) {
		return nil
	}
	return a.hashes[id-a.hlo]
}

// leafAt returns the leaf index whose stored leaf hash in this chunk is
// h.
func (a *auditor) leafAt(h tlog.Hash) (int64, bool) {
	if a.leafIndex == nil {
		a.leafIndex = map[tlog.Hash]int64{}
		for i, b := range a.hashes {
			if level, n := tlog.SplitStoredHashIndex(a.hlo + int64(i)); level == 0 && len(b) == tlog.HashSize {
				a.leafIndex[tlog.Hash(b)] = n
			}
		}
	}
	n, ok := a.leafIndex[h]
	return n, ok
}

func (a *auditor) chunk(ctx context.Context, s *streams, lo, hi int64) error {
	// Stored hashes of leaves lo..hi-1 are exactly ids [StoredHashIndex(0,lo), StoredHashIndex(0,hi)).
	hlo, hhi := tlog.StoredHashIndex(0, lo), tlog.StoredHashIndex(0, hi)
	a.hlo, a.leafIndex = hlo, nil
	a.hashes = slices.Grow(a.hashes[:0], int(hhi-hlo))[:hhi-hlo]
	clear(a.hashes)
	if err := s.hashesBelow(hhi, tlog.StoredHashIndex(0, a.rep.TreeSize), a.checkRun, func(h hashRow) {
		if h.id >= hlo {
			a.hashes[h.id-hlo] = h.hash
		}
	}); err != nil {
		return err
	}
	if err := a.readHashesAhead(ctx); err != nil {
		return err
	}
	next := lo
	for next < hi {
		r, err := s.nextEntry()
		if err != nil {
			return err
		}
		if r == nil {
			break
		}
		switch {
		case r.idx >= a.rep.TreeSize || r.idx < 0:
			// Not the tree's: finish reports rows beyond it.
			s.advanceEntry()
		case r.idx < next:
			if !a.early[r.idx] {
				return fmt.Errorf("audit: entry %d read twice", r.idx)
			}
			delete(a.early, r.idx)
			s.advanceEntry()
		case r.idx > next:
			// The stream skips [next, r.idx): stored elsewhere, or gone.
			end := min(r.idx, hi)
			if err := a.readAhead(ctx, next, end); err != nil {
				return err
			}
			next = end
		default:
			if err := a.entry(ctx, r); err != nil {
				return err
			}
			s.advanceEntry()
			next++
		}
	}
	// The stream ended: the rest of the chunk has no row.
	return a.readAhead(ctx, next, hi)
}

// entry checks one row in index order and grows the tree with it.
func (a *auditor) entry(ctx context.Context, r *entryRow) error {
	a.rep.Entries++
	a.columns(r)
	leaf, rowReported, err := a.leaf(ctx, r)
	if err != nil {
		return err
	}
	return a.addLeaf(ctx, r.idx, leaf, rowReported)
}

// readAhead reads the entries [lo, hi) by index from the snapshot, where
// the stream does not have them in order, and checks them; an index with
// no row is a deleted entry.
func (a *auditor) readAhead(ctx context.Context, lo, hi int64) error {
	if lo >= hi {
		return nil
	}
	var rows []entryRow
	p := &copyParser{fields: 13, emit: func(f [][]byte, _ []byte) error {
		r, err := decodeEntry(f)
		rows = append(rows, r)
		return err
	}}
	sql := fmt.Sprintf("COPY (SELECT %s FROM ledger.entries WHERE idx >= %d AND idx < %d ORDER BY idx) TO STDOUT (FORMAT binary)", entryColumns, lo, hi)
	if _, err := a.db.Conn().PgConn().CopyTo(ctx, p, sql); err != nil {
		return fmt.Errorf("audit: read entries %d..%d: %w", lo, hi, err)
	}
	if err := p.finish(); err != nil {
		return fmt.Errorf("audit: read entries %d..%d: %w", lo, hi, err)
	}
	var w rowChecker
	next := lo
	for i := range rows {
		r := &rows[i]
		for ; next < r.idx; next++ {
			if err := a.missing(ctx, next); err != nil {
				return err
			}
		}
		w.check(r)
		a.early[r.idx] = true
		if err := a.entry(ctx, r); err != nil {
			return err
		}
		next = r.idx + 1
	}
	for ; next < hi; next++ {
		if err := a.missing(ctx, next); err != nil {
			return err
		}
	}
	return nil
}

// readHashesAhead looks up the chunk's hash ids the stream did not have
// in order (stored elsewhere, or gone), by id from the snapshot.
func (a *auditor) readHashesAhead(ctx context.Context) error {
	var ask []int64
	for i, h := range a.hashes {
		if h == nil {
			ask = append(ask, a.hlo+int64(i))
		}
	}
	if len(ask) == 0 {
		return nil
	}
	got, err := queryHashes(ctx, a.db, ask)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for id, h := range got {
		a.hashes[id-a.hlo] = h[:]
	}
	return nil
}

// idRange is the stored-hash ids [lo, hi).
type idRange struct{ lo, hi int64 }

// checkRun checks one run as the stream delivers it, before its hashes are
// used: its length, and that no run delivered before holds any of its
// ids. Runs arrive in the order they are stored, which is first order
// unless a row was rewritten, so covered is one range in practice.
func (a *auditor) checkRun(r hashRun) {
	n := int64(len(r.hashes) / tlog.HashSize)
	if len(r.hashes)%tlog.HashSize != 0 || n == 0 {
		a.fault(Fault{Kind: FaultHashRunMalformed, Index: -1, Detail: fmt.Sprintf(
			"the run at id %d holds %d bytes, not a positive multiple of %d: %d whole hashes (ids [%d, %d)) and %s over",
			r.first, len(r.hashes), tlog.HashSize, n, r.first, r.first+n, plural(len(r.hashes)%tlog.HashSize, "1 byte", "%d bytes"))})
	}
	if n == 0 {
		return
	}
	lo, hi := r.first, r.first+n
	// The first range reaching lo (ending at it or after it).
	i, _ := slices.BinarySearchFunc(a.covered, lo, func(c idRange, id int64) int { return cmp.Compare(c.hi, id) })
	j := i
	for j < len(a.covered) && a.covered[j].lo <= hi {
		c := a.covered[j]
		if c.lo < hi && lo < c.hi {
			a.fault(Fault{Kind: FaultHashRunsOverlap, Index: -1, Detail: fmt.Sprintf(
				"the run at id %d (ids [%d, %d)) holds ids [%d, %d) that another run holds too: one of them was written by something other than an append",
				r.first, lo, hi, max(lo, c.lo), min(hi, c.hi))})
			break
		}
		j++
	}
	// Merge [lo, hi) with the ranges it meets or touches.
	k := i
	merged := idRange{lo, hi}
	for k < len(a.covered) && a.covered[k].lo <= hi {
		merged.lo, merged.hi = min(merged.lo, a.covered[k].lo), max(merged.hi, a.covered[k].hi)
		k++
	}
	a.covered = slices.Replace(a.covered, i, k, merged)
}

// missing handles a leaf index with no row: the stored leaf hash stands in
// for it, so that one deleted row is reported once rather than as a fault of
// every node and checkpoint above it.
func (a *auditor) missing(ctx context.Context, n int64) error {
	a.fault(Fault{Kind: FaultEntryDeleted, Index: n, Detail: "no row for this leaf index; the hash rows still commit to it"})
	leaf := a.stored(tlog.StoredHashIndex(0, n))
	if leaf == nil {
		leaf = make([]byte, tlog.HashSize) // nothing to go on; the signed roots after this will not match
	}
	return a.addLeaf(ctx, n, leaf, false)
}

// columns records what a worker found about one row (checkRow): faults in
// its lookup columns and payload, and the erasures it takes part in.
func (a *auditor) columns(r *entryRow) {
	for _, f := range r.check.faults {
		a.fault(f)
	}
	if r.check.erased {
		// A redaction entry naming this index must follow.
		a.erased[r.idx] = true
	}
	if r.check.redacts >= 0 {
		delete(a.erased, r.check.redacts)
	}
}

// rowCheck is what checkRow finds about one row.
type rowCheck struct {
	leaf   tlog.Hash // the leaf hash of the row's bytes
	faults []Fault
	// erased is set for a revision whose payload is gone with a
	// redaction recorded: a redaction entry naming it must follow.
	erased bool
	// redacts is the target of a redaction entry, else -1.
	redacts int64
}

// rowChecker checks rows on their own, as the workers do; its buffers
// serve row after row.
type rowChecker struct {
	buf  []byte
	leaf hash.Hash
}

// check checks one row's lookup columns and payload against its leaf
// bytes, and hashes the leaf (tlog.RecordHash).
func (w *rowChecker) check(r *entryRow) {
	if w.leaf == nil {
		w.leaf = sha256.New()
	}
	w.leaf.Reset()
	w.leaf.Write([]byte{0x00})
	w.leaf.Write(r.data)
	var leaf tlog.Hash
	w.leaf.Sum(leaf[:0])
	w.buf = checkRow(r, leaf, w.buf)
}

// checkRow is rowChecker.check given the leaf hash; buf is scratch space,
// returned for the next row.
func checkRow(r *entryRow, leaf tlog.Hash, buf []byte) []byte {
	c := &r.check
	*c = rowCheck{leaf: leaf, faults: c.faults[:0], redacts: -1}
	e, ok, buf := entryFromColumns(r, buf)
	if !ok {
		var err error
		if e, err = verify.ParseEntry(r.data); err != nil {
			c.faults = append(c.faults, Fault{Kind: FaultEntryMalformed, Index: r.idx, Detail: err.Error()})
			return buf
		}
		columnFaults(r, e)
	}
	switch e.Type {
	case verify.TypeRevision:
		switch {
		case !r.hasPayload:
			if !r.hasRedacted {
				c.faults = append(c.faults, Fault{Kind: FaultPayloadErased, Index: r.idx, Detail: "payload is gone and no redaction is recorded"})
			} else {
				c.erased = true
			}
		default:
			if sum := sha256.Sum256(r.payload); sum != e.PayloadHash {
				c.faults = append(c.faults, Fault{Kind: FaultPayloadChanged, Index: r.idx, Detail: fmt.Sprintf("the payload's SHA-256 is %x, the entry commits to %x", sum[:], e.PayloadHash[:])})
			}
		}
	case verify.TypeRedaction:
		c.redacts = e.Target
	}
	return buf
}

// entryFromColumns returns the revision the row's lookup columns describe
// when its leaf bytes are exactly that revision's encoding: then the leaf
// is canonical and every column agrees with it, without parsing it. Else
// ok is false and the row is parsed and compared column by column.
func entryFromColumns(r *entryRow, buf []byte) (e verify.Entry, ok bool, _ []byte) {
	if string(r.typ) != string(verify.TypeRevision) || !r.hasOccurred || len(r.payloadHash) != sha256.Size {
		return e, false, buf
	}
	// The strings only live while the row is checked: views of its bytes.
	e = verify.Entry{Type: verify.TypeRevision, RecordID: unsafe.String(unsafe.SliceData(r.recordID), len(r.recordID)),
		Kind: unsafe.String(unsafe.SliceData(r.kind), len(r.kind)), Revision: r.revision, OccurredAt: r.occurredAt,
		SignatureRef: unsafe.String(unsafe.SliceData(r.sigRef), len(r.sigRef)), LoggedAt: r.loggedAt}
	copy(e.PayloadHash[:], r.payloadHash)
	data, err := e.AppendBinary(buf[:0])
	if err != nil {
		return verify.Entry{}, false, buf
	}
	if !bytes.Equal(data, r.data) {
		return verify.Entry{}, false, data
	}
	return e, true, data
}

// columnFaults checks one row's lookup columns against its parsed leaf.
func columnFaults(r *entryRow, e verify.Entry) {
	col := func(name string, ok bool, got, want any) {
		if !ok {
			r.check.faults = append(r.check.faults, Fault{Kind: FaultColumnChanged, Index: r.idx, Detail: fmt.Sprintf("column %s holds %v, the entry says %v", name, got, want)})
		}
	}
	col("type", string(r.typ) == string(e.Type), string(r.typ), e.Type)
	col("record_id", string(r.recordID) == e.RecordID, fmt.Sprintf("%q", r.recordID), fmt.Sprintf("%q", e.RecordID))
	col("kind", string(r.kind) == e.Kind, fmt.Sprintf("%q", r.kind), fmt.Sprintf("%q", e.Kind))
	col("revision", r.revision == e.Revision, r.revision, e.Revision)
	col("payload_hash", bytes.Equal(r.payloadHash, e.PayloadHash[:]), hex.EncodeToString(r.payloadHash), hex.EncodeToString(e.PayloadHash[:]))
	col("signature_ref", string(r.sigRef) == e.SignatureRef, fmt.Sprintf("%q", r.sigRef), fmt.Sprintf("%q", e.SignatureRef))
	col("logged_at", r.loggedAt.Equal(e.LoggedAt), r.loggedAt.UTC().Format(time.RFC3339Nano), e.LoggedAt.UTC().Format(time.RFC3339Nano))
	switch e.Type {
	case verify.TypeRevision:
		got := "NULL"
		if r.hasOccurred {
			got = r.occurredAt.UTC().Format(time.RFC3339Nano)
		}
		col("occurred_at", r.hasOccurred && r.occurredAt.Equal(e.OccurredAt), got, e.OccurredAt.UTC().Format(time.RFC3339Nano))
	case verify.TypeRedaction:
		got := "NULL"
		if r.hasTarget {
			got = fmt.Sprint(r.target)
		}
		col("target", r.hasTarget && r.target == e.Target, got, e.Target)
	}
}

// leafDoubt is the tree's last leaf when its row and its leaf hash row
// disagree and no parent row exists to say which changed: the signed trees
// of the full size decide.
type leafDoubt struct {
	idx          int64
	data, stored []byte
	alt          *compact.Range // the tree with the row's hash instead of the stored one
}

// leaf decides which hash extends the recomputed tree for row r, and
// reports a row or hash row that disagrees with the tree. When the row's
// hash differs from its leaf hash row, the stored parent decides: it was
// computed from whichever of the two is the original. rowReported says the
// leaf hash row itself was reported as edited.
func (a *auditor) leaf(ctx context.Context, r *entryRow) (hash []byte, rowReported bool, err error) {
	h := r.check.leaf
	stored := a.stored(tlog.StoredHashIndex(0, r.idx))
	if stored == nil || bytes.Equal(stored, h[:]) {
		return h[:], false, nil // a missing hash row is reported as the tree grows
	}
	if m, ok := a.leafAt(h); ok && m != r.idx {
		a.fault(Fault{Kind: FaultEntriesReordered, Index: r.idx, Detail: fmt.Sprintf("row %d holds the entry committed at index %d", r.idx, m)})
		return stored, false, nil
	}
	sid := tlog.StoredHashIndex(0, r.idx)
	sib := r.idx ^ 1
	if sib >= a.rep.TreeSize {
		// The last leaf, with no sibling: only a signed tree of the full
		// size can tell; see resolveDoubt.
		alt, err := a.rf.NewRange(a.rng.Begin(), a.rng.End(), slices.Clone(a.rng.Hashes()))
		if err != nil {
			return nil, false, fmt.Errorf("audit: copy tree at %d: %w", r.idx, err)
		}
		if err := alt.Append(h[:], nil); err != nil {
			return nil, false, fmt.Errorf("audit: extend tree at %d: %w", r.idx, err)
		}
		a.doubt = &leafDoubt{idx: r.idx, data: h[:], stored: stored, alt: alt}
		return stored, false, nil
	}
	hs, err := a.storedHashes(ctx, tlog.StoredHashIndex(0, sib), tlog.StoredHashIndex(1, r.idx/2))
	if err != nil {
		return nil, false, err
	}
	sibHash, parent := hs[0], hs[1]
	with := func(x []byte) []byte {
		if r.idx%2 == 0 {
			return rfc6962.DefaultHasher.HashChildren(x, sibHash)
		}
		return rfc6962.DefaultHasher.HashChildren(sibHash, x)
	}
	switch {
	case sibHash != nil && parent != nil && bytes.Equal(parent, with(h[:])):
		a.fault(Fault{Kind: FaultLeafHashEdited, Index: r.idx, Detail: fmt.Sprintf(
			"stored hash %d (level 0, leaf %d) holds %x, but the entry hashes to %x and the parent row %d agrees with the entry: the entry is intact",
			sid, r.idx, stored, h[:], tlog.StoredHashIndex(1, r.idx/2))})
		return h[:], true, nil
	case sibHash != nil && parent != nil && bytes.Equal(parent, with(stored)):
		a.fault(Fault{Kind: FaultEntryRewritten, Index: r.idx, Detail: fmt.Sprintf(
			"the row's bytes hash to %x, but the leaf hash row and the tree above it commit to %x", h[:], stored)})
	default:
		a.fault(Fault{Kind: FaultEntryRewritten, Index: r.idx, Detail: fmt.Sprintf(
			"the row's bytes hash to %x, but its leaf hash row holds %x, and the parent row %d agrees with neither: more than one row or hash row around this leaf was changed",
			h[:], stored, tlog.StoredHashIndex(1, r.idx/2))})
	}
	return stored, false, nil
}

// storedHashes returns the stored hashes with the given ids (nil where
// absent), from the chunk's rows or else from the snapshot.
func (a *auditor) storedHashes(ctx context.Context, ids ...int64) ([][]byte, error) {
	out := make([][]byte, len(ids))
	var ask []int64
	for i, id := range ids {
		if h := a.stored(id); h != nil {
			out[i] = h
		} else {
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return out, nil
	}
	got, err := queryHashes(ctx, a.db, ask)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for i, id := range ids {
		if h, ok := got[id]; ok && out[i] == nil {
			out[i] = h[:]
		}
	}
	return out, nil
}

// addLeaf extends the recomputed tree with leaf n and checks every stored
// hash the leaf completes, then what was signed or anchored at the new
// size.
func (a *auditor) addLeaf(ctx context.Context, n int64, leaf []byte, rowReported bool) error {
	err := a.rng.Append(leaf, func(id compact.NodeID, h []byte) {
		sid := tlog.StoredHashIndex(int(id.Level), int64(id.Index))
		got := a.stored(sid)
		ok := got != nil
		first, end := id.Coverage()
		switch {
		case !ok:
			a.fault(Fault{Kind: FaultHashMissing, Index: int64(first), Detail: fmt.Sprintf("stored hash %d (level %d, node %d, leaves [%d, %d)) is missing", sid, id.Level, id.Index, first, end)})
		case bytes.Equal(got, h):
		case id.Level == 0:
			// Only an edited leaf row gets here, and leaf reported it.
			if !rowReported {
				a.fault(Fault{Kind: FaultLeafHashEdited, Index: int64(first), Detail: fmt.Sprintf("stored hash %d (level 0, leaf %d) differs from the entry's hash", sid, first)})
			}
		default:
			a.fault(Fault{Kind: FaultInteriorHashEdited, Index: int64(first), Detail: fmt.Sprintf(
				"stored hash %d (level %d, node %d, leaves [%d, %d)) holds %x, but the leaves below it hash to %x; proofs served through it are wrong, the entries are not changed by it",
				sid, id.Level, id.Index, first, end, got, h)})
		}
	})
	if err != nil {
		return fmt.Errorf("audit: extend tree at %d: %w", n, err)
	}
	return a.signedAt(ctx, n+1)
}

// hashChildren is rfc6962.DefaultHasher.HashChildren in one allocation
// instead of four (a digest, the joined input, the sum): the audit hashes
// one interior node per leaf on its serial path.
func hashChildren(l, r []byte) []byte {
	if len(l) != sha256.Size || len(r) != sha256.Size {
		return rfc6962.DefaultHasher.HashChildren(l, r) // a malformed stored hash, as the proofs would join it
	}
	var b [1 + 2*sha256.Size]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], l)
	copy(b[1+sha256.Size:], r)
	h := sha256.Sum256(b[:])
	return h[:]
}

// signedAt checks what was signed (ledger.checkpoints) and anchored (the
// chain) at tree size size against the recomputed tree.
func (a *auditor) signedAt(ctx context.Context, size int64) error {
	var cp *Checkpoint
	for {
		if len(a.checkpoints) == 0 && !a.cpDone {
			if err := a.loadCheckpoints(ctx); err != nil {
				return err
			}
		}
		if len(a.checkpoints) == 0 || a.checkpoints[0].Size > size {
			break
		}
		c := a.checkpoints[0]
		a.checkpoints = a.checkpoints[1:]
		if c.Size == size {
			cp = c
			continue
		}
		a.rep.Checkpoints++ // sizes below 1 only: no tree of that size exists
		a.fault(Fault{Kind: FaultCheckpointAltered, Index: -1, Size: c.Size, Detail: fmt.Sprintf("a checkpoint of size %d cannot be a tree the log signed", c.Size)})
	}
	var on *ChainAnchor
	if a.chain != nil {
		for a.chainNext < len(a.chain.Anchors) && a.chain.Anchors[a.chainNext].Size <= size {
			if a.chain.Anchors[a.chainNext].Size == size {
				on = &a.chain.Anchors[a.chainNext]
			}
			a.chainNext++
		}
		if on == nil && cp != nil && cp.Anchor != nil && size > a.chain.Latest() && a.chain.AnchorAt != nil {
			// Anchored after the chain was read, or never: ask again.
			late, err := a.chain.AnchorAt(ctx, size)
			if err != nil {
				return fmt.Errorf("audit: read the chain's anchor at size %d: %w", size, err)
			}
			if late != nil {
				on = late
				a.rep.ChainAnchors++
				a.rep.LatestAnchored = max(a.rep.LatestAnchored, late.Size)
			}
		}
	}
	doubt := a.doubt != nil && a.doubt.idx == size-1
	if cp == nil && on == nil && !doubt {
		return nil
	}
	if doubt {
		a.resolveDoubt(cp, on)
	}
	root, err := a.rng.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("audit: root at %d: %w", size, err)
	}
	if cp != nil {
		a.checkpoint(ctx, cp, root, on)
	}
	if on != nil {
		a.anchored(on, root, cp)
	}
	return nil
}

// resolveDoubt decides the last leaf's doubt with the trees signed or
// anchored at the full size: whichever of the row's hash and the stored
// hash they commit to is the original.
func (a *auditor) resolveDoubt(cp *Checkpoint, on *ChainAnchor) {
	d := a.doubt
	a.doubt = nil
	var roots [][]byte
	if cp != nil {
		if signed, err := verify.VerifyCheckpoint(cp.Note, a.verifier); err == nil {
			roots = append(roots, signed.Hash)
		}
	}
	if on != nil {
		roots = append(roots, on.Root[:])
	}
	main, err1 := a.rng.GetRootHash(nil)
	alt, err2 := d.alt.GetRootHash(nil)
	if err1 == nil && err2 == nil {
		for _, r := range roots {
			if bytes.Equal(r, alt) {
				a.rng = d.alt
				a.fault(Fault{Kind: FaultLeafHashEdited, Index: d.idx, Detail: fmt.Sprintf(
					"stored hash %d (level 0, leaf %d) holds %x, but the entry hashes to %x and the signed tree of size %d agrees with the entry: the entry is intact",
					tlog.StoredHashIndex(0, d.idx), d.idx, d.stored, d.data, d.idx+1)})
				return
			}
			if bytes.Equal(r, main) {
				a.fault(Fault{Kind: FaultEntryRewritten, Index: d.idx, Detail: fmt.Sprintf(
					"the row's bytes hash to %x, but the leaf hash row and the signed tree of size %d commit to %x", d.data, d.idx+1, d.stored)})
				return
			}
		}
	}
	a.doubtFault(d)
}

func (a *auditor) doubtFault(d *leafDoubt) {
	a.fault(Fault{Kind: FaultEntryRewritten, Index: d.idx, Detail: fmt.Sprintf(
		"the row's bytes hash to %x but its leaf hash row holds %x, and no parent row or signed tree decides which of the two was changed", d.data, d.stored)})
}

// loadCheckpoints fetches the next page of checkpoints in size order.
func (a *auditor) loadCheckpoints(ctx context.Context) error {
	after := a.loadedUpTo
	rows, err := a.db.Query(ctx, "SELECT "+checkpointColumns+" FROM ledger.checkpoints WHERE size > $1 ORDER BY size LIMIT 1000", after)
	if err != nil {
		return fmt.Errorf("audit: read checkpoints: %w", err)
	}
	cps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Checkpoint, error) { return scanCheckpoint(row) })
	if err != nil {
		return fmt.Errorf("audit: read checkpoints: %w", err)
	}
	if len(cps) == 0 {
		a.cpDone = true
	}
	a.checkpoints = cps
	if len(cps) > 0 {
		a.loadedUpTo = cps[len(cps)-1].Size
	}
	return nil
}

// verifyNote checks a stored checkpoint's note with the log key and, when
// it fails, says whether another key signed it or the note was altered.
func (a *auditor) verifyNote(cp *Checkpoint) (*Fault, *log.Checkpoint) {
	signed, err := verify.VerifyCheckpoint(cp.Note, a.verifier)
	if err == nil {
		return nil, signed
	}
	f := &Fault{Kind: FaultCheckpointAltered, Index: -1, Size: cp.Size}
	_, oerr := note.Open(cp.Note, note.VerifierList(a.verifier))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(oerr, &unverified):
		var by []string
		for _, s := range unverified.Note.UnverifiedSigs {
			by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
		}
		f.Kind = FaultCheckpointOtherKey
		f.Detail = fmt.Sprintf("the note is signed by %s, not by the log key %s", strings.Join(by, ", "), keyName(a.verifier))
		if len(by) == 0 {
			f.Detail = fmt.Sprintf("the note carries no signature, not even by the log key %s", keyName(a.verifier))
		}
	case errors.As(oerr, &invalid):
		f.Detail = fmt.Sprintf("the note names the log key %s but its signature does not verify: the text or the signature was changed", keyName(a.verifier))
	default:
		f.Detail = fmt.Sprintf("the note does not verify with the log key: %v", err)
	}
	return f, nil
}

// checkpoint checks one stored checkpoint: its signature, its row, its
// anchor reference against the chain's anchor on at its size (nil if none),
// and then its root against the recomputed one.
func (a *auditor) checkpoint(ctx context.Context, cp *Checkpoint, root []byte, on *ChainAnchor) {
	a.rep.Checkpoints++
	a.anchorRef(cp, on)
	f, signed := a.verifyNote(cp)
	if f != nil {
		a.fault(*f)
		return
	}
	signedRoot := signed.Hash
	if int64(signed.Size) != cp.Size || !bytes.Equal(signedRoot, cp.Root[:]) {
		a.fault(Fault{Kind: FaultCheckpointAltered, Index: -1, Size: cp.Size, Detail: fmt.Sprintf(
			"the row says size %d root %s, its signed note says size %d root %s", cp.Size, b64(cp.Root[:]), signed.Size, b64(signedRoot))})
		if int64(signed.Size) != cp.Size {
			return
		}
	}
	if on != nil && bytes.Equal(on.Root[:], signedRoot) {
		return // the chain's anchor of the same tree stands for it
	}
	a.claimed(claim{size: cp.Size, root: signedRoot, got: root, signed: true})
}

// anchorRef checks the anchor reference of a stored checkpoint against the
// chain's anchor at its size.
func (a *auditor) anchorRef(cp *Checkpoint, on *ChainAnchor) {
	if cp.Anchor != nil {
		a.rep.AnchorRefs++
	}
	if a.chain == nil {
		return
	}
	bad := func(kind FaultKind, format string, args ...any) int {
		return a.fault(Fault{Kind: kind, Index: -1, Size: cp.Size, Detail: fmt.Sprintf(format, args...)})
	}
	ref := cp.Anchor
	switch {
	case on != nil && on.Root != cp.Root:
		// Another tree of the same size: that is judged as a fork, which
		// the reference to the chain's own anchor does not change.
		if ref != nil && *ref != on.Ref {
			bad(FaultAnchorRewritten, "ledger.checkpoints names tx %s in block %d on %s/%s, but the chain anchored size %d in tx %s, block %d on %s/%s",
				ref.TxID, ref.BlockNumber, ref.Channel, ref.Chaincode, cp.Size, on.Ref.TxID, on.Ref.BlockNumber, on.Ref.Channel, on.Ref.Chaincode)
		}
	case on == nil && ref == nil:
	case on == nil:
		bad(FaultAnchorRewritten, "ledger.checkpoints names tx %s in block %d on %s/%s, but the chain holds no anchor of %s at size %d",
			ref.TxID, ref.BlockNumber, ref.Channel, ref.Chaincode, a.verifier.Name(), cp.Size)
	case ref == nil:
		i := bad(FaultAnchorRemoved, "the chain anchored size %d in tx %s, block %d on %s/%s, but its row in ledger.checkpoints names no anchor",
			cp.Size, on.Ref.TxID, on.Ref.BlockNumber, on.Ref.Channel, on.Ref.Chaincode)
		if i >= 0 {
			a.removed = append(a.removed, removedRef{fault: i, size: cp.Size, ref: on.Ref})
		}
	case *ref != on.Ref:
		bad(FaultAnchorRewritten, "ledger.checkpoints names tx %s in block %d on %s/%s, but the chain anchored size %d in tx %s, block %d on %s/%s",
			ref.TxID, ref.BlockNumber, ref.Channel, ref.Chaincode, cp.Size, on.Ref.TxID, on.Ref.BlockNumber, on.Ref.Channel, on.Ref.Chaincode)
	default:
		a.rep.Anchors++
	}
}

// anchored checks one anchor the chain holds against the recomputed root
// and the stored checkpoint of its size (nil if there is none).
func (a *auditor) anchored(on *ChainAnchor, root []byte, cp *Checkpoint) {
	signed := false
	if !a.chainBad {
		n, err := verify.VerifyCheckpoint(on.Note, a.verifier)
		switch {
		case err != nil:
			a.chainBad = true
			a.fault(Fault{Kind: FaultChainKey, Index: -1, Size: on.Size, Detail: fmt.Sprintf("the note the chain anchored at size %d does not verify with the log key %s: %v", on.Size, keyName(a.verifier), err)})
		case int64(n.Size) != on.Size || !bytes.Equal(n.Hash, on.Root[:]):
			a.chainBad = true
			a.fault(Fault{Kind: FaultChainKey, Index: -1, Size: on.Size, Detail: fmt.Sprintf("the chain records size %d root %s, but the note it anchored signs size %d root %s", on.Size, b64(on.Root[:]), n.Size, b64(n.Hash))})
		default:
			signed = true
		}
	}
	if cp == nil {
		a.fault(Fault{Kind: FaultCheckpointDeleted, Index: -1, Size: on.Size, Detail: fmt.Sprintf(
			"the chain anchors size %d in tx %s, block %d, but ledger.checkpoints has no checkpoint of that size", on.Size, on.Ref.TxID, on.Ref.BlockNumber)})
	}
	a.claimed(claim{size: on.Size, root: on.Root[:], got: root, on: on, signed: signed})
}

// claim is a tree the log signed or the chain anchored, with the root the
// stored entries give at its size.
type claim struct {
	size   int64
	root   []byte
	got    []byte
	on     *ChainAnchor // nil: a checkpoint in ledger.checkpoints
	signed bool         // its note verifies with the log key
}

func (c claim) String() string {
	if c.on != nil {
		return c.on.String()
	}
	return fmt.Sprintf("size %d root %s (checkpoint in the database)", c.size, b64(c.root))
}

// mismatchRun is a run of claims of one source (the chain or the
// database) whose roots are not the entries': the first says where, the
// rest follow from it.
type mismatchRun struct {
	first claim
	from  int64 // the largest size below first that matched (anchored, for a chain run)
	more  int
	// reported is set when the run was reported as soon as it opened.
	reported bool
}

// claimed records a claim. A matching claim closes the open runs: a claim
// that disagrees with the entries, followed by one that agrees, means the
// log key signed two trees that cannot both be true. Runs still open at
// the end are rewrites of history (see finishRuns).
func (a *auditor) claimed(c claim) {
	if bytes.Equal(c.root, c.got) {
		for _, r := range []**mismatchRun{&a.chainRun, &a.dbRun} {
			if *r == nil {
				continue
			}
			if !(*r).reported {
				if (*r).first.on != nil {
					a.rewritten(*r)
				}
				a.forked((*r).first, c)
			}
			*r = nil
		}
		a.lastMatch = c.size
		if c.on != nil {
			a.lastChainMatch = c.size
		}
		a.lastGood = &c
		a.rep.SignedSize = max(a.rep.SignedSize, c.size)
		return
	}
	run, from := &a.dbRun, a.lastMatch
	if c.on != nil {
		run, from = &a.chainRun, a.lastChainMatch
	}
	if *run != nil {
		(*run).more++
		return
	}
	if c.on != nil && a.chainDiverged {
		// Every anchor extends the one before: once one is not the
		// entries' tree, none after it can be; the first said it all.
		return
	}
	*run = &mismatchRun{first: c, from: from}
	if c.on != nil {
		a.chainDiverged = true
	}
	if g := a.lastGood; g != nil && g.size == c.size {
		// Another tree of the same size matched just now: the fork is
		// plain already.
		if c.on != nil {
			a.rewritten(*run)
		}
		a.forked(c, *g)
		(*run).reported = true
	}
}

// rewritten reports a chain run: the chain is the reference, so the stored
// entries are not the history it anchored.
func (a *auditor) rewritten(r *mismatchRun) {
	c := r.first
	// Every anchor extends the one before, so every later one disagrees.
	later := 0
	for _, on := range a.chain.Anchors {
		if on.Size > c.size && on.Size <= a.rep.TreeSize {
			later++
		}
	}
	more := ""
	if later > 0 {
		more = "; " + plural(later, "the later anchor disagrees too", "the %d later anchors disagree too")
	}
	a.fault(Fault{Kind: FaultHistoryRewritten, Index: r.from, Size: c.size, Detail: fmt.Sprintf(
		"the chain anchors root %s at size %d (tx %s, block %d), but the stored entries give root %s: an entry in [%d, %d) was rewritten together with its hash rows%s",
		b64(c.root), c.size, c.on.Ref.TxID, c.on.Ref.BlockNumber, b64(c.got), r.from, c.size, more)})
}

// forked reports two claims that cannot both be true: bad is not the
// entries' tree, good is, and good's tree has another root at bad's size.
func (a *auditor) forked(bad, good claim) {
	who, why := "the ledger key signed two different trees", ": a fork signed with the log's key, by a compromised key or a server that kept signing after its history was rewritten"
	if !bad.signed || !good.signed {
		who, why = "two different trees were signed or anchored", ""
	}
	prefix := ""
	if good.size != bad.size {
		prefix = fmt.Sprintf(" (the tree of size %d has root %s at size %d)", good.size, b64(bad.got), bad.size)
	}
	a.fault(Fault{Kind: FaultKeyFork, Index: -1, Size: bad.size, Detail: fmt.Sprintf(
		"%s: %s and %s are not consistent%s%s", who, bad, good, prefix, why)})
}

// finishRuns reports the runs no matching claim closed.
func (a *auditor) finishRuns() {
	if r := a.chainRun; r != nil && !r.reported {
		a.rewritten(r)
	}
	if r := a.dbRun; r != nil && !r.reported {
		c := r.first
		more := ""
		if r.more > 0 {
			more = fmt.Sprintf("; %s too", plural(r.more, "the later checkpoint disagrees", "the %d later checkpoints disagree"))
		}
		a.fault(Fault{Kind: FaultHistoryRewritten, Index: r.from, Size: c.size, Detail: fmt.Sprintf(
			"the checkpoint of size %d is signed by the log key over root %s, but the stored entries give root %s: an entry in [%d, %d) was rewritten together with its hash rows, or the key signed a tree that is not this one%s",
			c.size, b64(c.root), b64(c.got), r.from, c.size, more)})
	}
	a.chainRun, a.dbRun = nil, nil
}

// finish reports what lies beyond the tree: rows, hashes, checkpoints and
// anchors the tree size does not account for, erased payloads never
// redacted, and the signed roots nothing later agreed with.
func (a *auditor) finish(ctx context.Context, size int64) error {
	var extra *int64
	if err := a.db.QueryRow(ctx, "SELECT min(idx) FROM ledger.entries WHERE idx >= $1", size).Scan(&extra); err != nil {
		return fmt.Errorf("audit: look for entries beyond the tree: %w", err)
	}
	if extra != nil {
		a.fault(Fault{Kind: FaultEntryExtra, Index: *extra, Detail: fmt.Sprintf("row at index %d but the tree size is %d", *extra, size)})
	}
	var extraHash *int64
	// The smallest stored id at or past the tree's end: the run before
	// the end reaching past it, or the first run after it (two probes of
	// the primary key; runs that overlap are reported as such).
	if err := a.db.QueryRow(ctx, `SELECT least(
			(SELECT $1::bigint FROM (SELECT first, hashes FROM ledger.hash_runs WHERE first < $1 ORDER BY first DESC LIMIT 1) AS r
				WHERE r.first + octet_length(r.hashes) / 32 > $1),
			(SELECT min(first) FROM ledger.hash_runs WHERE first >= $1))`, tlog.StoredHashIndex(0, size)).Scan(&extraHash); err != nil {
		return fmt.Errorf("audit: look for hashes beyond the tree: %w", err)
	}
	if extraHash != nil {
		a.fault(Fault{Kind: FaultHashExtra, Index: -1, Detail: fmt.Sprintf("stored hash %d lies beyond the tree of size %d", *extraHash, size)})
	}
	if a.doubt != nil {
		a.doubtFault(a.doubt)
		a.doubt = nil
	}
	// Checkpoints past the tree: rows were deleted from the end.
	var beyond []*Checkpoint
	for {
		if len(a.checkpoints) == 0 && !a.cpDone {
			if err := a.loadCheckpoints(ctx); err != nil {
				return err
			}
		}
		if len(a.checkpoints) == 0 {
			break
		}
		cp := a.checkpoints[0]
		a.checkpoints = a.checkpoints[1:]
		a.rep.Checkpoints++
		if cp.Anchor != nil {
			a.rep.AnchorRefs++
		}
		if f, _ := a.verifyNote(cp); f != nil {
			a.fault(*f)
			continue
		}
		beyond = append(beyond, cp)
	}
	if n := len(beyond); n > 0 {
		last := beyond[n-1]
		a.fault(Fault{Kind: FaultTruncated, Index: size, Size: last.Size, Detail: fmt.Sprintf(
			"ledger.checkpoints holds %s signed by the log key beyond the stored tree, up to size %d, but the database holds %d entries: entries from index %d on are gone",
			plural(n, "a checkpoint", "%d checkpoints"), last.Size, size, size)})
	}
	if c := a.chain; c != nil && a.chainNext < len(c.Anchors) {
		rest := c.Anchors[a.chainNext:]
		last := rest[len(rest)-1]
		a.fault(Fault{Kind: FaultTruncated, Index: size, Size: last.Size, Detail: fmt.Sprintf(
			"the chain anchors size %d (root %s, tx %s, block %d), but the database holds %d entries: entries from index %d on are gone (%s beyond the stored tree)",
			last.Size, b64(last.Root[:]), last.Ref.TxID, last.Ref.BlockNumber, size, size, plural(len(rest), "1 anchor lies", "%d anchors lie"))})
	}
	a.finishRuns()
	erased := make([]int64, 0, len(a.erased))
	for idx := range a.erased {
		erased = append(erased, idx)
	}
	slices.Sort(erased)
	for _, idx := range erased {
		a.fault(Fault{Kind: FaultPayloadErased, Index: idx, Detail: "payload is gone but no redaction entry names it"})
	}
	return nil
}

// recheckRemoved drops "anchor reference removed" faults whose row, read
// again now, names exactly the chain's anchor: the anchorer recorded it
// after the snapshot was taken.
func (a *auditor) recheckRemoved(ctx context.Context, pool *pgxpool.Pool) error {
	if len(a.removed) == 0 {
		return nil
	}
	drop := map[int]bool{}
	for _, r := range a.removed {
		var b []byte
		if err := pool.QueryRow(ctx, "SELECT anchor FROM ledger.checkpoints WHERE size = $1", r.size).Scan(&b); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			return fmt.Errorf("audit: read anchor of checkpoint %d again: %w", r.size, err)
		}
		var got verify.Anchor
		if b != nil && json.Unmarshal(b, &got) == nil && got == r.ref {
			drop[r.fault] = true
			a.rep.Anchors++
		}
	}
	if len(drop) == 0 {
		return nil
	}
	kept := a.rep.Faults[:0]
	for i, f := range a.rep.Faults {
		if !drop[i] {
			kept = append(kept, f)
		}
	}
	a.rep.Faults = kept
	return nil
}
