package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/verify"
)

// Erasure asks the journal to forget every revision of some records: the
// records about a farmer who asked to be forgotten. The journal erases
// their payloads and appends, in one transaction, a redaction entry per
// erased revision and an entry for the erasure itself, naming whom it is
// about and the leaves it erased. Leaves commit to payload hashes, so every
// root, proof and receipt still verifies.
type Erasure struct {
	// ID names the erasure: its entry is revision Revision of record ID.
	ID       string
	Revision int64
	// Kind is the erasure entry's kind, e.g. "farmer.erasure.executed".
	Kind string
	// Subject says whom the erasure is about, without personal data
	// (e.g. "farmer <uuid>"). It is public to every auditor.
	Subject string
	// RecordIDs are the records whose every revision is erased. They are
	// refused by Append from then on.
	RecordIDs []string
	// OccurredAt is when the erasure was requested.
	OccurredAt time.Time
	// SignatureRef names who asked for it.
	SignatureRef string
}

// Erased says what an erasure did to the journal.
type Erased struct {
	// LeafIndex is the erasure's own entry.
	LeafIndex int64 `json:"leaf_index"`
	// Redacted are the leaf indexes of the revisions whose payloads it
	// erased; Redactions those of the redaction entries it appended.
	Redacted   []int64 `json:"redacted"`
	Redactions []int64 `json:"redactions"`
	// Existed is true when the erasure had already been done: nothing was
	// appended.
	Existed bool `json:"-"`
}

// erasurePayload is the payload of an erasure entry: ids and leaf indexes,
// never personal data.
type erasurePayload struct {
	ErasureID  string  `json:"erasure_id"`
	Subject    string  `json:"subject"`
	Records    int     `json:"records"`
	Redacted   []int64 `json:"redacted"`
	Redactions []int64 `json:"redactions"`
}

// Erase carries out an erasure (see Erasure). It is idempotent: an
// erasure already done returns what it did then, whatever RecordIDs now
// says. Revisions redacted earlier are left as they are.
func (j *Journal) Erase(ctx context.Context, e Erasure) (Erased, error) {
	if e.ID == "" || e.Subject == "" {
		return Erased{}, apperr.Fields("invalid erasure",
			apperr.FieldError{Field: "id", Message: "must not be empty"}, apperr.FieldError{Field: "subject", Message: "must not be empty"})
	}
	var out Erased
	var targets []int64
	var entry verify.Entry
	err := j.sequence(ctx, func(ctx context.Context, tx pgx.Tx, now time.Time) ([]leaf, error) {
		out, targets = Erased{}, nil
		err := tx.QueryRow(ctx, `SELECT leaf_index, redacted, redactions FROM ledger.erasures WHERE id = $1`, e.ID).
			Scan(&out.LeafIndex, &out.Redacted, &out.Redactions)
		if err == nil {
			out.Existed = true
			return nil, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("erasure %s: %w", e.ID, err)
		}
		var size int64
		if err := tx.QueryRow(ctx, "SELECT size FROM ledger.tree").Scan(&size); err != nil {
			return nil, fmt.Errorf("erasure %s: read tree size: %w", e.ID, err)
		}
		rows, err := tx.Query(ctx, `
			SELECT idx, record_id, revision, payload_hash FROM ledger.entries
			WHERE type = 'revision' AND record_id = ANY($1::text[]) AND redacted_by IS NULL ORDER BY idx`, nonNilStrings(e.RecordIDs))
		if err != nil {
			return nil, fmt.Errorf("erasure %s: find revisions: %w", e.ID, err)
		}
		var leaves []leaf
		var idx, rev int64
		var record string
		var hash []byte
		_, err = pgx.ForEachRow(rows, []any{&idx, &record, &rev, &hash}, func() error {
			r := verify.Entry{Type: verify.TypeRedaction, RecordID: record, Revision: rev, Target: idx, Reason: "erasure " + e.ID, LoggedAt: now}
			copy(r.PayloadHash[:], hash)
			data, err := r.Marshal()
			if err != nil {
				return apperr.Wrap(apperr.Invalid, err, "erasure %s: redaction of leaf %d", e.ID, idx)
			}
			targets = append(targets, idx)
			out.Redacted = append(out.Redacted, idx)
			out.Redactions = append(out.Redactions, size+int64(len(leaves)))
			leaves = append(leaves, leaf{entry: r, data: data})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("erasure %s: find revisions: %w", e.ID, err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ledger.entries WHERE type = 'revision' AND record_id = $1 AND revision = $2)`,
			e.ID, e.Revision).Scan(&exists); err != nil {
			return nil, fmt.Errorf("erasure %s: %w", e.ID, err)
		}
		if exists {
			return nil, apperr.Errorf(apperr.Conflict, "record %s already has a revision %d: the erasure entry cannot take its place", e.ID, e.Revision)
		}
		payload, err := json.Marshal(erasurePayload{ErasureID: e.ID, Subject: e.Subject, Records: len(e.RecordIDs),
			Redacted: nonNilInts(out.Redacted), Redactions: nonNilInts(out.Redactions)})
		if err != nil {
			return nil, err
		}
		entry = verify.Entry{Type: verify.TypeRevision, RecordID: e.ID, Kind: e.Kind, Revision: e.Revision, PayloadHash: sha256.Sum256(payload),
			OccurredAt: e.OccurredAt.UTC().Truncate(time.Microsecond), SignatureRef: e.SignatureRef, LoggedAt: now}
		data, err := entry.Marshal()
		if err != nil {
			return nil, apperr.Fields("invalid erasure", apperr.FieldError{Field: "entry", Message: err.Error()})
		}
		out.LeafIndex = size + int64(len(leaves))
		return append(leaves, leaf{entry: entry, data: data, payload: payload}), nil
	}, func(int64) {}, func(ctx context.Context, tx pgx.Tx, first int64) error {
		if _, err := tx.Exec(ctx, `
			UPDATE ledger.entries e SET payload = NULL, redacted_by = u.by
			FROM unnest($1::bigint[], $2::bigint[]) AS u(idx, by) WHERE e.idx = u.idx`, nonNilInts(targets), nonNilInts(out.Redactions)); err != nil {
			return fmt.Errorf("erasure %s: erase payloads: %w", e.ID, err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO ledger.erasures (id, subject, leaf_index, redacted, redactions, erased_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			e.ID, e.Subject, out.LeafIndex, nonNilInts(out.Redacted), nonNilInts(out.Redactions), entry.LoggedAt); err != nil {
			return fmt.Errorf("erasure %s: record it: %w", e.ID, err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO ledger.erased_records (record_id, erasure_id) SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING`,
			nonNilStrings(e.RecordIDs), e.ID); err != nil {
			return fmt.Errorf("erasure %s: refuse its records: %w", e.ID, err)
		}
		return nil
	})
	if err != nil {
		return Erased{}, err
	}
	return out, nil
}

// loadErased returns which records of norm an erasure named, with the
// erasure's id: appending them again is refused.
func loadErased(ctx context.Context, tx pgx.Tx, norm []verify.Entry) (map[string]string, error) {
	ids := make([]string, len(norm))
	for i, e := range norm {
		ids[i] = e.RecordID
	}
	rows, err := tx.Query(ctx, `SELECT record_id, erasure_id FROM ledger.erased_records WHERE record_id = ANY($1::text[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up erased records: %w", err)
	}
	out := map[string]string{}
	var id, erasure string
	if _, err := pgx.ForEachRow(rows, []any{&id, &erasure}, func() error { out[id] = erasure; return nil }); err != nil {
		return nil, fmt.Errorf("look up erased records: %w", err)
	}
	return out, nil
}

func erasedConflict(e verify.Entry, erasure string) error {
	return apperr.Errorf(apperr.Conflict, "record %s was erased (erasure %s); it cannot be journaled again", e.RecordID, erasure)
}

func nonNilInts(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
