package lending

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/services/lending/scorecard"
)

// scoreRow is a score computed for a decision, as stored and journaled.
type scoreRow struct {
	ID        string
	Result    scorecard.Result
	Payload   []byte
	At        time.Time
	LeafIndex *int64
}

// scorePayload is the journaled record of a score: which model (version
// and file digest) scored which farmer for which bank and product, what it
// concluded, and the journal leaves of the evidence it saw, so that a
// dispute can prove what the decision rested on.
type scorePayload struct {
	Format         string           `json:"format"`
	ScoreID        string           `json:"score_id"`
	OrganizationID string           `json:"organization_id"`
	FarmerID       string           `json:"farmer_id"`
	ProductID      string           `json:"product_id"`
	LoanID         *string          `json:"loan_id"`
	Purpose        string           `json:"purpose"`
	Amount         int64            `json:"amount"`
	ComputedAt     time.Time        `json:"computed_at"`
	Result         scorecard.Result `json:"result"`
	EvidenceLeaves []int64          `json:"evidence_leaves"`
}

// ScoreView is a score as the API shows it.
type ScoreView struct {
	ID         string    `json:"id"`
	FarmerID   string    `json:"farmer_id"`
	ProductID  string    `json:"product_id"`
	LoanID     *string   `json:"loan_id"`
	ComputedAt time.Time `json:"computed_at"`
	scorecard.Result
	// LeafIndex is the score's journal entry (record <id>, kind
	// credit.score), null until journaled.
	LeafIndex *int64 `json:"leaf_index"`
}

// newScore scores d for a product in tx and stores the score with its
// journal payload; the caller journals it after commit
// (journalScoresAfter).
func (s *Service) newScore(ctx context.Context, tx pgx.Tx, org string, d *farmerData, p *Product, amount int64, loanID *string, purpose string) (*scoreRow, error) {
	rows, err := s.newScores(ctx, tx, org, []*farmerData{d}, p, amount, loanID, purpose)
	if err != nil {
		return nil, err
	}
	return rows[0], nil
}

// newScores is newScore for many farmers, in one statement.
func (s *Service) newScores(ctx context.Context, tx pgx.Tx, org string, ds []*farmerData, p *Product, amount int64, loanID *string, purpose string) ([]*scoreRow, error) {
	at := s.now().UTC().Truncate(time.Microsecond)
	req := scorecard.Request{Amount: amount, Product: scorecard.Product{Crops: p.Crops, Currency: p.Currency, LTV: float64(p.LTVBps) / 10000,
		MinAmount: p.MinAmount, MaxAmount: p.MaxAmount}}
	out := make([]*scoreRow, len(ds))
	n := len(ds)
	ids, farmers, bands, payloads := make([]string, n), make([]string, n), make([]string, n), make([][]byte, n)
	scores := make([]int32, n)
	pds, confs := make([]float64, n), make([]float64, n)
	limits := make([]int64, n)
	for i, d := range ds {
		res := s.model.Score(d.evidence(at), req)
		leaves := []int64{}
		for _, r := range res.Evidence {
			if r.LeafIndex != nil {
				leaves = append(leaves, *r.LeafIndex)
			}
		}
		id := uuid.NewString()
		payload, err := canonical(scorePayload{Format: "tani.credit-score/v1", ScoreID: id, OrganizationID: org, FarmerID: d.FarmerID, ProductID: p.ID,
			LoanID: loanID, Purpose: purpose, Amount: amount, ComputedAt: at, Result: res, EvidenceLeaves: leaves})
		if err != nil {
			return nil, fmt.Errorf("score of farmer %s: %w", d.FarmerID, err)
		}
		out[i] = &scoreRow{ID: id, Result: res, Payload: payload, At: at}
		ids[i], farmers[i], bands[i], payloads[i] = id, d.FarmerID, res.Band, payload
		scores[i], pds[i], confs[i], limits[i] = int32(res.Score), res.PD, res.Confidence, res.Limit
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO lending.scores (id, organization_id, farmer_id, product_id, loan_id, model_version, score, band, pd, recommended_limit,
		                            confidence, payload, computed_at)
		SELECT u.id, $1, u.farmer, $2, $3, $4, u.score, u.band, u.pd, u.lim, u.conf, u.payload, $5
		FROM unnest($6::uuid[], $7::uuid[], $8::int[], $9::text[], $10::float8[], $11::bigint[], $12::float8[], $13::bytea[])
		     AS u(id, farmer, score, band, pd, lim, conf, payload)`,
		org, p.ID, loanID, s.model.Version, at, ids, farmers, scores, bands, pds, limits, confs, payloads); err != nil {
		return nil, fmt.Errorf("store %d scores: %w", n, err)
	}
	return out, nil
}

// journalScores appends committed scores to the journal (record <score
// id>, revision 1, kind credit.score) and records their leaves.
func (s *Service) journalScores(ctx context.Context, rows []*scoreRow) error {
	if len(rows) == 0 {
		return nil
	}
	revs := make([]ledger.Revision, len(rows))
	for i, r := range rows {
		revs[i] = ledger.Revision{RecordID: r.ID, Kind: "credit.score", Revision: 1, Payload: r.Payload, OccurredAt: r.At, SignatureRef: "lending:" + r.Result.Model}
	}
	app, err := s.journal.Append(ctx, revs...)
	if err != nil {
		return fmt.Errorf("journal %d scores: %w", len(rows), err)
	}
	ids, leaves := make([]string, len(app)), make([]int64, len(app))
	for i, a := range app {
		ids[i], leaves[i] = a.RecordID, a.LeafIndex
		rows[i].LeafIndex = &leaves[i]
	}
	if _, err := s.pool.Exec(ctx, `
		UPDATE lending.scores sc SET leaf_index = u.leaf FROM unnest($1::uuid[], $2::bigint[]) AS u(id, leaf)
		WHERE sc.id = u.id AND sc.leaf_index IS NULL`, ids, leaves); err != nil {
		return fmt.Errorf("record journal leaves of %d scores: %w", len(rows), err)
	}
	return nil
}

// journalScoresAfter journals committed scores, leaving failures to the
// servicing loop's sweep.
func (s *Service) journalScoresAfter(ctx context.Context, rows ...*scoreRow) {
	var keep []*scoreRow
	for _, r := range rows {
		if r != nil {
			keep = append(keep, r)
		}
	}
	if err := s.journalScores(context.WithoutCancel(ctx), keep); err != nil {
		s.logger.WarnContext(ctx, "scores not journaled yet; the servicing loop retries", "err", err)
	}
}

// ScoreRequest asks for a farmer's score for one of the bank's products.
type ScoreRequest struct {
	ProductID string `json:"product_id" validate:"required,uuidlower"`
	// Amount, when given, is what the farmer asks: income is judged
	// against it (else against the product's maximum).
	Amount *Money `json:"amount,omitempty"`
}

// scoreFarmer: POST /farmers/{id}/score. Every score is computed for a
// decision the bank is making, so every one is journaled.
func (s *Service) scoreFarmer(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	farmer, err := idParam(c, "id")
	if err != nil {
		return err
	}
	var req ScoreRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var product *Product
	if err := pgx.BeginFunc(ctx, s.readPool, func(tx pgx.Tx) error {
		product, err = loadProduct(ctx, tx, bank.OrganizationID, req.ProductID)
		return err
	}); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return apperr.Fields("invalid score request", apperr.FieldError{Field: "product_id", Message: "is not one of your products"})
		}
		return err
	}
	var amount int64
	if req.Amount != nil {
		if fields := checkAmount(product, *req.Amount, "amount"); len(fields) > 0 {
			return apperr.Fields("invalid score request", fields...)
		}
		amount = req.Amount.Amount
	}
	var sc *scoreRow
	err = s.gate.ReadFor(c, farmer, scoreScopes, "credit score", func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
		data, err := loadFarmers(ctx, tx, []string{farmer}, defaultSections)
		if err != nil {
			return err
		}
		sc, err = s.newScore(ctx, tx, bank.OrganizationID, data[farmer], product, amount, nil, "score")
		return err
	})
	if err != nil {
		return err
	}
	s.journalScoresAfter(ctx, sc)
	return c.JSON(http.StatusOK, ScoreView{ID: sc.ID, FarmerID: farmer, ProductID: product.ID, ComputedAt: sc.At, Result: sc.Result, LeafIndex: sc.LeafIndex})
}

// RescoreRequest re-scores a bank's book.
type RescoreRequest struct {
	ProductID string `json:"product_id" validate:"required,uuidlower"`
}

// RescoreResult summarizes a re-scoring.
type RescoreResult struct {
	Farmers int            `json:"farmers"`
	Scored  int            `json:"scored"`
	Denied  int            `json:"denied"`
	Bands   map[string]int `json:"bands"`
	// Journaled counts the scores whose journal entries are written.
	Journaled int     `json:"journaled"`
	Seconds   float64 `json:"seconds"`
}

// rescoreChunk is how many farmers one gated read and one journal append
// take.
const rescoreChunk = 500

// rescore: POST /rescore: scores again, for a product, every farmer with a
// loan of this bank that is out (disbursed, in arrears, restructured),
// each through the consent gate (a farmer who revoked is skipped and
// counted as denied), and journals every score.
func (s *Service) rescore(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	var req RescoreRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var product *Product
	if err := pgx.BeginFunc(ctx, s.readPool, func(tx pgx.Tx) error {
		product, err = loadProduct(ctx, tx, bank.OrganizationID, req.ProductID)
		return err
	}); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return apperr.Fields("invalid re-scoring", apperr.FieldError{Field: "product_id", Message: "is not one of your products"})
		}
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT farmer_id::text FROM lending.loans
		WHERE organization_id = $1 AND state IN ('disbursed', 'in_arrears', 'restructured') ORDER BY 1`, bank.OrganizationID)
	if err != nil {
		return fmt.Errorf("book of %s: %w", bank.OrganizationID, err)
	}
	farmers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("book of %s: %w", bank.OrganizationID, err)
	}
	res, err := s.Rescore(ctx, bank, product, farmers)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// Rescore scores farmers for product on behalf of bank, chunk by chunk:
// one consent-gate pass, one evidence read and one score insert per
// chunk, then one journal append per chunk.
func (s *Service) Rescore(ctx context.Context, bank identity.Principal, product *Product, farmers []string) (*RescoreResult, error) {
	start := time.Now()
	res := &RescoreResult{Farmers: len(farmers), Bands: map[string]int{}}
	for i := 0; i < len(farmers); i += rescoreChunk {
		chunk := farmers[i:min(i+rescoreChunk, len(farmers))]
		var scored []*scoreRow
		var denied int
		err := s.gate.ReadEach(ctx, bank, consent.Access{Scopes: scoreScopes, Purpose: "portfolio re-scoring"}, chunk,
			func(ctx context.Context, tx pgx.Tx, allowed map[string]consent.Grant) error {
				denied = len(chunk) - len(allowed)
				ids := make([]string, 0, len(allowed))
				for _, f := range chunk {
					if _, ok := allowed[f]; ok {
						ids = append(ids, f)
					}
				}
				if len(ids) == 0 {
					return nil
				}
				data, err := loadFarmers(ctx, tx, ids, defaultSections)
				if err != nil {
					return err
				}
				ds := make([]*farmerData, len(ids))
				for k, f := range ids {
					ds[k] = data[f]
				}
				scored, err = s.newScores(ctx, tx, bank.OrganizationID, ds, product, 0, nil, "rescore")
				return err
			})
		if err != nil {
			return nil, err
		}
		res.Denied += denied
		res.Scored += len(scored)
		for _, sc := range scored {
			res.Bands[sc.Result.Band]++
		}
		if err := s.journalScores(ctx, scored); err != nil {
			s.logger.WarnContext(ctx, "re-scoring: scores not journaled yet; the servicing loop retries", "err", err)
		} else {
			res.Journaled += len(scored)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}
