package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/verify"
)

// RecordRevision is one stored revision of a record, with where it is in the
// log. Payload is nil once the revision has been redacted; PayloadHash stays.
type RecordRevision struct {
	RecordID     string    `json:"record_id"`
	Kind         string    `json:"kind"`
	Revision     int64     `json:"revision"`
	LeafIndex    int64     `json:"leaf_index"`
	Payload      []byte    `json:"payload"`
	PayloadHash  []byte    `json:"payload_sha256"`
	OccurredAt   time.Time `json:"occurred_at"`
	LoggedAt     time.Time `json:"logged_at"`
	SignatureRef string    `json:"signature_ref"`
	Redacted     bool      `json:"redacted"`
	// RedactedBy is the leaf index of the redaction entry, when redacted.
	RedactedBy *int64 `json:"redacted_by,omitempty"`
}

// AsOf limits a read to the log as it stood at a signed tree size, at a
// time, or both. The zero value reads the current state. Redaction is not
// undone by AsOf: an erased payload is gone for every read.
type AsOf struct {
	// TreeSize is the size of a signed checkpoint; 0 means no limit.
	TreeSize int64
	// Time includes entries logged at or before it; zero means no limit.
	Time time.Time
}

// History returns every revision of a record in revision order, as of the
// given point, or NotFound if the record has none by then.
func (j *Journal) History(ctx context.Context, recordID string, asOf AsOf) ([]RecordRevision, error) {
	return j.history(ctx, j.pool, recordID, asOf)
}

// history is History read with q (a caller's transaction, or the pool).
func (j *Journal) history(ctx context.Context, q querier, recordID string, asOf AsOf) ([]RecordRevision, error) {
	limit, err := j.sizeLimit(ctx, asOf)
	if err != nil {
		return nil, err
	}
	var at any
	if !asOf.Time.IsZero() {
		at = asOf.Time
	}
	rows, err := q.Query(ctx, `
		SELECT record_id, kind, revision, idx, payload, payload_hash, occurred_at, logged_at, signature_ref, redacted_by
		FROM ledger.entries
		WHERE type = 'revision' AND record_id = $1 AND idx < $2 AND ($3::timestamptz IS NULL OR logged_at <= $3)
		ORDER BY revision`, recordID, limit, at)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", recordID, err)
	}
	revs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RecordRevision, error) {
		var r RecordRevision
		err := row.Scan(&r.RecordID, &r.Kind, &r.Revision, &r.LeafIndex, &r.Payload, &r.PayloadHash, &r.OccurredAt, &r.LoggedAt, &r.SignatureRef, &r.RedactedBy)
		r.Redacted = r.RedactedBy != nil
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", recordID, err)
	}
	if len(revs) == 0 {
		return nil, apperr.Errorf(apperr.NotFound, "record %s not found", recordID)
	}
	return revs, nil
}

// Current returns the latest revision of a record as of the given point.
func (j *Journal) Current(ctx context.Context, recordID string, asOf AsOf) (RecordRevision, error) {
	revs, err := j.History(ctx, recordID, asOf)
	if err != nil {
		return RecordRevision{}, err
	}
	return revs[len(revs)-1], nil
}

// sizeLimit turns AsOf.TreeSize into an exclusive leaf index bound, checking
// that a checkpoint of that size exists.
func (j *Journal) sizeLimit(ctx context.Context, asOf AsOf) (int64, error) {
	if asOf.TreeSize == 0 {
		return 1<<63 - 1, nil
	}
	if _, err := j.CheckpointAt(ctx, asOf.TreeSize); err != nil {
		return 0, err
	}
	return asOf.TreeSize, nil
}

// Redact erases the payload of one revision and journals the erasure as a
// redaction entry naming the revision, its payload hash and the reason. The
// revision's leaf is untouched, so every proof and receipt still verifies.
// Redacting an already redacted revision returns the first redaction.
func (j *Journal) Redact(ctx context.Context, recordID string, revision int64, reason string) (Appended, error) {
	var out Appended
	var target int64
	var fresh bool
	err := j.sequence(ctx, func(ctx context.Context, tx pgx.Tx, now time.Time) ([]leaf, error) {
		var hash []byte
		var redactedBy *int64
		err := tx.QueryRow(ctx, `SELECT idx, payload_hash, redacted_by FROM ledger.entries
			WHERE type = 'revision' AND record_id = $1 AND revision = $2`, recordID, revision).Scan(&target, &hash, &redactedBy)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, apperr.Wrap(apperr.NotFound, err, "record %s has no revision %d", recordID, revision)
		}
		if err != nil {
			return nil, fmt.Errorf("redact %s/%d: %w", recordID, revision, err)
		}
		if redactedBy != nil {
			var logged time.Time
			if err := tx.QueryRow(ctx, "SELECT logged_at FROM ledger.entries WHERE idx = $1", *redactedBy).Scan(&logged); err != nil {
				return nil, fmt.Errorf("redact %s/%d: read earlier redaction: %w", recordID, revision, err)
			}
			out = Appended{RecordID: recordID, Revision: revision, LeafIndex: *redactedBy, LoggedAt: logged, Existed: true}
			return nil, nil
		}
		e := verify.Entry{Type: verify.TypeRedaction, RecordID: recordID, Revision: revision, Target: target, Reason: reason, LoggedAt: now}
		copy(e.PayloadHash[:], hash)
		data, err := e.Marshal()
		if err != nil {
			return nil, apperr.Fields("invalid redaction", apperr.FieldError{Field: "reason", Message: err.Error()})
		}
		fresh = true
		out = Appended{RecordID: recordID, Revision: revision, LoggedAt: now}
		return []leaf{{entry: e, data: data}}, nil
	}, func(first int64) {
		if fresh {
			out.LeafIndex = first
		}
	}, func(ctx context.Context, tx pgx.Tx, first int64) error {
		if _, err := tx.Exec(ctx, "UPDATE ledger.entries SET payload = NULL, redacted_by = $1 WHERE idx = $2", first, target); err != nil {
			return fmt.Errorf("redact %s/%d: erase payload: %w", recordID, revision, err)
		}
		return nil
	})
	if err != nil {
		return Appended{}, err
	}
	return out, nil
}

// RawEntry is one leaf as auditors fetch it: its index and exact bytes.
type RawEntry struct {
	Index int64        `json:"index"`
	Data  verify.Bytes `json:"data"`
}

// MaxEntriesPage bounds one Entries call.
const MaxEntriesPage = 1000

// Entries returns up to limit leaves from index start, in order, for
// auditors who recompute the tree themselves.
func (j *Journal) Entries(ctx context.Context, start, limit int64) ([]RawEntry, error) {
	if start < 0 {
		return nil, apperr.Fields("invalid range", apperr.FieldError{Field: "start", Message: "must not be negative"})
	}
	if limit < 1 || limit > MaxEntriesPage {
		return nil, apperr.Fields("invalid range", apperr.FieldError{Field: "limit", Message: fmt.Sprintf("must be between 1 and %d", MaxEntriesPage)})
	}
	rows, err := j.pool.Query(ctx, "SELECT idx, data FROM ledger.entries WHERE idx >= $1 AND idx < (SELECT size FROM ledger.tree) ORDER BY idx LIMIT $2", start, limit)
	if err != nil {
		return nil, fmt.Errorf("read entries from %d: %w", start, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RawEntry, error) {
		var e RawEntry
		err := row.Scan(&e.Index, &e.Data)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read entries from %d: %w", start, err)
	}
	return out, nil
}
