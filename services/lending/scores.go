package lending

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/ledger/verify"
)

// PastScore is a score computed earlier for one of the bank's decisions,
// as it was journaled: what a dispute needs to prove what the decision saw.
type PastScore struct {
	ID         string    `json:"id"`
	FarmerID   string    `json:"farmer_id"`
	ProductID  string    `json:"product_id"`
	LoanID     *string   `json:"loan_id"`
	Purpose    string    `json:"purpose"`
	ComputedAt time.Time `json:"computed_at"`
	// ModelVersion and ModelSHA256 name the scorecard file that scored.
	ModelVersion string `json:"model_version"`
	ModelSHA256  string `json:"model_sha256"`
	// Result is the score as computed: score, band, PD, limit,
	// confidence, plots, factor values and points, adverse reasons with
	// their evidence, hints.
	Result json.RawMessage `json:"result"`
	// EvidenceLeaves are the journal leaves of every record the score saw.
	EvidenceLeaves []int64 `json:"evidence_leaves"`
	// Entry is the score's journal entry (record <id>, revision 1, kind
	// credit.score): the exact payload bytes the journal committed to and
	// the receipt that proves it (`tani receipt verify`).
	Entry struct {
		LeafIndex int64           `json:"leaf_index"`
		Payload   json.RawMessage `json:"payload"`
		Receipt   *verify.Receipt `json:"receipt"`
	} `json:"entry"`
}

// getScore: GET /scores/{id}: one of the bank's past scores with its
// journal receipt. Another bank's score is not found; so is the score of
// a farmer Tani has erased (its evidence is no longer held).
func (s *Service) getScore(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	load := func() (payload []byte, leaf *int64, err error) {
		err = s.pool.QueryRow(ctx, `SELECT payload, leaf_index FROM lending.scores WHERE id = $1 AND organization_id = $2`, id, bank.OrganizationID).
			Scan(&payload, &leaf)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, apperr.Errorf(apperr.NotFound, "score %s not found", id)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("load score %s: %w", id, err)
		}
		if payload == nil {
			return nil, nil, apperr.Errorf(apperr.NotFound, "score %s not found: the farmer was erased, and with them the evidence it rested on", id)
		}
		return payload, leaf, nil
	}
	payload, leaf, err := load()
	if err != nil {
		return err
	}
	if leaf == nil {
		// Committed but not journaled yet: journal it now rather than make
		// the bank wait for the servicing loop.
		if err := s.journalPending(ctx); err != nil {
			return apperr.Wrap(apperr.Unavailable, err, "the score is not journaled yet; retry shortly")
		}
		if payload, leaf, err = load(); err != nil {
			return err
		}
		if leaf == nil {
			return apperr.Errorf(apperr.Unavailable, "the score is not journaled yet; retry shortly")
		}
	}
	var p struct {
		scorePayload
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return fmt.Errorf("decode score %s: %w", id, err)
	}
	var model struct {
		Model       string `json:"model"`
		ModelSHA256 string `json:"model_sha256"`
	}
	if err := json.Unmarshal(p.Result, &model); err != nil {
		return fmt.Errorf("decode score %s: %w", id, err)
	}
	_, receipts, err := s.journal.Receipts(ctx, []int64{*leaf})
	if err != nil {
		return err
	}
	out := PastScore{ID: id, FarmerID: p.FarmerID, ProductID: p.ProductID, LoanID: p.LoanID, Purpose: p.Purpose, ComputedAt: p.ComputedAt,
		ModelVersion: model.Model, ModelSHA256: model.ModelSHA256, Result: p.Result, EvidenceLeaves: p.EvidenceLeaves}
	if out.EvidenceLeaves == nil {
		out.EvidenceLeaves = []int64{}
	}
	out.Entry.LeafIndex, out.Entry.Payload, out.Entry.Receipt = *leaf, payload, receipts[0]
	return c.JSON(http.StatusOK, out)
}
