package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/verify"
)

// Receipts returns a receipt for each leaf of indexes (in that order), all
// in one checkpoint, so that a reader checks one signature and, on Fabric,
// one anchor for all of them: the newest checkpoint already anchored that
// covers every leaf, else the newest checkpoint (signed now if none covers
// them yet; its anchor then follows within an anchoring interval, and
// anchor.VerifyReceipt finds it on the chain).
//
// It is Receipt for many leaves at the cost of a few queries: the entries
// in one, the proof hashes of every leaf in another. Every receipt is
// checked against the signed note before it is returned, as Receipt's are.
func (j *Journal) Receipts(ctx context.Context, indexes []int64) (*Checkpoint, []*verify.Receipt, error) {
	if err := j.refuse(); err != nil {
		return nil, nil, err
	}
	if len(indexes) == 0 {
		return nil, nil, nil
	}
	last := slices.Max(indexes)
	if slices.Min(indexes) < 0 {
		return nil, nil, apperr.Errorf(apperr.Invalid, "leaf index %d is negative", slices.Min(indexes))
	}
	// One round trip for the checkpoints to choose from and the entries.
	cp, data, err := j.coveringWithEntries(ctx, last, indexes)
	if err != nil {
		return nil, nil, err
	}
	signed, err := verify.VerifyCheckpoint(cp.Note, j.verifier)
	if err != nil {
		return nil, nil, j.halt(ctx, fmt.Errorf("stored checkpoint %d does not verify with the journal's key: %w", cp.Size, err))
	}
	if signed.Size != uint64(cp.Size) || len(signed.Hash) != tlog.HashSize {
		return nil, nil, j.halt(ctx, fmt.Errorf("stored checkpoint %d holds a note of size %d", cp.Size, signed.Size))
	}
	// tlog asks for exactly the hashes a proof needs: ask once with a
	// reader that only notes them, read them all in one query, then prove
	// every leaf from memory.
	want := map[int64]bool{}
	noting := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		for _, id := range ids {
			want[id] = true
		}
		return make([]tlog.Hash, len(ids)), nil
	})
	for _, idx := range indexes {
		if _, err := tlog.ProveRecord(cp.Size, idx, noting); err != nil {
			return nil, nil, fmt.Errorf("prove leaf %d in tree %d: %w", idx, cp.Size, err)
		}
	}
	ids := make([]int64, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	hashes, err := queryHashes(ctx, j.pool, ids)
	if err != nil {
		return nil, nil, err
	}
	stored := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ids))
		for i, id := range ids {
			h, ok := hashes[id]
			if !ok {
				return nil, &missingHashError{id}
			}
			out[i] = h
		}
		return out, nil
	})
	out := make([]*verify.Receipt, len(indexes))
	for i, idx := range indexes {
		p, err := tlog.ProveRecord(cp.Size, idx, stored)
		if err != nil {
			err = fmt.Errorf("prove leaf %d in tree %d: %w", idx, cp.Size, err)
			var m *missingHashError
			if errors.As(err, &m) {
				return nil, nil, j.halt(ctx, err)
			}
			return nil, nil, err
		}
		if err := tlog.CheckRecord(p, cp.Size, tlog.Hash(signed.Hash), idx, tlog.RecordHash(data[idx])); err != nil {
			return nil, nil, j.halt(ctx, fmt.Errorf("leaf %d does not prove into checkpoint %d (root %s): the stored entry or its hashes were rewritten after they were signed: %v",
				idx, cp.Size, tlog.Hash(signed.Hash), err))
		}
		incl := make([]verify.Bytes, len(p))
		for k := range p {
			incl[k] = p[k][:]
		}
		out[i] = &verify.Receipt{
			Entry: data[idx], LeafIndex: uint64(idx), TreeSize: uint64(cp.Size),
			Inclusion: incl, Checkpoint: string(cp.Note), Anchor: cp.Anchor,
		}
	}
	return cp, out, nil
}

// coveringWithEntries returns the checkpoint Receipts uses for leaves up
// to last — the newest anchored checkpoint covering them, else the newest,
// signed now if none covers them — and the leaf bytes of indexes, reading
// both in one round trip.
func (j *Journal) coveringWithEntries(ctx context.Context, last int64, indexes []int64) (*Checkpoint, map[int64][]byte, error) {
	var anchored, latest *Checkpoint
	data := make(map[int64][]byte, len(indexes))
	b := &pgx.Batch{}
	scanOne := func(into **Checkpoint) func(pgx.Row) error {
		return func(row pgx.Row) error {
			cp, err := scanCheckpoint(row)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			*into = cp
			return err
		}
	}
	b.Queue("SELECT "+checkpointColumns+" FROM ledger.checkpoints WHERE anchor IS NOT NULL AND size > $1 ORDER BY size DESC LIMIT 1", last).QueryRow(scanOne(&anchored))
	b.Queue("SELECT " + checkpointColumns + " FROM ledger.checkpoints ORDER BY size DESC LIMIT 1").QueryRow(scanOne(&latest))
	b.Queue("SELECT idx, data FROM ledger.entries WHERE idx = ANY($1)", indexes).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var idx int64
			var d []byte
			if err := rows.Scan(&idx, &d); err != nil {
				return err
			}
			data[idx] = d
		}
		return rows.Err()
	})
	if err := j.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("read checkpoints and entries: %w", err)
	}
	for _, idx := range indexes {
		if _, ok := data[idx]; !ok {
			return nil, nil, apperr.Errorf(apperr.NotFound, "leaf %d is not in the journal", idx)
		}
	}
	if anchored != nil {
		return anchored, data, nil
	}
	cp := latest
	if cp == nil || cp.Size <= last {
		var err error
		if cp, err = j.SignCheckpoint(ctx); err != nil {
			return nil, nil, err
		}
	}
	if cp == nil || cp.Size <= last {
		return nil, nil, apperr.Errorf(apperr.NotFound, "leaf %d is not in the journal", last)
	}
	return cp, data, nil
}

// Payloads returns the stored payloads of leaves by index: the bytes whose
// SHA-256 each leaf commits to. A redacted revision's payload is nil (its
// leaf still verifies); a leaf that is not a revision has none.
func (j *Journal) Payloads(ctx context.Context, indexes []int64) (map[int64][]byte, error) {
	rows, err := j.pool.Query(ctx, "SELECT idx, payload FROM ledger.entries WHERE idx = ANY($1)", indexes)
	if err != nil {
		return nil, fmt.Errorf("read payloads: %w", err)
	}
	out := make(map[int64][]byte, len(indexes))
	for rows.Next() {
		var idx int64
		var p []byte
		if err := rows.Scan(&idx, &p); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read payloads: %w", err)
		}
		out[idx] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read payloads: %w", err)
	}
	return out, nil
}
