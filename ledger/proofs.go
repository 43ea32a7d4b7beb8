package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/verify"
)

// InclusionProof returns the RFC 6962 inclusion proof of leaf index in the
// tree of size treeSize, which must not exceed the latest checkpoint.
func (j *Journal) InclusionProof(ctx context.Context, index, treeSize int64) ([]tlog.Hash, error) {
	if err := j.checkSize(ctx, treeSize); err != nil {
		return nil, err
	}
	if index < 0 || index >= treeSize {
		return nil, apperr.Errorf(apperr.Invalid, "leaf index %d is outside tree size %d", index, treeSize)
	}
	p, err := tlog.ProveRecord(treeSize, index, hashReader(ctx, j.pool))
	if err != nil {
		return nil, fmt.Errorf("prove leaf %d in tree %d: %w", index, treeSize, err)
	}
	return p, nil
}

// ConsistencyProof returns the RFC 6962 proof that the tree of size from is
// a prefix of the tree of size to. Both must be between 1 and the latest
// checkpoint's size, from ≤ to. A halted journal refuses (see Halted): its
// stored hashes are what it no longer vouches for.
func (j *Journal) ConsistencyProof(ctx context.Context, from, to int64) ([]tlog.Hash, error) {
	if err := j.Halted(); err != nil {
		return nil, err
	}
	if from < 1 || from > to {
		return nil, apperr.Fields("invalid tree sizes",
			apperr.FieldError{Field: "from", Message: fmt.Sprintf("must be between 1 and to (%d), got %d", to, from)})
	}
	if err := j.checkSize(ctx, to); err != nil {
		return nil, err
	}
	p, err := tlog.ProveTree(to, from, hashReader(ctx, j.pool))
	if err != nil {
		return nil, fmt.Errorf("prove tree %d is a prefix of %d: %w", from, to, err)
	}
	return p, nil
}

// checkSize rejects tree sizes the log has not signed: a proof must be
// checkable against a checkpoint.
func (j *Journal) checkSize(ctx context.Context, size int64) error {
	cp, err := j.LatestCheckpoint(ctx)
	if apperr.Is(err, apperr.NotFound) {
		return apperr.Errorf(apperr.Invalid, "tree size %d is beyond the signed tree (no checkpoint yet)", size)
	}
	if err != nil {
		return err
	}
	if size < 1 || size > cp.Size {
		return apperr.Errorf(apperr.Invalid, "tree size %d is outside the signed tree (1..%d)", size, cp.Size)
	}
	return nil
}

// Receipt returns an offline receipt for a revision of a record (revision 0:
// the latest) in the latest checkpoint. If no checkpoint covers the revision
// yet, one is signed now, so a receipt never waits for the next tick.
//
// Every receipt is checked before it is returned: the entry's leaf hash
// must prove into the checkpoint's signed root. A receipt that does not
// means the stored entry or its hashes were rewritten; the journal then
// halts. A halted journal serves no receipt: the receipt methods return an
// apperr.Unavailable error naming the fork.
func (j *Journal) Receipt(ctx context.Context, recordID string, revision int64) (*verify.Receipt, error) {
	if err := j.refuse(); err != nil {
		return nil, err
	}
	idx, data, err := j.locate(ctx, recordID, revision)
	if err != nil {
		return nil, err
	}
	cp, err := j.LatestCheckpoint(ctx)
	if err != nil && !apperr.Is(err, apperr.NotFound) {
		return nil, err
	}
	if cp == nil || cp.Size <= idx {
		if cp, err = j.SignCheckpoint(ctx); err != nil {
			return nil, err
		}
	}
	return j.receiptIn(ctx, idx, data, cp)
}

// ReceiptIn returns the receipt of a revision of a record (revision 0: the
// latest) in the checkpoint of size treeSize, for callers that hold an older
// checkpoint. The revision must be inside that tree.
func (j *Journal) ReceiptIn(ctx context.Context, recordID string, revision, treeSize int64) (*verify.Receipt, error) {
	if err := j.refuse(); err != nil {
		return nil, err
	}
	idx, data, err := j.locate(ctx, recordID, revision)
	if err != nil {
		return nil, err
	}
	cp, err := j.CheckpointAt(ctx, treeSize)
	if err != nil {
		return nil, err
	}
	if idx >= treeSize {
		return nil, apperr.Errorf(apperr.Invalid, "record %s revision %d is leaf %d, outside tree size %d", recordID, revision, idx, treeSize)
	}
	return j.receiptIn(ctx, idx, data, cp)
}

// locate finds the leaf of a revision (revision 0: the latest).
func (j *Journal) locate(ctx context.Context, recordID string, revision int64) (int64, []byte, error) {
	var idx int64
	var data []byte
	var err error
	if revision > 0 {
		err = j.pool.QueryRow(ctx, `SELECT idx, data FROM ledger.entries WHERE type = 'revision' AND record_id = $1 AND revision = $2`,
			recordID, revision).Scan(&idx, &data)
	} else {
		err = j.pool.QueryRow(ctx, `SELECT idx, data FROM ledger.entries WHERE type = 'revision' AND record_id = $1 ORDER BY revision DESC LIMIT 1`,
			recordID).Scan(&idx, &data)
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows) && revision > 0:
		return 0, nil, apperr.Wrap(apperr.NotFound, err, "record %s has no revision %d", recordID, revision)
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil, apperr.Wrap(apperr.NotFound, err, "record %s not found", recordID)
	case err != nil:
		return 0, nil, fmt.Errorf("locate %s/%d: %w", recordID, revision, err)
	}
	return idx, data, nil
}

// ReceiptAt returns the receipt of any leaf, by index, in the checkpoint of
// size treeSize: redaction entries too, which no record route reaches.
func (j *Journal) ReceiptAt(ctx context.Context, index, treeSize int64) (*verify.Receipt, error) {
	if err := j.refuse(); err != nil {
		return nil, err
	}
	cp, err := j.CheckpointAt(ctx, treeSize)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= treeSize {
		return nil, apperr.Errorf(apperr.Invalid, "leaf index %d is outside tree size %d", index, treeSize)
	}
	var data []byte
	if err := j.pool.QueryRow(ctx, "SELECT data FROM ledger.entries WHERE idx = $1", index).Scan(&data); err != nil {
		return nil, fmt.Errorf("receipt for leaf %d: %w", index, err)
	}
	return j.receiptIn(ctx, index, data, cp)
}

func (j *Journal) receiptIn(ctx context.Context, idx int64, data []byte, cp *Checkpoint) (*verify.Receipt, error) {
	p, err := tlog.ProveRecord(cp.Size, idx, hashReader(ctx, j.pool))
	if err != nil {
		err = fmt.Errorf("prove leaf %d in tree %d: %w", idx, cp.Size, err)
		var m *missingHashError
		if errors.As(err, &m) {
			return nil, j.halt(ctx, err)
		}
		return nil, err
	}
	// The checkpoint's note is what the key signed; the entry, the proof
	// and the checkpoint row come from rows anyone with database access can
	// rewrite. Never hand out a receipt that would not verify, and say why.
	signed, err := verify.VerifyCheckpoint(cp.Note, j.verifier)
	if err != nil {
		return nil, j.halt(ctx, fmt.Errorf("stored checkpoint %d does not verify with the journal's key: %w", cp.Size, err))
	}
	if signed.Size != uint64(cp.Size) || len(signed.Hash) != tlog.HashSize {
		return nil, j.halt(ctx, fmt.Errorf("stored checkpoint %d holds a note of size %d", cp.Size, signed.Size))
	}
	if err := tlog.CheckRecord(p, cp.Size, tlog.Hash(signed.Hash), idx, tlog.RecordHash(data)); err != nil {
		return nil, j.halt(ctx, fmt.Errorf("leaf %d does not prove into checkpoint %d (root %s): the stored entry or its hashes were rewritten after they were signed: %v",
			idx, cp.Size, tlog.Hash(signed.Hash), err))
	}
	incl := make([]verify.Bytes, len(p))
	for i := range p {
		incl[i] = p[i][:]
	}
	return &verify.Receipt{
		Entry: data, LeafIndex: uint64(idx), TreeSize: uint64(cp.Size),
		Inclusion: incl, Checkpoint: string(cp.Note), Anchor: cp.Anchor,
	}, nil
}
