package lending

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
)

// RepaymentRequest is money received towards a loan.
type RepaymentRequest struct {
	// PayerReference identifies the payment at the payer's end (a bank
	// transfer reference, a receipt number): repayments are idempotent by
	// it within a loan.
	PayerReference string `json:"payer_reference" validate:"required,min=1,max=64,printascii"`
	Amount         Money  `json:"amount" validate:"required"`
	PaidOn         string `json:"paid_on" validate:"required,datetime=2006-01-02"`
}

// BatchRepayment is one repayment of a batch.
type BatchRepayment struct {
	LoanID string `json:"loan_id" validate:"required,uuidlower"`
	RepaymentRequest
}

// BatchRepaymentRequest is a bank's file of repayments.
type BatchRepaymentRequest struct {
	Repayments []BatchRepayment `json:"repayments" validate:"required,min=1,max=1000,dive"`
}

// MaxRepaymentBatch is the most repayments one request carries.
const MaxRepaymentBatch = 1000

// Repayment is a stored repayment.
type Repayment struct {
	ID             string    `json:"id"`
	LoanID         string    `json:"loan_id"`
	PayerReference string    `json:"payer_reference"`
	Amount         Money     `json:"amount"`
	PaidOn         string    `json:"paid_on"`
	Channel        string    `json:"channel"`
	RecordID       *string   `json:"record_id"`
	ReceivedAt     time.Time `json:"received_at"`
}

// RepaymentResult is what became of one repayment of a request.
type RepaymentResult struct {
	Index int `json:"index"`
	// Status is applied (stored now), duplicate (stored before with the
	// same content: nothing changed) or rejected (see errors).
	Status    string              `json:"status"`
	Errors    []apperr.FieldError `json:"errors,omitempty"`
	Repayment *Repayment          `json:"repayment,omitempty"`
	LoanState State               `json:"loan_state,omitempty"`
	Balance   *Money              `json:"balance,omitempty"`
}

// repaymentIn is a repayment from any channel.
type repaymentIn struct {
	LoanID, Reference string
	Amount            Money
	PaidOn            time.Time
	Channel           string
	RecordID          *string
	// Field prefixes errors ("repayments[3]." in a batch).
	Field string
}

// applyRepayments applies repayments in tx with a fixed number of
// statements whatever their number: the loans locked at once, known
// references read at once, balances kept in memory in request order, new
// repayments inserted and loans updated at once; a loan fully repaid
// moves to repaid (a journaled state change). org "" accepts any bank's
// loan (agents' collections name the loan; the farmer check is theirs).
// Results come in input order; a rejection stores nothing of that item.
func (s *Service) applyRepayments(ctx context.Context, tx pgx.Tx, org, actor string, ins []repaymentIn) ([]RepaymentResult, []loanEvent, error) {
	ids := make([]string, 0, len(ins))
	for _, in := range ins {
		if !slices.Contains(ids, in.LoanID) {
			ids = append(ids, in.LoanID)
		}
	}
	slices.Sort(ids) // a fixed lock order: concurrent batches never deadlock
	refs := make([]string, len(ins))
	loanIDs := make([]string, len(ins))
	for i, in := range ins {
		refs[i], loanIDs[i] = in.Reference, in.LoanID
	}
	// One round trip: the loans locked, then (in that order, so that a
	// concurrent request for the same loans has committed) the references
	// already used.
	loans := map[string]*loan{}
	known := map[[2]string]*Repayment{}
	b := &pgx.Batch{}
	b.Queue(`SELECT `+loanColumns+` FROM lending.loans WHERE id = ANY($1::uuid[]) AND ($2 = '' OR organization_id::text = $2) ORDER BY id FOR UPDATE`, ids, org).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				l, err := scanLoan(rows)
				if err != nil {
					return fmt.Errorf("lock %d loans: %w", len(ids), err)
				}
				loans[l.ID] = l
			}
			return rows.Err()
		})
	b.Queue(`
		SELECT r.id::text, r.loan_id::text, r.payer_reference, r.amount, r.currency, r.paid_on, r.channel, r.record_id::text, r.received_at
		FROM lending.repayments r JOIN unnest($1::uuid[], $2::text[]) AS u(loan, ref) ON r.loan_id = u.loan AND r.payer_reference = u.ref`, loanIDs, refs).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var r Repayment
				var paid time.Time
				if err := rows.Scan(&r.ID, &r.LoanID, &r.PayerReference, &r.Amount.Amount, &r.Amount.Currency, &paid, &r.Channel, &r.RecordID, &r.ReceivedAt); err != nil {
					return fmt.Errorf("known repayments: %w", err)
				}
				r.PaidOn = paid.Format(time.DateOnly)
				known[[2]string{r.LoanID, r.PayerReference}] = &r
			}
			return rows.Err()
		})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("lock %d loans and read their references: %w", len(ids), err)
	}

	now := s.now().UTC().Truncate(time.Microsecond)
	today := dayOf(now)
	results := make([]RepaymentResult, len(ins))
	var newIDs, newLoans, newRefs, newCurrencies, newChannels []string
	var newAmounts []int64
	var newDates []time.Time
	var newRecords []*string
	touched := map[string]bool{}
	for i, in := range ins {
		res := &results[i]
		res.Index = i
		reject := func(field, format string, args ...any) {
			res.Status = "rejected"
			res.Errors = append(res.Errors, apperr.FieldError{Field: in.Field + field, Message: fmt.Sprintf(format, args...)})
		}
		l := loans[in.LoanID]
		if l == nil {
			reject("loan_id", "is not a loan of yours")
			continue
		}
		key := [2]string{in.LoanID, in.Reference}
		if r, ok := known[key]; ok {
			if r.Amount != in.Amount || r.PaidOn != in.PaidOn.Format(time.DateOnly) {
				reject("payer_reference", "was already used for this loan with another amount or date (repayment %s); the original is kept", r.ID)
				continue
			}
			res.Status, res.Repayment = "duplicate", r
			res.LoanState, res.Balance = l.State, &Money{Amount: *l.TotalDue - l.Paid, Currency: l.Currency}
			continue
		}
		switch {
		case l.State == Repaid:
			reject("loan_id", "loan %s is repaid: it takes no more repayments", l.ID)
			continue
		case !slices.Contains(servicing, l.State):
			reject("loan_id", "loan %s is %s: only a disbursed loan takes repayments", l.ID, l.State)
			continue
		}
		if in.Amount.Currency != l.Currency {
			reject("amount.currency", "must be %s, the loan's currency", l.Currency)
		}
		if bal := *l.TotalDue - l.Paid; in.Amount.Amount > bal {
			reject("amount.amount", "exceeds the outstanding balance of %d", bal)
		}
		if in.PaidOn.After(today.AddDate(0, 0, 1)) {
			reject("paid_on", "is in the future")
		} else if l.DisbursedAt != nil && in.PaidOn.Before(dayOf(*l.DisbursedAt)) {
			reject("paid_on", "is before the loan was disbursed (%s)", l.DisbursedAt.Format(time.DateOnly))
		}
		if res.Status == "rejected" {
			continue
		}
		r := &Repayment{ID: uuid.NewString(), LoanID: l.ID, PayerReference: in.Reference, Amount: in.Amount, PaidOn: in.PaidOn.Format(time.DateOnly),
			Channel: in.Channel, RecordID: in.RecordID, ReceivedAt: now}
		known[key] = r
		l.Paid += in.Amount.Amount
		touched[l.ID] = true
		res.Status, res.Repayment = "applied", r
		newIDs, newLoans, newRefs = append(newIDs, r.ID), append(newLoans, l.ID), append(newRefs, r.PayerReference)
		newAmounts, newCurrencies, newDates = append(newAmounts, in.Amount.Amount), append(newCurrencies, in.Amount.Currency), append(newDates, in.PaidOn)
		newChannels, newRecords = append(newChannels, in.Channel), append(newRecords, in.RecordID)
	}
	if len(newIDs) == 0 {
		return fill(results, loans), nil, nil
	}
	newOrgs := make([]string, len(newLoans))
	for i, id := range newLoans {
		newOrgs[i] = loans[id].OrgID
	}
	var paidIDs, repaidIDs []string
	var paidAmounts []int64
	for id := range touched {
		if l := loans[id]; l.Paid == *l.TotalDue {
			repaidIDs = append(repaidIDs, id)
		} else {
			paidIDs, paidAmounts = append(paidIDs, id), append(paidAmounts, l.Paid)
		}
	}
	slices.Sort(repaidIDs)
	// One round trip for every write of the request but a loan's repayment
	// in full: the repayments, their events, the balances.
	b = &pgx.Batch{}
	b.Queue(`
		INSERT INTO lending.repayments (id, loan_id, organization_id, payer_reference, amount, currency, paid_on, channel, record_id, received_at)
		SELECT u.id, u.loan, u.org, u.ref, u.amount, u.currency, u.paid, u.channel, u.record, $10
		FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[], $6::text[], $7::date[], $8::text[], $9::uuid[])
		     AS u(id, loan, org, ref, amount, currency, paid, channel, record)`,
		newIDs, newLoans, newOrgs, newRefs, newAmounts, newCurrencies, newDates, newChannels, newRecords, now)
	// Told in order: the repayments, then a loan repaid by them.
	if err := queueRepaymentEvents(b, fill(results, loans), loans, now); err != nil {
		return nil, nil, err
	}
	if len(paidIDs) > 0 {
		b.Queue(`UPDATE lending.loans l SET paid = u.paid, updated_at = $3 FROM unnest($1::uuid[], $2::bigint[]) AS u(id, paid) WHERE l.id = u.id`,
			paidIDs, paidAmounts, now)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("store %d repayments: %w", len(newIDs), err)
	}
	var evs []loanEvent
	for _, id := range repaidIDs {
		l := loans[id]
		l.ClosedAt = &now
		ev, err := s.transition(ctx, tx, l, move{To: Repaid, Actor: actor, Reason: "repaid in full",
			Details: map[string]any{"paid": Money{Amount: l.Paid, Currency: l.Currency}, "max_days_past_due": max(l.MaxDPD, s.dpd(l))}})
		if err != nil {
			return nil, nil, err
		}
		evs = append(evs, ev)
		if err := saveLoan(ctx, tx, l); err != nil {
			return nil, nil, err
		}
	}
	return fill(results, loans), evs, nil
}

// fill adds each applied or duplicate result's loan state and balance.
func fill(results []RepaymentResult, loans map[string]*loan) []RepaymentResult {
	for i := range results {
		if r := results[i].Repayment; r != nil {
			l := loans[r.LoanID]
			results[i].LoanState, results[i].Balance = l.State, &Money{Amount: *l.TotalDue - l.Paid, Currency: l.Currency}
		}
	}
	return results
}

// repayOne: POST /loans/{id}/repayments: 201 applied, 200 duplicate.
func (s *Service) repayOne(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	var req RepaymentRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	paid, _ := time.Parse(time.DateOnly, req.PaidOn)
	ctx := c.Request().Context()
	var res []RepaymentResult
	var evs []loanEvent
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		res, evs, err = s.applyRepayments(ctx, tx, bank.OrganizationID, bank.Credential(),
			[]repaymentIn{{LoanID: id, Reference: req.PayerReference, Amount: req.Amount, PaidOn: paid, Channel: "bank"}})
		return err
	})
	if err != nil {
		return err
	}
	s.journalAfter(ctx, evs...)
	r := res[0]
	switch r.Status {
	case "applied":
		return c.JSON(http.StatusCreated, r)
	case "duplicate":
		return c.JSON(http.StatusOK, r)
	}
	// One rejection: answer with the class of the first problem.
	f := r.Errors[0]
	switch {
	case f.Field == "loan_id" && len(r.Errors) == 1 && f.Message == "is not a loan of yours":
		return apperr.Errorf(apperr.NotFound, "no loan %s", id)
	case f.Field == "loan_id" || f.Field == "payer_reference":
		return apperr.Errorf(apperr.Conflict, "%s", f.Message)
	}
	return apperr.Fields("repayment refused", r.Errors...)
}

// repayBatch: POST /repayments: up to MaxRepaymentBatch repayments of any
// of the bank's loans in one transaction, each answered applied, duplicate
// or rejected; 400 when none is applied or a duplicate.
func (s *Service) repayBatch(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	var req BatchRepaymentRequest
	if err := httpserver.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.validator.Validate(&req); err != nil {
		return err
	}
	ins := make([]repaymentIn, len(req.Repayments))
	for i, r := range req.Repayments {
		paid, _ := time.Parse(time.DateOnly, r.PaidOn)
		ins[i] = repaymentIn{LoanID: r.LoanID, Reference: r.PayerReference, Amount: r.Amount, PaidOn: paid, Channel: "bank", Field: fmt.Sprintf("repayments[%d].", i)}
	}
	ctx := c.Request().Context()
	var res []RepaymentResult
	var evs []loanEvent
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		res, evs, err = s.applyRepayments(ctx, tx, bank.OrganizationID, bank.Credential(), ins)
		return err
	})
	if err != nil {
		return err
	}
	s.journalAfter(ctx, evs...)
	var fields []apperr.FieldError
	for _, r := range res {
		if r.Status != "rejected" {
			return c.JSON(http.StatusOK, map[string]any{"results": res})
		}
		fields = append(fields, r.Errors...)
	}
	return apperr.Fields("no repayment in the batch was applied", fields...)
}

// listRepayments: GET /loans/{id}/repayments.
func (s *Service) listRepayments(c echo.Context) error {
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
	rows, err := s.pool.Query(ctx, `
		SELECT id::text, loan_id::text, payer_reference, amount, currency, paid_on, channel, record_id::text, received_at
		FROM lending.repayments WHERE loan_id = $1 ORDER BY received_at, id`, id)
	if err != nil {
		return fmt.Errorf("repayments of loan %s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Repayment, error) {
		var p Repayment
		var paid time.Time
		err := r.Scan(&p.ID, &p.LoanID, &p.PayerReference, &p.Amount.Amount, &p.Amount.Currency, &paid, &p.Channel, &p.RecordID, &p.ReceivedAt)
		p.PaidOn = paid.Format(time.DateOnly)
		return p, err
	})
	if err != nil {
		return fmt.Errorf("repayments of loan %s: %w", id, err)
	}
	if out == nil {
		out = []Repayment{}
	}
	return c.JSON(http.StatusOK, map[string]any{"repayments": out})
}
