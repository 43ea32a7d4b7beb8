package ledger

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/ledger/verify"
)

// FaultKind says what an audit found wrong.
type FaultKind string

// The faults an audit reports.
const (
	FaultEntryChanged     FaultKind = "entry changed"       // leaf bytes differ from the committed leaf hash
	FaultEntryMissing     FaultKind = "entry missing"       // no row for a leaf index inside the tree
	FaultEntryReordered   FaultKind = "entry reordered"     // a row holds the leaf committed at another index
	FaultEntryExtra       FaultKind = "entry beyond tree"   // a row past the tree size
	FaultEntryMalformed   FaultKind = "entry malformed"     // leaf bytes are not a canonical entry
	FaultColumnChanged    FaultKind = "column changed"      // an index column disagrees with the leaf bytes
	FaultPayloadChanged   FaultKind = "payload changed"     // the payload's hash is not the one the leaf commits to
	FaultPayloadErased    FaultKind = "payload erased"      // a payload is gone without a journaled redaction
	FaultHashChanged      FaultKind = "hash row changed"    // a stored tree hash differs from the recomputed one
	FaultHashMissing      FaultKind = "hash row missing"    // a stored tree hash is absent
	FaultHashExtra        FaultKind = "hash row extra"      // stored tree hashes beyond the tree
	FaultCheckpointForged FaultKind = "checkpoint forged"   // bad signature, or its row disagrees with its note
	FaultRootMismatch     FaultKind = "root mismatch"       // the signed root is not the root of the stored entries
	FaultCheckpointBeyond FaultKind = "checkpoint beyond"   // a checkpoint signs more entries than are stored
	FaultAnchor           FaultKind = "anchor check failed" // the Fabric anchor does not match the checkpoint
)

// Fault is one thing wrong with the stored journal. Index is the first leaf
// index known to be bad, or -1 when the fault is not about a leaf.
type Fault struct {
	Kind       FaultKind
	Index      int64
	Checkpoint int64 // tree size of the checkpoint concerned, or 0
	Detail     string
}

func (f Fault) String() string {
	var where []string
	if f.Index >= 0 {
		where = append(where, fmt.Sprintf("index %d", f.Index))
	}
	if f.Checkpoint > 0 {
		where = append(where, fmt.Sprintf("checkpoint %d", f.Checkpoint))
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
	Anchors     int64 // Fabric anchors checked against the chain and found good
	// SignedSize is the size of the newest checkpoint that matched the
	// entries; entries after it are checked against their hash rows only,
	// since no signature covers them yet.
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
	// CheckAnchor, when set, checks a checkpoint's Fabric anchor against the
	// chain (called only for anchored checkpoints, after the checkpoint
	// itself verified; ledger/anchor provides it). Anchors present while it
	// is nil are reported as unchecked faults.
	CheckAnchor func(ctx context.Context, cp *Checkpoint) error
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
// stored hash row, every entry's index columns and payload, and every stored
// checkpoint's signature and root. It streams: memory does not grow with the
// log. Faults go in the report; the error is only for failing to audit.
func Audit(ctx context.Context, pool *pgxpool.Pool, verifier note.Verifier, opts AuditOptions) (*Report, error) {
	if opts.MaxFaults <= 0 {
		opts.MaxFaults = 100
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 10_000
	}
	a := &auditor{
		verifier: verifier, opts: opts, rep: &Report{},
		rng:    (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0),
		erased: map[int64]bool{},
	}
	start := time.Now()
	// One snapshot for the whole audit: appends, checkpoints and redactions
	// committed meanwhile must not look like faults.
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("audit: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	a.db = tx
	if err := a.run(ctx); err != nil {
		return nil, err
	}
	a.rep.Duration = time.Since(start)
	return a.rep, nil
}

type auditor struct {
	db       pgx.Tx // a read-only snapshot; queries run one at a time on it
	verifier note.Verifier
	opts     AuditOptions
	rep      *Report
	rng      *compact.Range

	// hashes holds this chunk's stored hash rows by id.
	hashes map[int64][]byte
	// erased holds revisions whose payload is gone, until a redaction entry
	// naming them is seen.
	erased map[int64]bool

	// checkpoints is the queue of stored checkpoints not yet reached.
	checkpoints []*Checkpoint
	cpDone      bool
	loadedUpTo  int64 // size of the last checkpoint fetched
	lastGood    int64 // size of the last checkpoint whose root matched
}

func (a *auditor) fault(f Fault) {
	if len(a.rep.Faults) >= a.opts.MaxFaults {
		a.rep.Truncated = true
		return
	}
	a.rep.Faults = append(a.rep.Faults, f)
}

type auditRow struct {
	idx         int64
	data        []byte
	typ         string
	recordID    string
	kind        string
	revision    int64
	payloadHash []byte
	occurredAt  *time.Time
	sigRef      string
	loggedAt    time.Time
	target      *int64
	payloadSum  []byte // sha256(payload), nil when the payload is NULL
	redactedBy  *int64
}

func (a *auditor) run(ctx context.Context) error {
	var size int64
	if err := a.db.QueryRow(ctx, "SELECT size FROM ledger.tree").Scan(&size); err != nil {
		return fmt.Errorf("audit: read tree size: %w", err)
	}
	a.rep.TreeSize = size
	for lo := int64(0); lo < size; lo += a.opts.ChunkSize {
		hi := min(lo+a.opts.ChunkSize, size)
		if err := a.chunk(ctx, lo, hi); err != nil {
			return err
		}
		if a.opts.Progress != nil {
			a.opts.Progress(hi, size)
		}
	}
	if a.opts.Progress != nil && size == 0 {
		a.opts.Progress(0, 0)
	}
	return a.finish(ctx, size)
}

func (a *auditor) chunk(ctx context.Context, lo, hi int64) error {
	// Stored hashes of leaves lo..hi-1 are exactly ids [StoredHashIndex(0,lo), StoredHashIndex(0,hi)).
	hlo, hhi := tlog.StoredHashIndex(0, lo), tlog.StoredHashIndex(0, hi)
	rows, err := a.db.Query(ctx, "SELECT id, hash FROM ledger.hashes WHERE id >= $1 AND id < $2", hlo, hhi)
	if err != nil {
		return fmt.Errorf("audit: read hashes %d..%d: %w", hlo, hhi, err)
	}
	a.hashes = make(map[int64][]byte, hhi-hlo)
	leafAt := make(map[tlog.Hash]int64, hi-lo)
	for rows.Next() {
		var id int64
		var h []byte
		if err := rows.Scan(&id, &h); err != nil {
			rows.Close()
			return fmt.Errorf("audit: scan hash: %w", err)
		}
		a.hashes[id] = h
		if level, n := tlog.SplitStoredHashIndex(id); level == 0 && len(h) == tlog.HashSize {
			leafAt[tlog.Hash(h)] = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: read hashes: %w", err)
	}

	rows, err = a.db.Query(ctx, `
		SELECT idx, data, type, record_id, kind, revision, payload_hash, occurred_at, signature_ref, logged_at, target,
		       CASE WHEN payload IS NULL THEN NULL ELSE sha256(payload) END, redacted_by
		FROM ledger.entries WHERE idx >= $1 AND idx < $2 ORDER BY idx`, lo, hi)
	if err != nil {
		return fmt.Errorf("audit: read entries %d..%d: %w", lo, hi, err)
	}
	// Read the whole chunk before checking it: checking may query
	// checkpoints, and the snapshot runs one query at a time.
	batch := make([]auditRow, 0, hi-lo)
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.idx, &r.data, &r.typ, &r.recordID, &r.kind, &r.revision, &r.payloadHash, &r.occurredAt,
			&r.sigRef, &r.loggedAt, &r.target, &r.payloadSum, &r.redactedBy); err != nil {
			rows.Close()
			return fmt.Errorf("audit: scan entry: %w", err)
		}
		batch = append(batch, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: read entries: %w", err)
	}
	next := lo
	for i := range batch {
		r := &batch[i]
		for ; next < r.idx; next++ {
			a.fault(Fault{Kind: FaultEntryMissing, Index: next, Detail: "no row for this leaf index"})
			if err := a.addLeaf(ctx, next, nil); err != nil {
				return err
			}
		}
		a.rep.Entries++
		a.entry(r, leafAt)
		if err := a.addLeaf(ctx, r.idx, r.data); err != nil {
			return err
		}
		next = r.idx + 1
	}
	for ; next < hi; next++ {
		a.fault(Fault{Kind: FaultEntryMissing, Index: next, Detail: "no row for this leaf index"})
		if err := a.addLeaf(ctx, next, nil); err != nil {
			return err
		}
	}
	return nil
}

// entry checks one row against itself and against the committed leaf hash.
func (a *auditor) entry(r *auditRow, leafAt map[tlog.Hash]int64) {
	leaf := tlog.RecordHash(r.data)
	stored := a.hashes[tlog.StoredHashIndex(0, r.idx)]
	if stored != nil && !bytes.Equal(stored, leaf[:]) {
		if m, ok := leafAt[leaf]; ok && m != r.idx {
			a.fault(Fault{Kind: FaultEntryReordered, Index: r.idx, Detail: fmt.Sprintf("row holds the entry committed at index %d", m)})
		} else {
			a.fault(Fault{Kind: FaultEntryChanged, Index: r.idx, Detail: "leaf bytes do not match the committed leaf hash"})
		}
	}
	e, err := verify.ParseEntry(r.data)
	if err != nil {
		a.fault(Fault{Kind: FaultEntryMalformed, Index: r.idx, Detail: err.Error()})
		return
	}
	col := func(name string, ok bool) {
		if !ok {
			a.fault(Fault{Kind: FaultColumnChanged, Index: r.idx, Detail: fmt.Sprintf("column %s disagrees with the leaf", name)})
		}
	}
	col("type", r.typ == string(e.Type))
	col("record_id", r.recordID == e.RecordID)
	col("kind", r.kind == e.Kind)
	col("revision", r.revision == e.Revision)
	col("payload_hash", bytes.Equal(r.payloadHash, e.PayloadHash[:]))
	col("signature_ref", r.sigRef == e.SignatureRef)
	col("logged_at", r.loggedAt.Equal(e.LoggedAt))
	switch e.Type {
	case verify.TypeRevision:
		col("occurred_at", r.occurredAt != nil && r.occurredAt.Equal(e.OccurredAt))
		switch {
		case r.payloadSum == nil:
			if r.redactedBy == nil {
				a.fault(Fault{Kind: FaultPayloadErased, Index: r.idx, Detail: "payload is gone and no redaction is recorded"})
			} else {
				// A redaction entry naming this index must follow.
				a.erased[r.idx] = true
			}
		case !bytes.Equal(r.payloadSum, e.PayloadHash[:]):
			a.fault(Fault{Kind: FaultPayloadChanged, Index: r.idx, Detail: "payload's SHA-256 is not the one the leaf commits to"})
		}
	case verify.TypeRedaction:
		col("target", r.target != nil && *r.target == e.Target)
		delete(a.erased, e.Target)
	}
}

// addLeaf extends the recomputed tree with leaf n and checks every stored
// hash the leaf completes, then every checkpoint of the new size. data is
// nil for a missing row: the stored leaf hash then stands in, so that one
// missing row is reported once rather than as a fault of every later node.
func (a *auditor) addLeaf(ctx context.Context, n int64, data []byte) error {
	var leaf []byte
	storedLeaf := a.hashes[tlog.StoredHashIndex(0, n)]
	if data != nil {
		h := tlog.RecordHash(data)
		leaf = h[:]
		if storedLeaf != nil && !bytes.Equal(storedLeaf, leaf) {
			// Already reported against the entry; continue with the
			// committed hash so the rest of the audit stays independent.
			leaf = storedLeaf
		}
	} else {
		if storedLeaf == nil {
			storedLeaf = make([]byte, tlog.HashSize) // nothing to go on; checkpoints after this will fail
		}
		leaf = storedLeaf
	}
	err := a.rng.Append(leaf, func(id compact.NodeID, h []byte) {
		sid := tlog.StoredHashIndex(int(id.Level), int64(id.Index))
		got, ok := a.hashes[sid]
		first, _ := id.Coverage()
		switch {
		case !ok:
			a.fault(Fault{Kind: FaultHashMissing, Index: int64(first), Detail: fmt.Sprintf("stored hash %d (level %d, node %d) is missing", sid, id.Level, id.Index)})
		case !bytes.Equal(got, h):
			if id.Level == 0 && data != nil {
				return // the entry fault already names this index
			}
			a.fault(Fault{Kind: FaultHashChanged, Index: int64(first), Detail: fmt.Sprintf("stored hash %d (level %d, node %d) differs from the recomputed hash", sid, id.Level, id.Index)})
		}
	})
	if err != nil {
		return fmt.Errorf("audit: extend tree at %d: %w", n, err)
	}
	return a.checkpointsAt(ctx, n+1)
}

// checkpointsAt checks the stored checkpoint of tree size size, if any.
func (a *auditor) checkpointsAt(ctx context.Context, size int64) error {
	for {
		if len(a.checkpoints) == 0 && !a.cpDone {
			if err := a.loadCheckpoints(ctx); err != nil {
				return err
			}
		}
		if len(a.checkpoints) == 0 || a.checkpoints[0].Size > size {
			return nil
		}
		cp := a.checkpoints[0]
		a.checkpoints = a.checkpoints[1:]
		root, err := a.rng.GetRootHash(nil)
		if err != nil {
			return fmt.Errorf("audit: root at %d: %w", size, err)
		}
		a.checkpoint(ctx, cp, root)
	}
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

// checkpoint checks one stored checkpoint against the recomputed root.
func (a *auditor) checkpoint(ctx context.Context, cp *Checkpoint, root []byte) {
	a.rep.Checkpoints++
	bad := func(kind FaultKind, idx int64, format string, args ...any) {
		a.fault(Fault{Kind: kind, Index: idx, Checkpoint: cp.Size, Detail: fmt.Sprintf(format, args...)})
	}
	signed, err := verify.VerifyCheckpoint(cp.Note, a.verifier)
	if err != nil {
		bad(FaultCheckpointForged, -1, "note does not verify with the log key: %v", err)
		return
	}
	if int64(signed.Size) != cp.Size || !bytes.Equal(signed.Hash, cp.Root[:]) {
		bad(FaultCheckpointForged, -1, "size or root column differs from the signed note")
	}
	if !bytes.Equal(signed.Hash, root) {
		// The entries and hash rows agree with each other but not with what
		// was signed: something in (last good checkpoint, this size] was
		// rewritten together with its hashes.
		bad(FaultRootMismatch, a.lastGood, "signed root is not the root recomputed from the stored entries; a leaf in [%d, %d) was rewritten", a.lastGood, cp.Size)
		return
	}
	a.lastGood = cp.Size
	a.rep.SignedSize = cp.Size
	if cp.Anchor != nil {
		if a.opts.CheckAnchor == nil {
			bad(FaultAnchor, -1, "checkpoint is anchored but no anchor checker is configured")
		} else if err := a.opts.CheckAnchor(ctx, cp); err != nil {
			bad(FaultAnchor, -1, "%v", err)
		} else {
			a.rep.Anchors++
		}
	}
}

// finish reports what lies beyond the tree: rows, hashes and checkpoints the
// tree size does not account for, and erased payloads never redacted.
func (a *auditor) finish(ctx context.Context, size int64) error {
	var extra *int64
	if err := a.db.QueryRow(ctx, "SELECT min(idx) FROM ledger.entries WHERE idx >= $1", size).Scan(&extra); err != nil {
		return fmt.Errorf("audit: look for entries beyond the tree: %w", err)
	}
	if extra != nil {
		a.fault(Fault{Kind: FaultEntryExtra, Index: *extra, Detail: fmt.Sprintf("row at index %d but the tree size is %d", *extra, size)})
	}
	var extraHash *int64
	if err := a.db.QueryRow(ctx, "SELECT min(id) FROM ledger.hashes WHERE id >= $1", tlog.StoredHashIndex(0, size)).Scan(&extraHash); err != nil {
		return fmt.Errorf("audit: look for hashes beyond the tree: %w", err)
	}
	if extraHash != nil {
		a.fault(Fault{Kind: FaultHashExtra, Index: -1, Detail: fmt.Sprintf("stored hash %d lies beyond the tree of size %d", *extraHash, size)})
	}
	// Checkpoints past the tree: rows were deleted from the end.
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
		a.fault(Fault{Kind: FaultCheckpointBeyond, Index: size, Checkpoint: cp.Size,
			Detail: fmt.Sprintf("signs %d entries but the tree holds %d: entries from index %d are gone", cp.Size, size, size)})
	}
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
