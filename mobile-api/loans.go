package mobileapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

// FarmerLoan is one of a farmer's loans as the agent's phone shows it: the
// offer to read to the farmer (and to accept with a code), or the balance
// to collect. Read from lending's public view lending.farmer_loans.
type FarmerLoan struct {
	LoanID         string     `json:"loan_id"`
	Lender         string     `json:"lender"`
	State          string     `json:"state"`
	Currency       string     `json:"currency"`
	Requested      int64      `json:"requested"`
	Principal      *int64     `json:"principal"`
	Fee            *int64     `json:"fee"`
	Interest       *int64     `json:"interest"`
	TotalDue       *int64     `json:"total_due"`
	Balance        int64      `json:"balance"`
	DueOn          *string    `json:"due_on"`
	TermsSHA256    *string    `json:"terms_sha256"`
	OfferExpiresAt *time.Time `json:"offer_expires_at"`
	// Refusals are the agent's loan records about this loan that lending
	// could not apply (an offer expired before the acceptance arrived…).
	Refusals []LoanRefusal `json:"refusals"`
}

// LoanRefusal is a loan record lending refused, with why.
type LoanRefusal struct {
	RecordID string    `json:"record_id"`
	Type     string    `json:"type"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

const farmerLoanColumns = `l.loan_id::text, o.name, l.state, l.currency, l.requested_amount, l.principal, l.fee, l.interest, l.total_due, l.balance,
	to_char(l.due_on, 'YYYY-MM-DD'), l.terms_sha256, l.offer_expires_at`

func scanFarmerLoan(r pgx.Row) (FarmerLoan, error) {
	var l FarmerLoan
	err := r.Scan(&l.LoanID, &l.Lender, &l.State, &l.Currency, &l.Requested, &l.Principal, &l.Fee, &l.Interest, &l.TotalDue, &l.Balance,
		&l.DueOn, &l.TermsSHA256, &l.OfferExpiresAt)
	l.Refusals = []LoanRefusal{}
	return l, err
}

// farmerLoans: GET /farmers/{id}/loans: an assigned farmer's loans.
func (s *Service) farmerLoans(c echo.Context) error {
	farmer := c.Param("id")
	if !validate.LowerUUID(farmer) {
		return apperr.Fields("bad path", apperr.FieldError{Field: "id", Message: "must be a lowercase UUID"})
	}
	ctx := c.Request().Context()
	if ok, err := s.assigned(ctx, auth.ClaimsOf(c).Subject, farmer); err != nil {
		return err
	} else if !ok {
		return apperr.Errorf(apperr.Forbidden, "you are not assigned to this farmer")
	}
	rows, err := s.pool.Query(ctx, `SELECT `+farmerLoanColumns+` FROM lending.farmer_loans l JOIN identity.organizations o ON o.id = l.organization_id
		WHERE l.farmer_id = $1 ORDER BY l.updated_at DESC`, farmer)
	if err != nil {
		return fmt.Errorf("loans of farmer %s: %w", farmer, err)
	}
	loans, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FarmerLoan, error) { return scanFarmerLoan(r) })
	if err != nil {
		return fmt.Errorf("loans of farmer %s: %w", farmer, err)
	}
	rows, err = s.pool.Query(ctx, `SELECT loan_id::text, record_id::text, type, reason, at FROM lending.loan_record_refusals WHERE farmer_id = $1 ORDER BY at`, farmer)
	if err != nil {
		return fmt.Errorf("refused loan records of farmer %s: %w", farmer, err)
	}
	for rows.Next() {
		var loan string
		var r LoanRefusal
		if err := rows.Scan(&loan, &r.RecordID, &r.Type, &r.Reason, &r.At); err != nil {
			rows.Close()
			return err
		}
		for i := range loans {
			if loans[i].LoanID == loan {
				loans[i].Refusals = append(loans[i].Refusals, r)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if loans == nil {
		loans = []FarmerLoan{}
	}
	return c.JSON(http.StatusOK, map[string]any{"loans": loans})
}

// createLoanOTP sends the farmer a code that accepts one loan offer, with
// the offer's terms in the message: the farmer agrees to what the SMS
// says, and the signed loan.accepted record names the terms' hash.
func (s *Service) createLoanOTP(c echo.Context, farmer, loanID string) error {
	ctx := c.Request().Context()
	agent := auth.ClaimsOf(c).Subject
	if ok, err := s.assigned(ctx, agent, farmer); err != nil {
		return err
	} else if !ok {
		return apperr.Errorf(apperr.Forbidden, "you are not assigned to this farmer")
	}
	l, err := scanFarmerLoan(s.pool.QueryRow(ctx, `SELECT `+farmerLoanColumns+` FROM lending.farmer_loans l JOIN identity.organizations o ON o.id = l.organization_id
		WHERE l.loan_id = $1 AND l.farmer_id = $2`, loanID, farmer))
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.Fields("no such offer", apperr.FieldError{Field: "loan_id", Message: "is not a loan of this farmer"})
	}
	if err != nil {
		return fmt.Errorf("offer %s: %w", loanID, err)
	}
	if l.State != "offered" || l.OfferExpiresAt == nil || !l.OfferExpiresAt.After(time.Now()) {
		return apperr.Errorf(apperr.Conflict, "loan %s is %s: there is no open offer to accept", loanID, l.State)
	}
	var sealed []byte
	err = s.pool.QueryRow(ctx, `SELECT phone_enc FROM ingest.farmer_contacts WHERE farmer_id = $1`, farmer).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.Errorf(apperr.NotFound, "this farmer's registration has not been ingested yet")
	}
	if err != nil {
		return err
	}
	phone, err := s.pii.Decrypt(sealed)
	if err != nil {
		return err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return err
	}
	code := fmt.Sprintf("%06d", n.Int64())
	id := uuid.NewString()
	// The code lives as long as the offer: the acceptance may sync later.
	expires := *l.OfferExpiresAt
	if _, err := s.pool.Exec(ctx, `INSERT INTO mobile.otp_challenges (id, farmer_id, agent_id, code_hash, expires_at, loan_id, terms_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, farmer, agent, auth.HashToken(id+":"+code), expires, loanID, *l.TermsSHA256); err != nil {
		return err
	}
	text := fmt.Sprintf("Tani: %s offers you a loan of %s %s. You repay %s %s by %s. Your code to accept is %s. Tell it to the agent only if you accept.",
		l.Lender, minorText(*l.Principal), l.Currency, minorText(*l.TotalDue), l.Currency, *l.DueOn, code)
	if err := s.sms.Send(ctx, phone, text); err != nil {
		return apperr.Wrap(apperr.Unavailable, err, "the SMS could not be sent; retry later")
	}
	return c.JSON(http.StatusCreated, map[string]any{"challenge_id": id, "expires_at": expires, "offer": l})
}

// minorText writes minor units as major units with two decimals
// (1234567 -> "12345.67").
func minorText(v int64) string { return fmt.Sprintf("%d.%02d", v/100, v%100) }

// authorizeLoan checks a loan record against lending's public views before
// it is acknowledged, so that an agent learns at once, with a field
// error, what lending would refuse: an unknown or retired product, an
// amount outside its range, a loan id already used; an acceptance without
// the code sent with this loan's current offer; a collection on a loan
// that is not out, in another currency or above the balance. Lending
// checks again when the attested record arrives (the phone may sync days
// later).
func (s *Service) authorizeLoan(ctx context.Context, view *agentView, env record.Envelope, payload record.Payload) ([]apperr.FieldError, error) {
	var out []apperr.FieldError
	add := func(field, format string, args ...any) {
		out = append(out, apperr.FieldError{Field: "payload." + field, Message: fmt.Sprintf(format, args...)})
	}
	switch p := payload.(type) {
	case *record.LoanApplied:
		var currency, status string
		var lo, hi int64
		err := s.pool.QueryRow(ctx, `SELECT currency, min_amount, max_amount, status FROM lending.product_catalogue WHERE id = $1`, p.ProductID).Scan(&currency, &lo, &hi, &status)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			add("product_id", "is not a loan product")
			return out, nil
		case err != nil:
			return nil, fmt.Errorf("product %s: %w", p.ProductID, err)
		}
		if status != "active" {
			add("product_id", "is retired: it takes no new applications")
		}
		if p.Amount.Currency != currency {
			add("amount.currency", "must be %s, the product's currency", currency)
		}
		if p.Amount.Amount < lo || p.Amount.Amount > hi {
			add("amount.amount", "must be within the product's range, %d to %d", lo, hi)
		}
		var used bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM lending.farmer_loans WHERE loan_id = $1)`, p.LoanID).Scan(&used); err != nil {
			return nil, fmt.Errorf("loan %s: %w", p.LoanID, err)
		}
		if used {
			add("loan_id", "is already used")
		}
	case *record.LoanAccepted:
		ok, err := s.checkLoanOTP(ctx, env.ID, p)
		if err != nil {
			return nil, err
		}
		if !ok || view.otps[p.OTPChallengeID] {
			add("otp_code", "does not match an unexpired, unused code sent to this farmer for this offer")
			return out, nil
		}
		view.otps[p.OTPChallengeID] = true
		var state string
		var terms *string
		var expires *time.Time
		err = s.pool.QueryRow(ctx, `SELECT state, terms_sha256, offer_expires_at FROM lending.farmer_loans WHERE loan_id = $1 AND farmer_id = $2`, p.LoanID, p.FarmerID).
			Scan(&state, &terms, &expires)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			add("loan_id", "is not a loan of this farmer")
		case err != nil:
			return nil, fmt.Errorf("loan %s: %w", p.LoanID, err)
		case state != "offered":
			add("loan_id", "is %s: there is no open offer to accept", state)
		case terms == nil || *terms != p.TermsSHA256:
			add("terms_sha256", "is not the hash of the loan's current offer")
		}
	case *record.RepaymentCollected:
		var state, currency string
		var balance int64
		err := s.pool.QueryRow(ctx, `SELECT state, currency, balance FROM lending.farmer_loans WHERE loan_id = $1 AND farmer_id = $2`, p.LoanID, p.FarmerID).
			Scan(&state, &currency, &balance)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			add("loan_id", "is not a loan of this farmer")
			return out, nil
		case err != nil:
			return nil, fmt.Errorf("loan %s: %w", p.LoanID, err)
		}
		if !slices.Contains([]string{"disbursed", "in_arrears", "restructured"}, state) {
			add("loan_id", "is %s: only a disbursed loan takes repayments", state)
		}
		if p.Amount.Currency != currency {
			add("amount.currency", "must be %s, the loan's currency", currency)
		}
		if p.Amount.Amount > balance {
			add("amount.amount", "exceeds the outstanding balance of %d", balance)
		}
	}
	return out, nil
}

// checkLoanOTP verifies an acceptance's one-time code: a code sent to this
// farmer for this loan's offer with these terms, unexpired, unused (or
// used by this same record: a retried upload).
func (s *Service) checkLoanOTP(ctx context.Context, recordID string, p *record.LoanAccepted) (bool, error) {
	var want []byte
	var expires time.Time
	var usedBy, loan, terms *string
	err := s.pool.QueryRow(ctx, `SELECT code_hash, expires_at, used_by::text, loan_id::text, terms_sha256 FROM mobile.otp_challenges WHERE id = $1 AND farmer_id = $2`,
		p.OTPChallengeID, p.FarmerID).Scan(&want, &expires, &usedBy, &loan, &terms)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ok := subtle.ConstantTimeCompare(want, auth.HashToken(p.OTPChallengeID+":"+p.OTPCode)) == 1
	bound := loan != nil && *loan == p.LoanID && terms != nil && *terms == p.TermsSHA256
	return ok && bound && (usedBy == nil || *usedBy == recordID) && time.Now().Before(expires), nil
}
