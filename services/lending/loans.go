package lending

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/validate"
	"github.com/tani-platform/tani/ledger/verify"
)

// loan is a lending.loans row.
type loan struct {
	ID, OrgID, ProductID, FarmerID, Channel string
	ApplicationRecordID, AgentID            *string
	Region, Crop                            string
	Requested                               int64
	Currency, Purpose                       string
	State                                   State
	DecisionReason, DecidedBy, ScoreID      *string
	Principal, Fee, Interest, TotalDue      *int64
	Terms                                   []byte
	TermsSHA256                             *string
	OfferedAt, OfferExpiresAt               *time.Time
	AcceptedRecordID                        *string
	AcceptedAt, DisbursedAt                 *time.Time
	Disbursement                            []byte
	DueOn                                   *time.Time
	Paid                                    int64
	MaxDPD                                  int
	Restructured                            bool
	ClosedAt                                *time.Time
	Revision                                int
	CreatedAt, UpdatedAt                    time.Time
}

const loanColumns = `id::text, organization_id::text, product_id::text, farmer_id::text, channel, application_record_id::text, agent_id::text,
	region, crop, requested_amount, currency, purpose, state, decision_reason, decided_by, score_id::text, principal, fee, interest, total_due,
	terms, terms_sha256, offered_at, offer_expires_at, accepted_record_id::text, accepted_at, disbursed_at, disbursement, due_on, paid, max_dpd,
	restructured, closed_at, revision, created_at, updated_at`

func scanLoan(row pgx.Row) (*loan, error) {
	var l loan
	var state string
	err := row.Scan(&l.ID, &l.OrgID, &l.ProductID, &l.FarmerID, &l.Channel, &l.ApplicationRecordID, &l.AgentID, &l.Region, &l.Crop,
		&l.Requested, &l.Currency, &l.Purpose, &state, &l.DecisionReason, &l.DecidedBy, &l.ScoreID, &l.Principal, &l.Fee, &l.Interest,
		&l.TotalDue, &l.Terms, &l.TermsSHA256, &l.OfferedAt, &l.OfferExpiresAt, &l.AcceptedRecordID, &l.AcceptedAt, &l.DisbursedAt,
		&l.Disbursement, &l.DueOn, &l.Paid, &l.MaxDPD, &l.Restructured, &l.ClosedAt, &l.Revision, &l.CreatedAt, &l.UpdatedAt)
	l.State = State(state)
	return &l, err
}

// lockLoan reads a loan of org for update in tx; another bank's loan is
// not found. org "" skips the organization check (the consumer of agents'
// records, which names the loan by id).
func lockLoan(ctx context.Context, tx pgx.Tx, org, id string) (*loan, error) {
	l, err := scanLoan(tx.QueryRow(ctx, `SELECT `+loanColumns+` FROM lending.loans WHERE id = $1 AND ($2 = '' OR organization_id::text = $2) FOR UPDATE`, id, org))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apperr.Errorf(apperr.NotFound, "no loan %s", id)
	}
	if err != nil {
		return nil, fmt.Errorf("load loan %s: %w", id, err)
	}
	return l, nil
}

// insertLoan stores a new loan in state applied.
func insertLoan(ctx context.Context, tx pgx.Tx, l *loan) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO lending.loans (id, organization_id, product_id, farmer_id, channel, application_record_id, agent_id, region, crop,
		                           requested_amount, currency, purpose, state, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'applied', $13, $13)`,
		l.ID, l.OrgID, l.ProductID, l.FarmerID, l.Channel, l.ApplicationRecordID, l.AgentID, l.Region, l.Crop, l.Requested, l.Currency, l.Purpose, l.CreatedAt)
	return postgres.MapError(err, "", "a loan with this id exists")
}

// saveLoan writes l's mutable columns back.
func saveLoan(ctx context.Context, tx pgx.Tx, l *loan) error {
	_, err := tx.Exec(ctx, `
		UPDATE lending.loans SET state = $2, decision_reason = $3, decided_by = $4, score_id = $5, principal = $6, fee = $7, interest = $8,
		    total_due = $9, terms = $10, terms_sha256 = $11, offered_at = $12, offer_expires_at = $13, accepted_record_id = $14,
		    accepted_at = $15, disbursed_at = $16, disbursement = $17, due_on = $18, paid = $19, max_dpd = $20, restructured = $21,
		    closed_at = $22, revision = $23, crop = $24, region = $25, updated_at = $26
		WHERE id = $1`,
		l.ID, string(l.State), l.DecisionReason, l.DecidedBy, l.ScoreID, l.Principal, l.Fee, l.Interest, l.TotalDue, l.Terms, l.TermsSHA256,
		l.OfferedAt, l.OfferExpiresAt, l.AcceptedRecordID, l.AcceptedAt, l.DisbursedAt, l.Disbursement, l.DueOn, l.Paid, l.MaxDPD,
		l.Restructured, l.ClosedAt, l.Revision, l.Crop, l.Region, l.UpdatedAt)
	if err != nil {
		return fmt.Errorf("save loan %s: %w", l.ID, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// ApplicationRequest is a bank's application for a farmer.
type ApplicationRequest struct {
	// LoanID, when given, makes the application idempotent: the same id
	// again returns the loan.
	LoanID    string `json:"loan_id,omitempty" validate:"omitempty,uuidlower"`
	FarmerID  string `json:"farmer_id" validate:"required,uuidlower"`
	ProductID string `json:"product_id" validate:"required,uuidlower"`
	Amount    Money  `json:"amount" validate:"required"`
	Purpose   string `json:"purpose" validate:"required,min=1,max=200"`
	// Crop is the crop financed; default the farmer's current crop among
	// the product's, else the product's first.
	Crop string `json:"crop,omitempty" validate:"omitempty,crop"`
}

// apply: POST /loans. The application reads the farmer's data (to score
// it) through the consent gate, so it needs a live consent covering the
// score's scopes; the product's policy then decides it at once when it
// can.
func (s *Service) apply(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	var req ApplicationRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if req.LoanID != "" {
		if l, err := s.loadOwn(ctx, bank.OrganizationID, req.LoanID); err == nil {
			if l.FarmerID != req.FarmerID || l.ProductID != req.ProductID || l.Requested != req.Amount.Amount {
				return apperr.Errorf(apperr.Conflict, "loan %s exists with other content", req.LoanID)
			}
			return s.respondLoan(c, http.StatusOK, l)
		} else if !apperr.Is(err, apperr.NotFound) {
			return err
		}
	} else {
		req.LoanID = uuid.NewString()
	}
	// The product first: an unknown or retired product is the caller's
	// mistake whatever the consent.
	var product *Product
	if err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		product, err = loadProduct(ctx, tx, bank.OrganizationID, req.ProductID)
		return err
	}); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return apperr.Fields("invalid application", apperr.FieldError{Field: "product_id", Message: "is not one of your products"})
		}
		return err
	}
	fields := checkAmount(product, req.Amount, "amount")
	if product.Status != "active" {
		fields = append(fields, apperr.FieldError{Field: "product_id", Message: "is retired: it takes no new applications"})
	}
	if req.Crop != "" && !product.finances(req.Crop) {
		fields = append(fields, apperr.FieldError{Field: "crop", Message: fmt.Sprintf("is not financed by this product (%v)", product.Crops)})
	}
	if len(fields) > 0 {
		return apperr.Fields("invalid application", fields...)
	}
	var l *loan
	var evs []loanEvent
	var sc *scoreRow
	err = s.gate.ReadFor(c, req.FarmerID, scoreScopes, "loan application", func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
		l = &loan{ID: req.LoanID, OrgID: bank.OrganizationID, ProductID: product.ID, FarmerID: req.FarmerID, Channel: "bank",
			Crop: req.Crop, Requested: req.Amount.Amount, Currency: req.Amount.Currency, Purpose: req.Purpose, CreatedAt: s.now().UTC()}
		if l.Crop == "" {
			l.Crop = product.Crops[0]
		}
		if err := insertLoan(ctx, tx, l); err != nil {
			return err
		}
		ev, err := s.transition(ctx, tx, l, move{To: Applied, Actor: bank.Credential(), Reason: req.Purpose,
			Details: map[string]any{"channel": "bank", "requested": req.Amount, "crop": l.Crop}})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
		more, score, err := s.autoDecide(ctx, tx, l, product, req.Crop == "")
		if err != nil {
			return err
		}
		evs, sc = append(evs, more...), score
		return saveLoan(ctx, tx, l)
	})
	if err != nil {
		return err
	}
	s.journalScoresAfter(ctx, sc)
	s.journalAfter(ctx, evs...)
	return s.respondLoan(c, http.StatusCreated, l)
}

// autoDecide scores the applied loan l (in the gate's tx) and applies the
// product's policy: an offer at or above auto_approve_min_score (for the
// amount asked, or the limit if lower, never below the product's
// minimum), a decline below auto_decline_below_score, else it waits for a
// credit officer. pickCrop lets the offer pick the financed crop.
func (s *Service) autoDecide(ctx context.Context, tx pgx.Tx, l *loan, p *Product, pickCrop bool) ([]loanEvent, *scoreRow, error) {
	data, err := loadFarmers(ctx, tx, []string{l.FarmerID}, defaultSections, plotAreaProvenance)
	if err != nil {
		return nil, nil, err
	}
	d := data[l.FarmerID]
	l.Region = d.Region
	sc, err := s.newScore(ctx, tx, l.OrgID, d, p, l.Requested, &l.ID, "application")
	if err != nil {
		return nil, nil, err
	}
	l.ScoreID = &sc.ID
	res := sc.Result
	const actor = "policy"
	switch {
	case p.AutoApproveMinScore != nil && res.Score >= *p.AutoApproveMinScore && min(l.Requested, res.Limit) >= p.MinAmount:
		amount := min(l.Requested, res.Limit)
		reason := fmt.Sprintf("score %d (band %s) at or above the policy's %d", res.Score, res.Band, *p.AutoApproveMinScore)
		if amount < l.Requested {
			reason += fmt.Sprintf("; amount lowered to the recommended limit %d", amount)
		}
		evs, err := s.makeOffer(ctx, tx, l, p, d, amount, actor, reason, sc, pickCrop)
		return evs, sc, err
	case p.AutoDeclineBelowScore != nil && res.Score < *p.AutoDeclineBelowScore,
		p.AutoApproveMinScore != nil && res.Score >= *p.AutoApproveMinScore && res.Limit < p.MinAmount:
		reason := fmt.Sprintf("score %d (band %s) below the policy's %d", res.Score, res.Band, deref(p.AutoDeclineBelowScore))
		if p.AutoDeclineBelowScore == nil || res.Score >= *p.AutoDeclineBelowScore {
			reason = fmt.Sprintf("recommended limit %d is below the product's minimum %d", res.Limit, p.MinAmount)
		}
		l.DecisionReason, l.DecidedBy = &reason, ptr(actor)
		ev, err := s.transition(ctx, tx, l, move{To: Declined, Actor: actor, Reason: reason, Details: map[string]any{"score_id": sc.ID, "reasons": res.Reasons}})
		return []loanEvent{ev}, sc, err
	}
	why := fmt.Sprintf("score %d (band %s, recommended limit %d): a credit officer decides", res.Score, res.Band, res.Limit)
	l.DecisionReason = &why
	return nil, sc, nil
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// Terms is an offer exactly as the farmer is asked to accept it. Its
// canonical JSON is stored and hashed (terms_sha256); the farmer's
// signed loan.accepted names that hash.
type Terms struct {
	Format         string    `json:"format"`
	LoanID         string    `json:"loan_id"`
	Lender         string    `json:"lender_organization_id"`
	FarmerID       string    `json:"farmer_id"`
	ProductID      string    `json:"product_id"`
	ProductName    string    `json:"product_name"`
	Crop           string    `json:"crop"`
	Currency       string    `json:"currency"`
	Principal      int64     `json:"principal"`
	Fee            int64     `json:"fee"`
	Interest       int64     `json:"interest"`
	TotalDue       int64     `json:"total_due"`
	FeeBps         int       `json:"fee_bps"`
	InterestBps    int       `json:"interest_bps_per_year"`
	RepaymentStyle string    `json:"repayment_style"`
	OfferedOn      string    `json:"offered_on"`
	DueOn          string    `json:"due_on"`
	TermDays       int       `json:"term_days"`
	Schedule       []instal  `json:"schedule"`
	DueBasis       string    `json:"due_basis"`
	Harvest        *harvestT `json:"harvest"`
	OfferExpiresAt time.Time `json:"offer_expires_at"`
	ScoreID        string    `json:"score_id"`
}

type instal struct {
	Seq    int    `json:"seq"`
	DueOn  string `json:"due_on"`
	Amount int64  `json:"amount"`
}

// harvestT is the crop cycle a bullet loan's due date follows.
type harvestT struct {
	RecordID          string `json:"record_id"`
	LeafIndex         *int64 `json:"leaf_index"`
	PlotID            string `json:"plot_id"`
	Crop              string `json:"crop"`
	ExpectedHarvestOn string `json:"expected_harvest_on"`
	GraceDays         int    `json:"grace_days"`
}

// makeOffer approves l for amount and moves it to offered with its terms:
// the due date follows the financed crop's expected harvest (bullet) or
// the product's tenor (flexible, or no crop cycle on record).
func (s *Service) makeOffer(ctx context.Context, tx pgx.Tx, l *loan, p *Product, d *farmerData, amount int64, actor, reason string, sc *scoreRow, pickCrop bool) ([]loanEvent, error) {
	now := s.now().UTC()
	today := dayOf(now)
	latest := today.AddDate(0, 0, p.TenorDays)
	due, basis := latest, fmt.Sprintf("the product's tenor of %d days", p.TenorDays)
	var harvest *harvestT
	if p.RepaymentStyle == "bullet" {
		// The financed crop's next expected harvest, from a verified
		// planting: the latest such cycle at least 30 days out.
		var best *cycleFact
		for i, cy := range d.Cycles {
			a := d.verified(cy.RecordID)
			if a == nil || !p.finances(cy.Crop) || (!pickCrop && cy.Crop != l.Crop) || cy.HarvestOn.Before(today.AddDate(0, 0, 30)) {
				continue
			}
			if best == nil || cy.HarvestOn.After(best.HarvestOn) {
				best = &d.Cycles[i]
			}
		}
		if best != nil {
			h := dayOf(best.HarvestOn).AddDate(0, 0, p.GraceDays)
			harvest = &harvestT{RecordID: best.RecordID, LeafIndex: d.verified(best.RecordID).LeafIndex, PlotID: best.PlotID, Crop: best.Crop,
				ExpectedHarvestOn: best.HarvestOn.Format(time.DateOnly), GraceDays: p.GraceDays}
			l.Crop = best.Crop
			if h.Before(latest) {
				due, basis = h, fmt.Sprintf("expected harvest of %s plus %d days' grace", best.Crop, p.GraceDays)
			} else {
				basis = fmt.Sprintf("the product's tenor of %d days (the expected harvest plus grace falls later)", p.TenorDays)
			}
		} else {
			basis = fmt.Sprintf("the product's tenor of %d days (no verified planting of a financed crop with a harvest 30 or more days away)", p.TenorDays)
		}
	}
	termDays := int(due.Sub(today).Hours() / 24)
	fee := (amount*int64(p.FeeBps) + 5000) / 10000
	interest := int64(float64(amount)*float64(p.InterestBps)/10000*float64(termDays)/365 + 0.5)
	total := amount + fee + interest
	expires := now.Add(time.Duration(p.OfferValidDays) * 24 * time.Hour).Truncate(time.Second)
	terms := Terms{Format: "tani.loan-terms/v1", LoanID: l.ID, Lender: l.OrgID, FarmerID: l.FarmerID, ProductID: p.ID, ProductName: p.Name,
		Crop: l.Crop, Currency: p.Currency, Principal: amount, Fee: fee, Interest: interest, TotalDue: total, FeeBps: p.FeeBps,
		InterestBps: p.InterestBps, RepaymentStyle: p.RepaymentStyle, OfferedOn: today.Format(time.DateOnly), DueOn: due.Format(time.DateOnly),
		TermDays: termDays, Schedule: []instal{{Seq: 1, DueOn: due.Format(time.DateOnly), Amount: total}}, DueBasis: basis, Harvest: harvest,
		OfferExpiresAt: expires}
	if sc != nil {
		terms.ScoreID = sc.ID
	}
	raw, err := canonical(terms)
	if err != nil {
		return nil, err
	}
	hash := sha256Hex(raw)
	l.Principal, l.Fee, l.Interest, l.TotalDue = &amount, &fee, &interest, &total
	l.Terms, l.TermsSHA256, l.OfferedAt, l.OfferExpiresAt, l.DueOn = raw, &hash, &now, &expires, &due
	l.DecisionReason, l.DecidedBy = &reason, &actor
	if _, err := tx.Exec(ctx, `DELETE FROM lending.installments WHERE loan_id = $1`, l.ID); err != nil {
		return nil, fmt.Errorf("schedule of loan %s: %w", l.ID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO lending.installments (loan_id, seq, due_on, amount) VALUES ($1, 1, $2, $3)`, l.ID, due, total); err != nil {
		return nil, fmt.Errorf("schedule of loan %s: %w", l.ID, err)
	}
	details := map[string]any{"terms_sha256": hash, "terms": json.RawMessage(raw)}
	if sc != nil {
		details["score_id"] = sc.ID
		details["score"] = sc.Result.Score
		details["recommended_limit"] = sc.Result.Limit
		details["above_recommended_limit"] = amount > sc.Result.Limit
	}
	ev, err := s.transition(ctx, tx, l, move{To: Offered, Actor: actor, Reason: reason, Details: details})
	if err != nil {
		return nil, err
	}
	return []loanEvent{ev}, nil
}

// DecisionRequest is a credit officer's decision.
type DecisionRequest struct {
	Decision string `json:"decision" validate:"required,oneof=approve decline"`
	Reason   string `json:"reason" validate:"required,min=1,max=500"`
	// Amount approved (default the amount asked); within the product's
	// range. Above the recommended limit is allowed and journaled as such.
	Amount *Money `json:"amount,omitempty"`
}

// decide: POST /loans/{id}/decision.
func (s *Service) decide(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	var req DecisionRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	l, err := s.loadOwn(ctx, bank.OrganizationID, id)
	if err != nil {
		return err
	}
	if req.Decision == "approve" && l.State != Applied {
		return conflictMove(l, Offered)
	}
	actor := bank.Credential()
	var evs []loanEvent
	var sc *scoreRow
	if req.Decision == "decline" {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			l, err := lockLoan(ctx, tx, bank.OrganizationID, id)
			if err != nil {
				return err
			}
			l.DecisionReason, l.DecidedBy = &req.Reason, &actor
			ev, err := s.transition(ctx, tx, l, move{To: Declined, Actor: actor, Reason: req.Reason})
			if err != nil {
				return err
			}
			evs = append(evs, ev)
			return saveLoan(ctx, tx, l)
		})
	} else {
		// Approval builds the offer from the farmer's data (the crop cycle
		// the due date follows) and scores it again for the record.
		err = s.gate.ReadFor(c, l.FarmerID, scoreScopes, "loan decision", func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
			l, err := lockLoan(ctx, tx, bank.OrganizationID, id)
			if err != nil {
				return err
			}
			if l.State != Applied {
				return conflictMove(l, Offered)
			}
			p, err := loadProduct(ctx, tx, bank.OrganizationID, l.ProductID)
			if err != nil {
				return err
			}
			amount := Money{Amount: l.Requested, Currency: l.Currency}
			if req.Amount != nil {
				if fields := checkAmount(p, *req.Amount, "amount"); len(fields) > 0 {
					return apperr.Fields("invalid decision", fields...)
				}
				amount = *req.Amount
			}
			data, err := loadFarmers(ctx, tx, []string{l.FarmerID}, defaultSections, plotAreaProvenance)
			if err != nil {
				return err
			}
			l.Region = data[l.FarmerID].Region
			if sc, err = s.newScore(ctx, tx, bank.OrganizationID, data[l.FarmerID], p, amount.Amount, &l.ID, "decision"); err != nil {
				return err
			}
			l.ScoreID = &sc.ID
			if evs, err = s.makeOffer(ctx, tx, l, p, data[l.FarmerID], amount.Amount, actor, req.Reason, sc, false); err != nil {
				return err
			}
			return saveLoan(ctx, tx, l)
		})
	}
	if err != nil {
		return err
	}
	s.journalScoresAfter(ctx, sc)
	s.journalAfter(ctx, evs...)
	l, err = s.loadOwn(ctx, bank.OrganizationID, id)
	if err != nil {
		return err
	}
	return s.respondLoan(c, http.StatusOK, l)
}

// DisbursementRequest pays a loan out.
type DisbursementRequest struct {
	Method string `json:"method" validate:"required,oneof=cash voucher"`
	// Reference is the bank's own reference of a cash disbursement (a
	// transfer or cash receipt number); required for cash.
	Reference string `json:"reference,omitempty" validate:"max=100"`
	// VoucherExpiresOn bounds when a voucher redeems (default the due date).
	VoucherExpiresOn string `json:"voucher_expires_on,omitempty" validate:"omitempty,datetime=2006-01-02"`
}

// disburse: POST /loans/{id}/disbursement: only an accepted loan.
func (s *Service) disburse(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	var req DisbursementRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	if req.Method == "cash" && req.Reference == "" {
		return apperr.Fields("invalid disbursement", apperr.FieldError{Field: "reference", Message: "is required for a cash disbursement"})
	}
	if req.Method == "voucher" && s.vouchers == nil {
		return apperr.Fields("invalid disbursement", apperr.FieldError{Field: "method", Message: "voucher disbursement is not configured in this deployment (no vouchers chaincode client); disburse in cash"})
	}
	ctx := c.Request().Context()
	var ev loanEvent
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		l, err := lockLoan(ctx, tx, bank.OrganizationID, id)
		if err != nil {
			return err
		}
		if !canMove(l.State, Disbursed) || l.State != Accepted {
			return conflictMove(l, Disbursed)
		}
		now := s.now().UTC()
		details := map[string]any{"method": req.Method, "amount": Money{Amount: *l.Principal, Currency: l.Currency}}
		switch req.Method {
		case "cash":
			details["reference"] = req.Reference
		case "voucher":
			p, err := loadProduct(ctx, tx, bank.OrganizationID, l.ProductID)
			if err != nil {
				return err
			}
			expires := *l.DueOn
			if req.VoucherExpiresOn != "" {
				expires, _ = time.Parse(time.DateOnly, req.VoucherExpiresOn)
				if !expires.After(dayOf(now)) {
					return apperr.Fields("invalid disbursement", apperr.FieldError{Field: "voucher_expires_on", Message: "must be after today"})
				}
			}
			v, err := s.issueVoucher(ctx, l, p, expires)
			if err != nil {
				return err
			}
			details["voucher"] = v
		}
		raw, _ := json.Marshal(details)
		l.Disbursement, l.DisbursedAt = raw, &now
		if ev, err = s.transition(ctx, tx, l, move{To: Disbursed, Actor: bank.Credential(), Reason: "disbursed by " + req.Method, Details: details}); err != nil {
			return err
		}
		return saveLoan(ctx, tx, l)
	})
	if err != nil {
		return err
	}
	s.journalAfter(ctx, ev)
	l, err := s.loadOwn(ctx, bank.OrganizationID, id)
	if err != nil {
		return err
	}
	return s.respondLoan(c, http.StatusOK, l)
}

// WriteOffRequest writes a loan off.
type WriteOffRequest struct {
	Reason string `json:"reason" validate:"required,min=1,max=500"`
}

// writeOff: POST /loans/{id}/write-off: a loan out with the farmer that
// the bank no longer expects to recover.
func (s *Service) writeOff(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	var req WriteOffRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var ev loanEvent
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		l, err := lockLoan(ctx, tx, bank.OrganizationID, id)
		if err != nil {
			return err
		}
		if !canMove(l.State, WrittenOff) {
			return conflictMove(l, WrittenOff)
		}
		now := s.now().UTC()
		l.ClosedAt = &now
		if ev, err = s.transition(ctx, tx, l, move{To: WrittenOff, Actor: bank.Credential(), Reason: req.Reason,
			Details: map[string]any{"balance": Money{Amount: *l.TotalDue - l.Paid, Currency: l.Currency}, "days_past_due": s.dpd(l)}}); err != nil {
			return err
		}
		return saveLoan(ctx, tx, l)
	})
	if err != nil {
		return err
	}
	s.journalAfter(ctx, ev)
	l, err := s.loadOwn(ctx, bank.OrganizationID, id)
	if err != nil {
		return err
	}
	return s.respondLoan(c, http.StatusOK, l)
}

// loadOwn reads one of org's loans from the primary (a loan just changed
// must be seen as changed).
func (s *Service) loadOwn(ctx context.Context, org, id string) (*loan, error) {
	l, err := scanLoan(s.pool.QueryRow(ctx, `SELECT `+loanColumns+` FROM lending.loans WHERE id = $1 AND organization_id = $2`, id, org))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apperr.Errorf(apperr.NotFound, "no loan %s", id)
	}
	if err != nil {
		return nil, fmt.Errorf("load loan %s: %w", id, err)
	}
	return l, nil
}

// dpd is l's days past due today: from its due date while a balance is
// outstanding.
func (s *Service) dpd(l *loan) int {
	if l.DueOn == nil || l.TotalDue == nil || l.Paid >= *l.TotalDue || !slices.Contains(servicing, l.State) {
		return 0
	}
	d := int(dayOf(s.now()).Sub(dayOf(*l.DueOn)).Hours() / 24)
	return max(d, 0)
}

// LoanView is a loan as the API shows it.
type LoanView struct {
	ID                  string          `json:"id"`
	ProductID           string          `json:"product_id"`
	FarmerID            string          `json:"farmer_id"`
	Channel             string          `json:"channel"`
	ApplicationRecordID *string         `json:"application_record_id"`
	AgentID             *string         `json:"agent_id"`
	Region              string          `json:"region"`
	Crop                string          `json:"crop"`
	Purpose             string          `json:"purpose"`
	Requested           Money           `json:"requested"`
	State               State           `json:"state"`
	Decision            *decisionView   `json:"decision"`
	Offer               *offerView      `json:"offer"`
	AcceptedRecordID    *string         `json:"accepted_record_id"`
	AcceptedAt          *time.Time      `json:"accepted_at"`
	DisbursedAt         *time.Time      `json:"disbursed_at"`
	Disbursement        json.RawMessage `json:"disbursement"`
	Schedule            []installment   `json:"schedule"`
	Paid                Money           `json:"paid"`
	Balance             *Money          `json:"balance"`
	DaysPastDue         int             `json:"days_past_due"`
	MaxDaysPastDue      int             `json:"max_days_past_due"`
	Restructured        bool            `json:"restructured"`
	ClosedAt            *time.Time      `json:"closed_at"`
	Revision            int             `json:"revision"`
	CreatedAt           time.Time       `json:"created_at"`
	UpdatedAt           time.Time       `json:"updated_at"`
}

type decisionView struct {
	Reason  *string `json:"reason"`
	By      *string `json:"by"`
	ScoreID *string `json:"score_id"`
}

type offerView struct {
	Principal   Money           `json:"principal"`
	Fee         Money           `json:"fee"`
	Interest    Money           `json:"interest"`
	TotalDue    Money           `json:"total_due"`
	DueOn       string          `json:"due_on"`
	OfferedAt   *time.Time      `json:"offered_at"`
	ExpiresAt   *time.Time      `json:"expires_at"`
	TermsSHA256 string          `json:"terms_sha256"`
	Terms       json.RawMessage `json:"terms"`
}

type installment struct {
	Seq    int    `json:"seq"`
	DueOn  string `json:"due_on"`
	Amount Money  `json:"amount"`
	Paid   Money  `json:"paid"`
	Status string `json:"status"` // paid, due, overdue
}

// view lays l out, with its schedule (payments allocated to installments
// in order).
func (s *Service) view(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, l *loan) (*LoanView, error) {
	v := &LoanView{ID: l.ID, ProductID: l.ProductID, FarmerID: l.FarmerID, Channel: l.Channel, ApplicationRecordID: l.ApplicationRecordID,
		AgentID: l.AgentID, Region: l.Region, Crop: l.Crop, Purpose: l.Purpose, Requested: Money{Amount: l.Requested, Currency: l.Currency},
		State: l.State, AcceptedRecordID: l.AcceptedRecordID, AcceptedAt: l.AcceptedAt, DisbursedAt: l.DisbursedAt, Disbursement: l.Disbursement,
		Paid: Money{Amount: l.Paid, Currency: l.Currency}, DaysPastDue: s.dpd(l), MaxDaysPastDue: max(l.MaxDPD, s.dpd(l)), Restructured: l.Restructured,
		ClosedAt: l.ClosedAt, Revision: l.Revision, CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt, Schedule: []installment{}}
	if l.DecisionReason != nil || l.DecidedBy != nil || l.ScoreID != nil {
		v.Decision = &decisionView{Reason: l.DecisionReason, By: l.DecidedBy, ScoreID: l.ScoreID}
	}
	if l.TotalDue != nil {
		m := func(a *int64) Money { return Money{Amount: *a, Currency: l.Currency} }
		v.Offer = &offerView{Principal: m(l.Principal), Fee: m(l.Fee), Interest: m(l.Interest), TotalDue: m(l.TotalDue),
			DueOn: l.DueOn.Format(time.DateOnly), OfferedAt: l.OfferedAt, ExpiresAt: l.OfferExpiresAt, TermsSHA256: *l.TermsSHA256, Terms: l.Terms}
		bal := *l.TotalDue - l.Paid
		v.Balance = &Money{Amount: bal, Currency: l.Currency}
	}
	rows, err := q.Query(ctx, `SELECT seq, due_on, amount FROM lending.installments WHERE loan_id = $1 ORDER BY seq`, l.ID)
	if err != nil {
		return nil, fmt.Errorf("schedule of loan %s: %w", l.ID, err)
	}
	left := l.Paid
	today := dayOf(s.now())
	for rows.Next() {
		var in installment
		var due time.Time
		var amount int64
		if err := rows.Scan(&in.Seq, &due, &amount); err != nil {
			rows.Close()
			return nil, err
		}
		paid := min(left, amount)
		left -= paid
		in.DueOn, in.Amount, in.Paid = due.Format(time.DateOnly), Money{Amount: amount, Currency: l.Currency}, Money{Amount: paid, Currency: l.Currency}
		switch {
		case paid == amount:
			in.Status = "paid"
		case today.After(due):
			in.Status = "overdue"
		default:
			in.Status = "due"
		}
		v.Schedule = append(v.Schedule, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("schedule of loan %s: %w", l.ID, err)
	}
	return v, nil
}

func (s *Service) respondLoan(c echo.Context, status int, l *loan) error {
	v, err := s.view(c.Request().Context(), s.pool, l)
	if err != nil {
		return err
	}
	return c.JSON(status, v)
}

// getLoan: GET /loans/{id}.
func (s *Service) getLoan(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	l, err := s.loadOwn(c.Request().Context(), bank.OrganizationID, id)
	if err != nil {
		return err
	}
	return s.respondLoan(c, http.StatusOK, l)
}

// listLoans: GET /loans?state=&farmer_id=&product_id=&cursor=&limit=,
// newest first, from the read pool (a listing may trail by the replica's
// lag).
func (s *Service) listLoans(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	var fields []apperr.FieldError
	state := c.QueryParam("state")
	if state != "" {
		if _, ok := transitions[State(state)]; !ok && !slices.Contains([]State{Declined, Expired, Repaid, WrittenOff}, State(state)) {
			fields = append(fields, apperr.FieldError{Field: "state", Message: "is not a loan state"})
		}
	}
	for _, q := range []string{"farmer_id", "product_id"} {
		if v := c.QueryParam(q); v != "" && !isUUID(v) {
			fields = append(fields, apperr.FieldError{Field: q, Message: "must be a lowercase UUID"})
		}
	}
	if len(fields) > 0 {
		return apperr.Fields("bad query", fields...)
	}
	cur, err := parseCursor(c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	limit, err := limitParam(c, 100, 1000)
	if err != nil {
		return err
	}
	at, after := time.Time{}, ""
	if cur != nil {
		at, after = cur.At, cur.ID
	}
	ctx := c.Request().Context()
	rows, err := s.readPool.Query(ctx, `SELECT `+loanColumns+` FROM lending.loans
		WHERE organization_id = $1 AND ($2 = '' OR state = $2) AND ($3 = '' OR farmer_id::text = $3) AND ($4 = '' OR product_id::text = $4)
		  AND ($5 = '' OR (created_at, id) < ($6, $5::uuid))
		ORDER BY created_at DESC, id DESC LIMIT $7`,
		bank.OrganizationID, state, c.QueryParam("farmer_id"), c.QueryParam("product_id"), after, at, limit+1)
	if err != nil {
		return fmt.Errorf("list loans: %w", err)
	}
	loans, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*loan, error) { return scanLoan(r) })
	if err != nil {
		return fmt.Errorf("list loans: %w", err)
	}
	out := struct {
		Loans      []*LoanView `json:"loans"`
		NextCursor *string     `json:"next_cursor"`
	}{Loans: []*LoanView{}}
	if len(loans) > limit {
		loans = loans[:limit]
		last := loans[limit-1]
		next := cursor{At: last.CreatedAt, ID: last.ID}.String()
		out.NextCursor = &next
	}
	for _, l := range loans {
		v, err := s.view(ctx, s.readPool, l)
		if err != nil {
			return err
		}
		out.Loans = append(out.Loans, v)
	}
	return c.JSON(http.StatusOK, out)
}

func isUUID(s string) bool { return validate.LowerUUID(s) }

// Agreement is what a bank shows to prove the terms a farmer accepted:
// the terms, the farmer's signed acceptance, and both journal receipts.
type Agreement struct {
	LoanID      string          `json:"loan_id"`
	Terms       json.RawMessage `json:"terms"`
	TermsSHA256 string          `json:"terms_sha256"`
	Acceptance  struct {
		RecordID  string          `json:"record_id"`
		LeafIndex *int64          `json:"leaf_index"`
		Receipt   *verify.Receipt `json:"receipt"`
	} `json:"acceptance"`
	Entry struct {
		Revision  int             `json:"revision"`
		LeafIndex *int64          `json:"leaf_index"`
		Payload   json.RawMessage `json:"payload"`
		Receipt   *verify.Receipt `json:"receipt"`
	} `json:"entry"`
}

// agreement: GET /loans/{id}/agreement.
func (s *Service) agreement(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	l, err := s.loadOwn(ctx, bank.OrganizationID, id)
	if err != nil {
		return err
	}
	if l.AcceptedRecordID == nil {
		return apperr.Errorf(apperr.Conflict, "loan %s is %s: the farmer has not accepted an offer", id, l.State)
	}
	var a Agreement
	a.LoanID, a.Terms, a.TermsSHA256 = l.ID, l.Terms, *l.TermsSHA256
	a.Acceptance.RecordID = *l.AcceptedRecordID
	err = s.pool.QueryRow(ctx, `SELECT revision, leaf_index, payload FROM lending.loan_events WHERE loan_id = $1 AND kind = 'loan.agreement'`, id).
		Scan(&a.Entry.Revision, &a.Entry.LeafIndex, &a.Entry.Payload)
	if err != nil {
		return fmt.Errorf("agreement of loan %s: %w", id, err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT leaf_index FROM attest.evidence WHERE record_id = $1`, a.Acceptance.RecordID).Scan(&a.Acceptance.LeafIndex); err != nil {
		return fmt.Errorf("acceptance record of loan %s: %w", id, err)
	}
	if a.Entry.LeafIndex == nil {
		// Committed but not journaled yet: journal it now rather than make
		// the bank wait for the sweeper.
		if err := s.journalPending(ctx); err != nil {
			return apperr.Wrap(apperr.Unavailable, err, "the agreement is not journaled yet; retry shortly")
		}
		if err := s.pool.QueryRow(ctx, `SELECT leaf_index FROM lending.loan_events WHERE loan_id = $1 AND kind = 'loan.agreement'`, id).Scan(&a.Entry.LeafIndex); err != nil || a.Entry.LeafIndex == nil {
			return apperr.Errorf(apperr.Unavailable, "the agreement is not journaled yet; retry shortly")
		}
	}
	indexes := []int64{*a.Entry.LeafIndex}
	if a.Acceptance.LeafIndex != nil {
		indexes = append(indexes, *a.Acceptance.LeafIndex)
	}
	_, receipts, err := s.journal.Receipts(ctx, indexes)
	if err != nil {
		return err
	}
	a.Entry.Receipt = receipts[0]
	if len(receipts) > 1 {
		a.Acceptance.Receipt = receipts[1]
	}
	return c.JSON(http.StatusOK, a)
}

// loanEvents: GET /loans/{id}/events: the loan's journaled history.
func (s *Service) loanEvents(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if _, err := s.loadOwn(ctx, bank.OrganizationID, id); err != nil {
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT revision, kind, from_state, to_state, actor, reason, at, leaf_index FROM lending.loan_events WHERE loan_id = $1 ORDER BY revision`, id)
	if err != nil {
		return fmt.Errorf("events of loan %s: %w", id, err)
	}
	type event struct {
		Revision  int       `json:"revision"`
		Kind      string    `json:"kind"`
		From      *string   `json:"from"`
		To        string    `json:"to"`
		Actor     string    `json:"actor"`
		Reason    string    `json:"reason"`
		At        time.Time `json:"at"`
		LeafIndex *int64    `json:"leaf_index"`
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (event, error) {
		var e event
		return e, r.Scan(&e.Revision, &e.Kind, &e.From, &e.To, &e.Actor, &e.Reason, &e.At, &e.LeafIndex)
	})
	if err != nil {
		return fmt.Errorf("events of loan %s: %w", id, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"events": evs})
}
