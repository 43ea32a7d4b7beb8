package consent

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/ledger"
)

// ErasureConsumerName is the consent module's durable consumer of erasure
// requests.
const ErasureConsumerName = "consent-erasure"

// eraser is the consent module as an owner of farmer data: organizations'
// consent requests to the farmer, the consent state changes it journaled,
// and the access log of reads of the farmer's data.
var eraser = forget.Owner{Name: "consent", Table: "consent.erasures", Clear: []string{"consent_ids"}}

// Erased is what the consent module's erasure of a farmer did (counts and
// journal leaves only).
type Erased struct {
	Requests int64 `json:"requests"` // consent requests to the farmer, deleted
	Events   int64 `json:"events"`   // consent state changes, deleted (their journal entries redacted)
	// AccessLog counts the access-log rows pseudonymised: kept, with the
	// erasure's id in place of the farmer's.
	AccessLog int64          `json:"access_log_pseudonymised"`
	Journal   *ledger.Erased `json:"journal,omitempty"`
}

// erase forgets a farmer in the consent module:
//
//  1. under the farmer's lock, the tombstone (from then on no request may
//     be made to the farmer and the sweep records nothing about them),
//     and the ids of the farmer's consents and requests, kept in the row
//     until the erasure completes so that a retry still knows them;
//  2. the farmer's requests (purpose, scopes, who asked) and state
//     changes are deleted, and the access log is pseudonymised;
//  3. the journal redacts the payloads of the state changes the consent
//     service journaled (requests and expiries: they name the farmer and
//     the requester's purpose), leaving their hashes, so that a bank
//     holding a receipt can still prove it; the signed consent records
//     themselves are attest's to erase;
//  4. what a sweep racing steps 1–3 may have added is deleted and
//     pseudonymised again.
//
// The access log is kept, not deleted: a regulator, or the farmer through
// an operator, may ask who read the farmer's data, when, what and under
// which consent, and the organizations' own records of those reads
// (request ids, receipts) must stay answerable. What identifies the
// farmer goes: the row names the erasure instead (the journaled erasure
// request links it to an id that nothing in Tani links to a person any
// more). Purposes and denial reasons are Tani's own words, never the
// farmer's data, so they stay.
func (s *Service) erase(ctx context.Context, r forget.Request) (any, error) {
	var out Erased
	var ids []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = Erased{}
		if _, err := eraser.Begin(ctx, tx, r); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `
			UPDATE consent.erasures e SET consent_ids = ARRAY(SELECT DISTINCT unnest(coalesce(e.consent_ids, '{}') ||
			    ARRAY(SELECT id FROM consent.requests WHERE farmer_id = e.farmer_id) ||
			    ARRAY(SELECT consent_id FROM ingest.consent_grants WHERE farmer_id = e.farmer_id) ||
			    ARRAY(SELECT consent_id FROM consent.events WHERE `+eventFarmerSQL+` = e.farmer_id)))
			WHERE erasure_id = $1
			RETURNING consent_ids::text[]`, r.ErasureID).Scan(&ids)
		if err != nil {
			return fmt.Errorf("list the farmer's consents: %w", err)
		}
		return s.forgetRows(ctx, tx, r, ids, &out)
	})
	if err != nil {
		return nil, err
	}
	occurred := r.RequestedAt
	if occurred.IsZero() {
		occurred = time.Now()
	}
	if len(ids) > 0 {
		// A journal erasure of its own (the farmer's records are attest's,
		// under the erasure's id): its id is derived, so a retry finds it.
		je, err := s.journal.Erase(ctx, ledger.Erasure{
			ID: JournalErasureID(r.ErasureID), Revision: 1, Kind: forget.KindExecuted,
			Subject: "farmer " + r.FarmerID + ": consent state changes", RecordIDs: ids, OccurredAt: occurred, SignatureRef: "consent-service",
		})
		if err != nil {
			return nil, fmt.Errorf("erase the farmer's consent journal entries: %w", err)
		}
		out.Journal = &je
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return s.forgetRows(ctx, tx, r, ids, &out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// JournalErasureID is the journal record of the consent module's part of
// erasure erasureID.
func JournalErasureID(erasureID string) string {
	return uuid.NewSHA1(uuid.MustParse(erasureID), []byte("consent")).String()
}

// eventFarmerSQL is the farmer a consent event is about (every payload
// names it).
const eventFarmerSQL = `(convert_from(payload, 'UTF8')::jsonb->>'farmer_id')::uuid`

// forgetRows deletes the farmer's requests and consent events and
// pseudonymises their access-log rows, adding the counts to out.
func (s *Service) forgetRows(ctx context.Context, tx pgx.Tx, r forget.Request, ids []string, out *Erased) error {
	tag, err := tx.Exec(ctx, `DELETE FROM consent.events WHERE consent_id = ANY($1::uuid[]) OR `+eventFarmerSQL+` = $2`, ids, r.FarmerID)
	if err != nil {
		return fmt.Errorf("delete the farmer's consent events: %w", err)
	}
	out.Events += tag.RowsAffected()
	if tag, err = tx.Exec(ctx, `DELETE FROM consent.requests WHERE farmer_id = $1`, r.FarmerID); err != nil {
		return fmt.Errorf("delete the farmer's consent requests: %w", err)
	}
	out.Requests += tag.RowsAffected()
	if tag, err = tx.Exec(ctx, `UPDATE consent.access_log SET farmer_id = NULL, erasure_id = $2 WHERE farmer_id = $1`, r.FarmerID, r.ErasureID); err != nil {
		return fmt.Errorf("pseudonymise the farmer's access log: %w", err)
	}
	out.AccessLog += tag.RowsAffected()
	return nil
}

// forgetLate runs in every sweep: reads of an erased farmer's id logged
// after the erasure (an organization still asking, refused) are
// pseudonymised like the others, and state changes about an erased farmer
// that a sweep recorded while the erasure ran are deleted before they are
// journaled.
func forgetLate(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `
		UPDATE consent.access_log l SET farmer_id = NULL, erasure_id = e.erasure_id
		FROM consent.erasures e WHERE l.farmer_id = e.farmer_id AND e.completed_at IS NOT NULL`); err != nil {
		return fmt.Errorf("pseudonymise access to erased farmers: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		DELETE FROM consent.events v USING consent.erasures e
		WHERE v.leaf_index IS NULL AND `+eventFarmerSQL+` = e.farmer_id`); err != nil {
		return fmt.Errorf("delete consent events of erased farmers: %w", err)
	}
	return nil
}
