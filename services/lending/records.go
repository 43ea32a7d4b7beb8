package lending

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
)

// attestedMsg is the body of farm.attested.<type> (attest's announcement).
type attestedMsg struct {
	RecordID  string `json:"record_id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	LeafIndex *int64 `json:"leaf_index"`
	Decision  int    `json:"decision"`
}

// loanRecord is an agent's loan record as ingest normalized it
// (ingest.loan_record_facts).
type loanRecord struct {
	RecordID, Type, FarmerID, LoanID, AgentID string
	CapturedAt                                time.Time
	ProductID, Currency, Purpose, Terms, Ref  *string
	Amount                                    *int64
	CollectedOn                               *time.Time
}

// policyUser is the user id under which a bank's automatic policy reads
// through the consent gate (the access log shows user:lending-policy).
const policyUser = "lending-policy"

// HandleRecord applies one attested loan record: an agent's application
// creates the loan (and the bank's policy decides it when the farmer's
// consent allows the score), a farmer's acceptance makes the agreement,
// an agent's collection is a repayment. Only verified records act; each
// record acts once (lending.record_outcomes), and a record lending cannot
// apply (an offer expired or changed, a repayment on a repaid loan) is
// recorded as refused with the reason rather than retried.
func (s *Service) HandleRecord(ctx context.Context, msg jetstream.Msg) error {
	var m attestedMsg
	if err := json.Unmarshal(msg.Data(), &m); err != nil || m.RecordID == "" {
		return apperr.Errorf(apperr.Invalid, "farm.attested message is not an announcement: %v", err)
	}
	if m.Status != "verified" {
		return nil // flagged ones come again if a reviewer approves them
	}
	return s.ApplyAttested(ctx, m.RecordID, m.LeafIndex)
}

// ApplyAttested applies the verified loan record id (journaled at leaf),
// once: HandleRecord's work, for a record attest announced as verified.
func (s *Service) ApplyAttested(ctx context.Context, recordID string, leaf *int64) error {
	m := attestedMsg{RecordID: recordID, LeafIndex: leaf}
	var done bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM lending.record_outcomes WHERE record_id = $1)`, m.RecordID).Scan(&done); err != nil {
		return fmt.Errorf("outcome of record %s: %w", m.RecordID, err)
	}
	if done {
		return nil
	}
	r, err := s.loadRecord(ctx, m.RecordID)
	if err != nil {
		return err
	}
	switch r.Type {
	case "loan.applied":
		return s.applyApplication(ctx, r)
	case "loan.accepted":
		return s.applyAcceptance(ctx, r, m.LeafIndex)
	case "repayment.collected":
		return s.applyCollection(ctx, r)
	}
	return apperr.Errorf(apperr.Invalid, "record %s is a %s, not a loan record", r.RecordID, r.Type)
}

func (s *Service) loadRecord(ctx context.Context, id string) (*loanRecord, error) {
	var r loanRecord
	err := s.pool.QueryRow(ctx, `
		SELECT record_id::text, type, farmer_id::text, loan_id::text, agent_id::text, captured_at, product_id::text, currency, purpose,
		       terms_sha256, payer_reference, amount_minor, collected_on
		FROM ingest.loan_record_facts WHERE record_id = $1`, id).
		Scan(&r.RecordID, &r.Type, &r.FarmerID, &r.LoanID, &r.AgentID, &r.CapturedAt, &r.ProductID, &r.Currency, &r.Purpose,
			&r.Terms, &r.Ref, &r.Amount, &r.CollectedOn)
	if errors.Is(err, pgx.ErrNoRows) {
		// attest announces only records ingest stored: it will be there.
		return nil, fmt.Errorf("record %s is not in ingest.loan_record_facts yet", id)
	}
	if err != nil {
		return nil, fmt.Errorf("load record %s: %w", id, err)
	}
	return &r, nil
}

// outcome records what lending did with a record, in tx.
func outcome(ctx context.Context, tx pgx.Tx, r *loanRecord, applied bool, reason string) error {
	var why *string
	if reason != "" {
		why = &reason
	}
	_, err := tx.Exec(ctx, `INSERT INTO lending.record_outcomes (record_id, type, loan_id, farmer_id, applied, reason) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		r.RecordID, r.Type, r.LoanID, r.FarmerID, applied, why)
	if err != nil {
		return fmt.Errorf("outcome of record %s: %w", r.RecordID, err)
	}
	return nil
}

// refuse records a refusal in its own transaction.
func (s *Service) refuse(ctx context.Context, r *loanRecord, reason string) error {
	s.logger.InfoContext(ctx, "attested loan record refused", "record", r.RecordID, "type", r.Type, "loan", r.LoanID, "reason", reason)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return outcome(ctx, tx, r, false, reason) })
}

// applyApplication creates the loan of an agent's application, then lets
// the bank's policy decide it.
func (s *Service) applyApplication(ctx context.Context, r *loanRecord) error {
	var p *Product
	var org string
	err := s.pool.QueryRow(ctx, `SELECT organization_id::text FROM lending.products WHERE id = $1`, *r.ProductID).Scan(&org)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.refuse(ctx, r, "the product does not exist")
	}
	if err != nil {
		return fmt.Errorf("product of record %s: %w", r.RecordID, err)
	}
	var evs []loanEvent
	var refusal string
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		refusal = ""
		if p, err = loadProduct(ctx, tx, org, *r.ProductID); err != nil {
			return err
		}
		amount := Money{Amount: *r.Amount, Currency: *r.Currency}
		var problems []string
		for _, f := range checkAmount(p, amount, "amount") {
			problems = append(problems, f.Field+" "+f.Message)
		}
		if p.Status != "active" {
			problems = append(problems, "the product was retired")
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM lending.loans WHERE id = $1)`, r.LoanID).Scan(&exists); err != nil {
			return err
		}
		if exists {
			problems = append(problems, "the loan id is already used")
		}
		if len(problems) > 0 {
			refusal = strings.Join(problems, "; ")
			return outcome(ctx, tx, r, false, refusal)
		}
		l := &loan{ID: r.LoanID, OrgID: org, ProductID: p.ID, FarmerID: r.FarmerID, Channel: "agent", ApplicationRecordID: &r.RecordID,
			AgentID: &r.AgentID, Crop: p.Crops[0], Requested: amount.Amount, Currency: amount.Currency, Purpose: *r.Purpose, CreatedAt: s.now().UTC()}
		if err := insertLoan(ctx, tx, l); err != nil {
			return err
		}
		ev, err := s.transition(ctx, tx, l, move{To: Applied, Actor: "agent:" + r.AgentID, Reason: *r.Purpose,
			Details: map[string]any{"channel": "agent", "application_record_id": r.RecordID, "requested": amount}})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
		if err := saveLoan(ctx, tx, l); err != nil {
			return err
		}
		return outcome(ctx, tx, r, true, "")
	})
	if err != nil {
		return err
	}
	if refusal != "" {
		s.logger.InfoContext(ctx, "agent's loan application refused", "record", r.RecordID, "reason", refusal)
		return nil
	}
	s.journalAfter(ctx, evs...)
	s.policyDecision(ctx, org, r.LoanID)
	return nil
}

// awaitingConsent is the decision reason of an agent's application whose
// farmer holds no consent allowing the bank's policy to score it; the
// servicing loop tries again.
const awaitingConsent = "awaiting the farmer's consent (plots, crops, inputs, harvests, sales, credit) for the bank's automatic decision"

// policyDecision lets the bank's policy decide an applied loan, reading
// the farmer's data through the consent gate as the bank's policy. A
// missing consent leaves the loan applied, awaiting it.
func (s *Service) policyDecision(ctx context.Context, org, loanID string) {
	var farmer string
	if err := s.pool.QueryRow(ctx, `SELECT farmer_id::text FROM lending.loans WHERE id = $1`, loanID).Scan(&farmer); err != nil {
		s.logger.WarnContext(ctx, "automatic decision: loan not found", "loan", loanID, "err", err)
		return
	}
	p := identity.Principal{OrganizationID: org, Kind: identity.Bank, UserID: policyUser}
	var evs []loanEvent
	var sc *scoreRow
	err := s.gate.Read(ctx, p, consent.Access{FarmerID: farmer, Scopes: scoreScopes, Purpose: "automatic loan decision", RequestID: "loan:" + loanID},
		func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
			l, err := lockLoan(ctx, tx, org, loanID)
			if err != nil {
				return err
			}
			if l.State != Applied {
				return nil
			}
			product, err := loadProduct(ctx, tx, org, l.ProductID)
			if err != nil {
				return err
			}
			if evs, sc, err = s.autoDecide(ctx, tx, l, product, true); err != nil {
				return err
			}
			return saveLoan(ctx, tx, l)
		})
	if errors.Is(err, consent.Denied) || apperr.Is(err, apperr.Forbidden) {
		if _, err := s.pool.Exec(ctx, `UPDATE lending.loans SET decision_reason = $2, updated_at = now() WHERE id = $1 AND state = 'applied'`, loanID, awaitingConsent); err != nil {
			s.logger.WarnContext(ctx, "automatic decision: record the wait for consent", "loan", loanID, "err", err)
		}
		return
	}
	if err != nil {
		s.logger.WarnContext(ctx, "automatic decision failed; the servicing loop retries", "loan", loanID, "err", err)
		return
	}
	s.journalScoresAfter(ctx, sc)
	s.journalAfter(ctx, evs...)
}

// applyAcceptance turns the farmer's signed acceptance into the loan
// agreement: the offer must still be open and its terms the ones the
// farmer was sent (terms_sha256). The journaled agreement carries the
// terms and names the acceptance record and its journal leaf.
func (s *Service) applyAcceptance(ctx context.Context, r *loanRecord, leaf *int64) error {
	var ev loanEvent
	var refusal string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		refusal = ""
		l, err := lockLoan(ctx, tx, "", r.LoanID)
		if apperr.Is(err, apperr.NotFound) {
			refusal = "no such loan"
			return outcome(ctx, tx, r, false, refusal)
		}
		if err != nil {
			return err
		}
		switch {
		case l.FarmerID != r.FarmerID:
			refusal = "the loan is another farmer's"
		case l.State == Expired:
			refusal = "the offer expired before the acceptance arrived; the bank may make a new offer"
		case l.State != Offered:
			refusal = fmt.Sprintf("the loan is %s, not offered", l.State)
		case l.TermsSHA256 == nil || *l.TermsSHA256 != *r.Terms:
			refusal = "the accepted terms are not the offer's (terms_sha256 differs)"
		}
		if refusal != "" {
			return outcome(ctx, tx, r, false, refusal)
		}
		captured := r.CapturedAt.UTC()
		l.AcceptedRecordID, l.AcceptedAt = &r.RecordID, &captured
		ev, err = s.transition(ctx, tx, l, move{To: Accepted, Actor: "farmer:" + r.FarmerID + " via agent:" + r.AgentID, Reason: "offer accepted with the farmer's one-time code",
			Details: map[string]any{"terms": json.RawMessage(l.Terms), "terms_sha256": *l.TermsSHA256, "acceptance_record_id": r.RecordID,
				"acceptance_leaf_index": leaf, "accepted_at": captured, "agent_id": r.AgentID}})
		if err != nil {
			return err
		}
		if err := saveLoan(ctx, tx, l); err != nil {
			return err
		}
		return outcome(ctx, tx, r, true, "")
	})
	if err != nil {
		return err
	}
	if refusal != "" {
		s.logger.InfoContext(ctx, "farmer's acceptance refused", "record", r.RecordID, "loan", r.LoanID, "reason", refusal)
		return nil
	}
	s.journalAfter(ctx, ev)
	return nil
}

// applyCollection applies cash an agent collected as a repayment.
func (s *Service) applyCollection(ctx context.Context, r *loanRecord) error {
	var evs []loanEvent
	var refusal string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		refusal = ""
		var farmer string
		err := tx.QueryRow(ctx, `SELECT farmer_id::text FROM lending.loans WHERE id = $1`, r.LoanID).Scan(&farmer)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && farmer != r.FarmerID {
			refusal = "the loan is not this farmer's"
			return outcome(ctx, tx, r, false, refusal)
		}
		if err != nil {
			return err
		}
		res, more, err := s.applyRepayments(ctx, tx, "", "agent:"+r.AgentID, []repaymentIn{{LoanID: r.LoanID, Reference: *r.Ref,
			Amount: Money{Amount: *r.Amount, Currency: *r.Currency}, PaidOn: *r.CollectedOn, Channel: "agent", RecordID: &r.RecordID}})
		if err != nil {
			return err
		}
		if res[0].Status == "rejected" {
			var msgs []string
			for _, f := range res[0].Errors {
				msgs = append(msgs, f.Field+" "+f.Message)
			}
			refusal = strings.Join(msgs, "; ")
			return outcome(ctx, tx, r, false, refusal)
		}
		evs = more
		return outcome(ctx, tx, r, true, "")
	})
	if err != nil {
		return err
	}
	if refusal != "" {
		s.logger.InfoContext(ctx, "agent's collection refused", "record", r.RecordID, "loan", r.LoanID, "reason", refusal)
		return nil
	}
	s.journalAfter(ctx, evs...)
	return nil
}
