package lending

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/ledger"
)

// ErasureConsumerName is lending's durable consumer of erasure requests.
const ErasureConsumerName = "lending-erasure"

// eraser is lending as an owner of farmer data: its erasures table is the
// tombstone (an erased farmer's scores are no longer served).
var eraser = forget.Owner{Name: "lending", Table: "lending.erasures", Clear: []string{"score_ids"}}

// erasureNamespace derives the id of lending's journal erasure (the
// redaction of the farmer's score entries) from the erasure's id: the
// journal keeps one erasure per id, and revision 2 of the erasure's own id
// is attest's.
var erasureNamespace = uuid.MustParse("8a1f4c2e-6d3b-5e7a-9c0d-2b4f6e8a1c3d")

// Erased is what lending's erasure of a farmer erased, and what it kept as
// the banks' records (counts only).
type Erased struct {
	// Scores whose evidence was erased (payload here, and their journal
	// entries' payloads); their decision and reason codes are kept.
	Scores int64 `json:"scores"`
	// Outcomes are lending's notes on the farmer's agents' loan records.
	Outcomes int64 `json:"record_outcomes"`
	// Journal is the redaction of the score entries.
	Journal ledger.Erased `json:"journal"`
	// LoansKept are the farmer's loans kept as the banks' contracts (with
	// their history, repayments and restructurings), naming the farmer by
	// id only.
	LoansKept int64 `json:"loans_kept"`
}

// erase forgets what lending holds about a farmer beyond what a bank must
// keep. A loan is a contract the bank keeps for as long as the law makes
// it (its terms, the farmer's acceptance, every state change, repayment
// and restructuring): those rows stay, and name the farmer only by id,
// which no longer leads to a person once ingest, attest and mobile-api
// have erased theirs. A score's decision stays with it (score, band, PD,
// limit, confidence, model, the codes of the adverse reasons given, which
// lenders must keep with a decision); the evidence it rested on — the
// farm's plots, areas, yields, sales and record references, in the stored
// payload and the journal entry — is erased, and the score is no longer
// served. In order:
//
//  1. the tombstone, and the farmer's score ids, kept until done so that a
//     retry still knows them; the scores' evidence erased (payload NULL,
//     reason codes kept); lending's notes on the farmer's agents' records
//     deleted;
//  2. the journal erasure of the score entries (payloads erased, one
//     redaction per entry; leaves, roots and receipts still verify).
func (s *Service) erase(ctx context.Context, r forget.Request) (any, error) {
	var out Erased
	var scores []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = Erased{}
		if _, err := eraser.Begin(ctx, tx, r); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `
			UPDATE lending.erasures e SET score_ids = ARRAY(SELECT DISTINCT unnest(coalesce(e.score_ids, '{}') ||
			    ARRAY(SELECT id FROM lending.scores WHERE farmer_id = e.farmer_id)))
			WHERE erasure_id = $1 RETURNING score_ids::text[]`, r.ErasureID).Scan(&scores); err != nil {
			return fmt.Errorf("list the farmer's scores: %w", err)
		}
		tag, err := tx.Exec(ctx, `
			UPDATE lending.scores SET erased_at = now(), payload = NULL,
			    retained_reasons = ARRAY(SELECT jsonb_array_elements(convert_from(payload, 'UTF8')::jsonb -> 'result' -> 'adverse_reasons') ->> 'code')
			WHERE farmer_id = $1 AND payload IS NOT NULL`, r.FarmerID)
		if err != nil {
			return fmt.Errorf("erase the farmer's scores: %w", err)
		}
		out.Scores = tag.RowsAffected()
		if tag, err = tx.Exec(ctx, `DELETE FROM lending.record_outcomes WHERE farmer_id = $1`, r.FarmerID); err != nil {
			return fmt.Errorf("erase the farmer's record outcomes: %w", err)
		}
		out.Outcomes = tag.RowsAffected()
		return tx.QueryRow(ctx, `SELECT count(*) FROM lending.loans WHERE farmer_id = $1`, r.FarmerID).Scan(&out.LoansKept)
	})
	if err != nil {
		return nil, err
	}
	occurred := r.RequestedAt
	if occurred.IsZero() {
		occurred = time.Now()
	}
	// On a retry Scores counts only what this attempt erased; the journal
	// erasure answers what it did the first time.
	out.Journal, err = s.journal.Erase(ctx, ledger.Erasure{
		ID: uuid.NewSHA1(erasureNamespace, []byte(r.ErasureID)).String(), Revision: 1, Kind: forget.KindExecuted,
		Subject: "farmer " + r.FarmerID + ": credit scores", RecordIDs: scores, OccurredAt: occurred, SignatureRef: "lending",
	})
	if err != nil {
		return nil, fmt.Errorf("erase the farmer's score entries from the journal: %w", err)
	}
	return out, nil
}
