package marketplace

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/ledger"
)

// ErasureConsumerName is the marketplace's durable consumer of erasure
// requests.
const ErasureConsumerName = "marketplace-erasure"

// eraser is the marketplace as an owner of farmer data: the farmer named
// in orders and deliveries, where their goods were received and the photo
// of them. The erasures table is the tombstone its writers fence on.
var eraser = forget.Owner{Name: "marketplace", Table: "marketplace.erasures"}

// Erased is what the marketplace's erasure of a farmer did (counts only).
type Erased struct {
	Orders     int64 `json:"orders"`      // orders kept under a pseudonym
	Deliveries int64 `json:"deliveries"`  // deliveries kept under it, without place and photo
	Revisions  int64 `json:"revisions"`   // order revisions rewritten under the pseudonym
	Redacted   int   `json:"redacted"`    // journaled order revisions whose payload (naming the farmer) was redacted
	DemandPlan int64 `json:"demand_plan"` // rows of the demand outlook's plan that held the farmer
}

// errFarmerErased refuses a farmer-level operation on a farmer who asked
// to be forgotten.
func errFarmerErased(farmer string) error {
	return apperr.Errorf(apperr.NotFound, "farmer %s asked to be forgotten", farmer)
}

// erase forgets a farmer in the marketplace. Orders and deliveries are the
// distributor's commercial records, which it may have to keep (tax, the
// bank's voucher settlement): they stay, with the farmer replaced by a
// pseudonym drawn once per erasure, and the plot, the place the goods were
// received and the photo hash are erased. The order revisions waiting in
// the outbox are rewritten under the pseudonym; those already in the
// journal named the farmer, so their payloads are redacted there (leaves
// and receipts still verify). The farmer leaves the demand outlook's plan
// too. Idempotent: a retry finds nothing left under
// the farmer's id and redacts what is still unredacted.
func (s *Service) erase(ctx context.Context, r forget.Request) (any, error) {
	var out Erased
	var pseudonym string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = Erased{}
		if _, err := eraser.Begin(ctx, tx, r); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT pseudonym::text FROM marketplace.erasures WHERE erasure_id = $1`, r.ErasureID).Scan(&pseudonym); err != nil {
			return fmt.Errorf("pseudonym of erasure %s: %w", r.ErasureID, err)
		}
		rows, err := tx.Query(ctx, `
			UPDATE marketplace.orders SET farmer_id = $2, plot_id = NULL, farmer_erased = true, updated_at = now()
			WHERE farmer_id = $1 RETURNING order_id::text`, r.FarmerID, pseudonym)
		if err != nil {
			return fmt.Errorf("pseudonymise orders: %w", err)
		}
		orders, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("pseudonymise orders: %w", err)
		}
		out.Orders = int64(len(orders))
		// The payloads are canonical JSON: a UUID replaced by another of
		// the same length keeps them canonical.
		tag, err := tx.Exec(ctx, `
			UPDATE marketplace.order_revisions SET payload = convert_to(replace(convert_from(payload, 'UTF8'), $2, $3), 'UTF8')
			WHERE order_id = ANY($1::uuid[]) AND position($2 in convert_from(payload, 'UTF8')) > 0`, orders, r.FarmerID, pseudonym)
		if err != nil {
			return fmt.Errorf("pseudonymise order revisions: %w", err)
		}
		out.Revisions = tag.RowsAffected()
		tag, err = tx.Exec(ctx, `
			UPDATE marketplace.deliveries SET farmer_id = $2, lat = NULL, lon = NULL, photo_hash = NULL, farmer_erased = true
			WHERE farmer_id = $1`, r.FarmerID, pseudonym)
		if err != nil {
			return fmt.Errorf("erase deliveries: %w", err)
		}
		out.Deliveries = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return nil, err
	}
	n, err := s.redactJournaled(ctx, r, pseudonym)
	if err != nil {
		return nil, err
	}
	out.Redacted = n
	// The plan the demand outlook is kept from holds the farmer's plots and
	// their share of each cell; the published cells (never under k farmers)
	// move at the next refresh.
	if out.DemandPlan, err = s.EraseDemand(ctx, r.FarmerID); err != nil {
		return nil, fmt.Errorf("erase farmer from the demand plan: %w", err)
	}
	return out, nil
}

// redactJournaled redacts, in the journal, every revision of the erased
// farmer's orders whose payload names the farmer. Revisions still waiting
// in the outbox are journaled first (under the pseudonym); one that a
// sweeper was journaling as the erasure ran may still carry the farmer's
// id, so until every revision is journaled the erasure is retried.
func (s *Service) redactJournaled(ctx context.Context, r forget.Request, pseudonym string) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT order_id::text FROM marketplace.orders WHERE farmer_id = $1 ORDER BY order_id`, pseudonym)
	if err != nil {
		return 0, fmt.Errorf("orders of erasure %s: %w", r.ErasureID, err)
	}
	orders, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("orders of erasure %s: %w", r.ErasureID, err)
	}
	farmer := []byte(r.FarmerID)
	redacted := 0
	for _, id := range orders {
		if err := s.journalRevisions(ctx, id); err != nil {
			return redacted, err
		}
		var pending int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM marketplace.order_revisions WHERE order_id = $1 AND leaf_index IS NULL`, id).Scan(&pending); err != nil {
			return redacted, fmt.Errorf("order %s revisions: %w", id, err)
		}
		if pending > 0 {
			return redacted, fmt.Errorf("order %s has %d revisions not journaled yet", id, pending)
		}
		revs, err := s.journal.History(ctx, id, ledger.AsOf{})
		if err != nil {
			return redacted, fmt.Errorf("journal history of order %s: %w", id, err)
		}
		for _, rev := range revs {
			if rev.Redacted || !bytes.Contains(rev.Payload, farmer) {
				continue
			}
			if _, err := s.journal.Redact(ctx, id, rev.Revision, "erasure "+r.ErasureID); err != nil {
				return redacted, fmt.Errorf("redact order %s revision %d: %w", id, rev.Revision, err)
			}
			redacted++
		}
	}
	return redacted, nil
}
