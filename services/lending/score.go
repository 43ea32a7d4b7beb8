package lending

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/services/lending/scorecard"
)

// scoreRow is a score computed for a decision, as stored and journaled.
type scoreRow struct {
	ID        string
	FarmerID  string
	Result    scorecard.Result
	Payload   []byte
	At        time.Time
	LeafIndex *int64
}

// scorePayload is the journaled record of a score: which model (version
// and file digest) scored which farmer for which bank and product, what it
// concluded, and the journal leaves of the evidence it saw, so that a
// dispute can prove what the decision rested on. The factors' reasoning
// and sources are not repeated: the model's digest names the file that
// holds them, byte for byte.
type scorePayload struct {
	Format         string         `json:"format"`
	ScoreID        string         `json:"score_id"`
	OrganizationID string         `json:"organization_id"`
	FarmerID       string         `json:"farmer_id"`
	ProductID      string         `json:"product_id"`
	LoanID         *string        `json:"loan_id"`
	Purpose        string         `json:"purpose"`
	Amount         int64          `json:"amount"`
	ComputedAt     time.Time      `json:"computed_at"`
	Result         journaledScore `json:"result"`
	EvidenceLeaves []int64        `json:"evidence_leaves"`
}

// journaledScore is a scorecard.Result without its explanatory texts.
type journaledScore struct {
	Model           string                `json:"model"`
	ModelSHA256     string                `json:"model_sha256"`
	Score           int                   `json:"score"`
	Band            string                `json:"band"`
	PD              float64               `json:"pd"`
	Limit           int64                 `json:"limit"`
	Currency        string                `json:"currency"`
	ExpectedRevenue int64                 `json:"expected_revenue"`
	VerifiedRevenue int64                 `json:"verified_revenue"`
	LTV             float64               `json:"ltv"`
	BandMultiplier  float64               `json:"band_multiplier"`
	Confidence      float64               `json:"confidence"`
	Plots           []scorecard.PlotLimit `json:"plots"`
	LimitNotes      []string              `json:"limit_notes"`
	Factors         []journaledFactor     `json:"factors"`
	Reasons         []journaledReason     `json:"adverse_reasons"`
	Hints           []journaledHint       `json:"hints"`
}

type journaledFactor struct {
	Name   string   `json:"name"`
	Value  *float64 `json:"value"`
	Points float64  `json:"points"`
}

type journaledReason struct {
	Code     string          `json:"code"`
	Effect   float64         `json:"effect_points"`
	Evidence []scorecard.Ref `json:"evidence"`
}

type journaledHint struct {
	Action string `json:"action"`
	PlotID string `json:"plot_id"`
	Limit  int64  `json:"limit"`
	Score  int    `json:"score"`
}

func journaled(r scorecard.Result) journaledScore {
	j := journaledScore{Model: r.Model, ModelSHA256: r.ModelDigest, Score: r.Score, Band: r.Band, PD: r.PD, Limit: r.Limit, Currency: r.Currency,
		ExpectedRevenue: r.ExpectedRevenue, VerifiedRevenue: r.VerifiedRevenue, LTV: r.LTV, BandMultiplier: r.BandMultiplier, Confidence: r.Confidence,
		Plots: r.Plots, LimitNotes: r.LimitNotes, Factors: []journaledFactor{}, Reasons: []journaledReason{}, Hints: []journaledHint{}}
	for _, f := range r.Factors {
		j.Factors = append(j.Factors, journaledFactor{Name: f.Name, Value: f.Value, Points: f.Points})
	}
	for _, a := range r.Reasons {
		j.Reasons = append(j.Reasons, journaledReason{Code: a.Code, Effect: a.Effect, Evidence: a.Evidence})
	}
	for _, h := range r.Hints {
		j.Hints = append(j.Hints, journaledHint{Action: h.Action, PlotID: h.PlotID, Limit: h.Limit, Score: h.Score})
	}
	return j
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
	// credit.score), null until journaled: a score asked for on its own
	// is answered before its entry is appended (moments later).
	LeafIndex *int64 `json:"leaf_index"`
	// ScorePath is where the score is read back with its journal entry
	// and receipt, once journaled.
	ScorePath string `json:"score_path"`
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
	b := &pgx.Batch{}
	out, err := s.queueScores(b, org, ds, p, amount, loanID, purpose)
	if err != nil {
		return nil, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("store %d scores: %w", len(ds), err)
	}
	return out, nil
}

// queueScores scores ds for a product and queues on b the one statement
// that stores the scores with their journal payloads.
func (s *Service) queueScores(b *pgx.Batch, org string, ds []*farmerData, p *Product, amount int64, loanID *string, purpose string) ([]*scoreRow, error) {
	out, err := s.computeScores(org, ds, p, amount, loanID, purpose)
	if err != nil || len(out) == 0 {
		return out, err
	}
	n := len(out)
	ids, farmers, bands, payloads := make([]string, n), make([]string, n), make([]string, n), make([][]byte, n)
	scores := make([]int32, n)
	pds, confs := make([]float64, n), make([]float64, n)
	limits := make([]int64, n)
	for i, r := range out {
		ids[i], farmers[i], bands[i], payloads[i] = r.ID, r.FarmerID, r.Result.Band, r.Payload
		scores[i], pds[i], confs[i], limits[i] = int32(r.Result.Score), r.Result.PD, r.Result.Confidence, r.Result.Limit
	}
	// A farmer being erased is not scored: the erasure erases the scores
	// stored before it and none is stored after it (the fence).
	if err := eraser.QueueFence(b, farmers); err != nil {
		return nil, err
	}
	b.Queue(`
		INSERT INTO lending.scores (id, organization_id, farmer_id, product_id, loan_id, model_version, score, band, pd, recommended_limit,
		                            confidence, payload, computed_at)
		SELECT u.id, $1, u.farmer, $2, $3, $4, u.score, u.band, u.pd, u.lim, u.conf, u.payload, $5
		FROM unnest($6::uuid[], $7::uuid[], $8::int[], $9::text[], $10::float8[], $11::bigint[], $12::float8[], $13::bytea[])
		     AS u(id, farmer, score, band, pd, lim, conf, payload)
		WHERE NOT EXISTS (SELECT 1 FROM lending.erasures e WHERE e.farmer_id = u.farmer)`,
		org, p.ID, loanID, s.model.Version, out[0].At, ids, farmers, scores, bands, pds, limits, confs, payloads).
		Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != int64(n) {
				return errFarmerForgotten
			}
			return nil
		})
	return out, nil
}

// errFarmerForgotten refuses to score a farmer who asked to be forgotten
// (an erasure ran or is running).
var errFarmerForgotten = apperr.Errorf(apperr.NotFound, "the farmer asked to be forgotten")

// copyScores is queueScores for a book's worth of farmers: the scores
// stored by COPY in tx (binary rows, no statement to parse and no arrays
// to unpack).
func (s *Service) copyScores(ctx context.Context, tx pgx.Tx, org string, ds []*farmerData, p *Product, loanID *string, purpose string) ([]*scoreRow, error) {
	farmers := make([]string, len(ds))
	for i, d := range ds {
		farmers[i] = d.FarmerID
	}
	// The fence, as queueScores's: farmers being erased are not scored.
	erased, err := eraser.Fence(ctx, tx, farmers)
	if err != nil {
		return nil, err
	}
	if len(erased) > 0 {
		ds = slices.DeleteFunc(slices.Clone(ds), func(d *farmerData) bool { return erased.Has(d.FarmerID) })
	}
	out, err := s.computeScores(org, ds, p, 0, loanID, purpose)
	if err != nil || len(out) == 0 {
		return out, err
	}
	i := 0
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"lending", "scores"},
		[]string{"id", "organization_id", "farmer_id", "product_id", "loan_id", "model_version", "score", "band", "pd", "recommended_limit", "confidence", "payload", "computed_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(out) {
				return nil, nil
			}
			r := out[i]
			i++
			return []any{r.ID, org, r.FarmerID, p.ID, loanID, s.model.Version, int32(r.Result.Score), r.Result.Band, r.Result.PD, r.Result.Limit,
				r.Result.Confidence, r.Payload, r.At}, nil
		})); err != nil {
		return nil, fmt.Errorf("store %d scores: %w", len(out), err)
	}
	return out, nil
}

// computeScores scores ds for a product, each with the payload the
// journal will commit to.
func (s *Service) computeScores(org string, ds []*farmerData, p *Product, amount int64, loanID *string, purpose string) ([]*scoreRow, error) {
	at := s.now().UTC().Truncate(time.Microsecond)
	req := scorecard.Request{Amount: amount, Product: scorecard.Product{Crops: p.Crops, Currency: p.Currency, LTV: float64(p.LTVBps) / 10000,
		MinAmount: p.MinAmount, MaxAmount: p.MaxAmount}}
	out := make([]*scoreRow, len(ds))
	for i, d := range ds {
		res := s.model.Score(d.evidence(at), req)
		leaves := []int64{}
		for _, r := range res.Evidence {
			if r.LeafIndex != nil {
				leaves = append(leaves, *r.LeafIndex)
			}
		}
		id := uuid.NewString()
		// Deterministic JSON (a struct marshals its fields in order); the
		// journal commits to these exact bytes, which the evidence bundle
		// carries.
		payload, err := json.Marshal(scorePayload{Format: "tani.credit-score/v1", ScoreID: id, OrganizationID: org, FarmerID: d.FarmerID, ProductID: p.ID,
			LoanID: loanID, Purpose: purpose, Amount: amount, ComputedAt: at, Result: journaled(res), EvidenceLeaves: leaves})
		if err != nil {
			return nil, fmt.Errorf("score of farmer %s: %w", d.FarmerID, err)
		}
		out[i] = &scoreRow{ID: id, FarmerID: d.FarmerID, Result: res, Payload: payload, At: at}
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
	if err := recordLeaves(ctx, s.pool, `
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

// journalScoresLater journals committed scores in the background (see
// journalScoresAfter); Stop waits for it.
func (s *Service) journalScoresLater(ctx context.Context, rows ...*scoreRow) {
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		s.journalScoresAfter(context.WithoutCancel(ctx), rows...)
	}()
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
	farmer, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	var req ScoreRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	product, err := s.scoringProduct(ctx, bank.OrganizationID, req.ProductID)
	if err != nil {
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
	// Two round trips: the evidence read behind the consent check, then
	// the score stored with the COMMIT (in the gate's transaction, with
	// its access-log row).
	var data map[string]*farmerData
	var sc *scoreRow
	_, err = s.gate.ReadBatchFor(c, farmer, scoreScopes, "credit score",
		func(b *pgx.Batch) { data = queueFarmers(b, []string{farmer}, defaultSections, plotAreaProvenance) },
		func(_ context.Context, _ consent.Grant, finish *pgx.Batch) error {
			rows, err := s.queueScores(finish, bank.OrganizationID, []*farmerData{data[farmer]}, product, amount, nil, "score")
			if err != nil {
				return err
			}
			sc = rows[0]
			return nil
		})
	if err != nil {
		return err
	}
	// The stored score is durable and is what a dispute proves: the bank
	// is answered now, and the journal entry follows (its leaf and
	// receipt at ScorePath). A decision on a loan never rests on this
	// score: it scores again and waits for that score's entry.
	s.journalScoresLater(ctx, sc)
	return c.JSON(http.StatusOK, ScoreView{ID: sc.ID, FarmerID: farmer, ProductID: product.ID, ComputedAt: sc.At, Result: sc.Result,
		LeafIndex: sc.LeafIndex, ScorePath: scorePath(sc.ID)})
}

// scoringProduct returns org's product id for scoring, from memory after
// its first read: a product's terms never change once created (retiring
// it changes only its status, which a score does not read), so a score
// spends no round trip on them.
func (s *Service) scoringProduct(ctx context.Context, org, id string) (*Product, error) {
	key := org + "/" + id
	if p, ok := s.scoringProducts.Load(key); ok {
		return p.(*Product), nil
	}
	p, err := loadProduct(ctx, s.readPool, org, id)
	if err != nil {
		return nil, err
	}
	s.scoringProducts.Store(key, p)
	return p, nil
}

// scorePath is where a bank reads a score back with its journal entry and
// receipt (GET /scores/{id}).
func scorePath(id string) string { return "/bank/v1/scores/" + id }

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
// take; rescoreWorkers how many chunks are in flight at once (a chunk
// mostly waits on Postgres: commits, the journal's group commit).
const (
	rescoreChunk   = 1000
	rescoreWorkers = 4
)

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
	// Grouped and sorted as uuids (l.farmer_id: a bare farmer_id in ORDER
	// BY would name the text output column), not as text under the
	// database's collation: the same order, half the sort.
	rows, err := s.pool.Query(ctx, `SELECT l.farmer_id::text FROM lending.loans l
		WHERE l.organization_id = $1 AND l.state IN ('disbursed', 'in_arrears', 'restructured') GROUP BY l.farmer_id ORDER BY l.farmer_id`, bank.OrganizationID)
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

// Rescore scores farmers for product on behalf of bank, chunk by chunk
// (rescoreWorkers chunks at a time): per chunk, one consent-gate pass,
// one evidence read and the scores stored by COPY in one transaction, then
// one journal append.
func (s *Service) Rescore(ctx context.Context, bank identity.Principal, product *Product, farmers []string) (*RescoreResult, error) {
	start := time.Now()
	res := &RescoreResult{Farmers: len(farmers), Bands: map[string]int{}}
	type outcome struct {
		scored    []*scoreRow
		denied    int
		journaled bool
		err       error
	}
	chunks := make(chan []string)
	outs := make(chan outcome)
	var wg sync.WaitGroup
	for range rescoreWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chunk := range chunks {
				var o outcome
				o.err = s.gate.ReadEach(ctx, bank, consent.Access{Scopes: scoreScopes, Purpose: "portfolio re-scoring"}, chunk,
					func(ctx context.Context, tx pgx.Tx, allowed map[string]consent.Grant) error {
						o.denied = len(chunk) - len(allowed)
						ids := make([]string, 0, len(allowed))
						for _, f := range chunk {
							if _, ok := allowed[f]; ok {
								ids = append(ids, f)
							}
						}
						if len(ids) == 0 {
							return nil
						}
						// Plans for a few farmers (index probes) for every
						// chunk: planned for the chunk's 1,000 farmers, four
						// of the evidence queries scan their whole table
						// (the planner sees 1,000 of 100,000 farmers), four
						// times slower than the index plan on a
						// 100,000-farmer book; Postgres settles on the
						// generic (index) plan only after a connection's
						// fifth run of a statement.
						if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
							return err
						}
						data, err := loadFarmers(ctx, tx, ids, defaultSections, plotAreaProvenance)
						if err != nil {
							return err
						}
						ds := make([]*farmerData, len(ids))
						for k, f := range ids {
							ds[k] = data[f]
						}
						o.scored, err = s.copyScores(ctx, tx, bank.OrganizationID, ds, product, nil, "rescore")
						// A farmer erased since the consent check is denied too.
						o.denied += len(ids) - len(o.scored)
						return err
					})
				if o.err == nil {
					if err := s.journalScores(ctx, o.scored); err != nil {
						s.logger.WarnContext(ctx, "re-scoring: scores not journaled yet; the servicing loop retries", "err", err)
					} else {
						o.journaled = true
					}
				}
				outs <- o
			}
		}()
	}
	go func() {
		defer close(chunks)
		for i := 0; i < len(farmers); i += rescoreChunk {
			select {
			case chunks <- farmers[i:min(i+rescoreChunk, len(farmers))]:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(outs) }()
	var errs []error
	for o := range outs {
		if o.err != nil {
			errs = append(errs, o.err)
			continue
		}
		res.Denied += o.denied
		res.Scored += len(o.scored)
		for _, sc := range o.scored {
			res.Bands[sc.Result.Band]++
		}
		if o.journaled {
			res.Journaled += len(o.scored)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}
