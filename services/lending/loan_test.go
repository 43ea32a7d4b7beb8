package lending_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/services/lending"
)

// accept seeds the farmer's signed loan.accepted record as ingest and
// attest leave it (verified, journaled) and applies it as the consumer of
// farm.attested does.
func (f *farmer) accept(loanID, terms string) string {
	f.e.tb.Helper()
	rec := uuid.NewString()
	ctx := context.Background()
	if _, err := f.e.pool.Exec(ctx, `
		INSERT INTO ingest.loan_records (record_id, type, farmer_id, loan_id, agent_id, captured_at, terms_sha256)
		VALUES ($1, 'loan.accepted', $2, $3, $4, now(), $5)`, rec, f.ID, loanID, f.Agent, terms); err != nil {
		f.e.tb.Fatal(err)
	}
	f.attest(rec, "loan.accepted", "", "verified", time.Now(), map[string]string{"acceptance": "farmer_otp"}, nil)
	f.apply(rec)
	return rec
}

// collect seeds an agent's verified repayment.collected record and applies it.
func (f *farmer) collect(loanID, ref string, amount int64) string {
	f.e.tb.Helper()
	rec := uuid.NewString()
	ctx := context.Background()
	if _, err := f.e.pool.Exec(ctx, `
		INSERT INTO ingest.loan_records (record_id, type, farmer_id, loan_id, agent_id, captured_at, amount_minor, currency, payer_reference, collected_on)
		VALUES ($1, 'repayment.collected', $2, $3, $4, now(), $5, 'IDR', $6, current_date)`, rec, f.ID, loanID, f.Agent, amount, ref); err != nil {
		f.e.tb.Fatal(err)
	}
	f.attest(rec, "repayment.collected", "", "verified", time.Now(), map[string]string{"amount": "self_reported"}, nil)
	f.apply(rec)
	return rec
}

// applyFor seeds an agent's verified loan.applied record and applies it.
func (f *farmer) applyFor(productID string, amount int64) string {
	f.e.tb.Helper()
	rec, loan := uuid.NewString(), uuid.NewString()
	if _, err := f.e.pool.Exec(context.Background(), `
		INSERT INTO ingest.loan_records (record_id, type, farmer_id, loan_id, agent_id, captured_at, product_id, amount_minor, currency, purpose)
		VALUES ($1, 'loan.applied', $2, $3, $4, now(), $5, $6, 'IDR', 'fertilizer')`, rec, f.ID, loan, f.Agent, productID, amount); err != nil {
		f.e.tb.Fatal(err)
	}
	f.attest(rec, "loan.applied", "", "verified", time.Now(), map[string]string{"application": "self_reported"}, nil)
	f.apply(rec)
	return loan
}

func (f *farmer) apply(rec string) {
	f.e.tb.Helper()
	var leaf int64
	f.e.pool.QueryRow(context.Background(), `SELECT leaf_index FROM attest.records WHERE record_id = $1`, rec).Scan(&leaf)
	if err := f.e.svc.ApplyAttested(context.Background(), rec, &leaf); err != nil {
		f.e.tb.Fatal(err)
	}
}

func (f *farmer) outcome(rec string) (bool, string) {
	var applied bool
	var reason *string
	if err := f.e.pool.QueryRow(context.Background(), `SELECT applied, reason FROM lending.record_outcomes WHERE record_id = $1`, rec).Scan(&applied, &reason); err != nil {
		f.e.tb.Fatal(err)
	}
	if reason == nil {
		return applied, ""
	}
	return applied, *reason
}

func money(a int64) map[string]any { return map[string]any{"amount": a, "currency": "IDR"} }

func today() string { return time.Now().Format(time.DateOnly) }

// offered applies for a typical farmer with consent and returns the offer.
func offered(t *testing.T, e *env, b *bank, p lending.Product) (*farmer, lending.LoanView) {
	t.Helper()
	f, _ := e.typical("Central Java")
	f.consent(b.ID)
	var l lending.LoanView
	b.must(http.StatusCreated, "POST", "/bank/v1/loans", map[string]any{"farmer_id": f.ID, "product_id": p.ID, "amount": money(5_000_000_00), "purpose": "seed"}, &l)
	if l.State != lending.Offered {
		t.Fatalf("loan %s, want offered: %v", l.State, *l.Decision.Reason)
	}
	return f, l
}

// disbursed is offered, accepted and disbursed in cash.
func disbursed(t *testing.T, e *env, b *bank, p lending.Product) (*farmer, lending.LoanView) {
	t.Helper()
	f, l := offered(t, e, b, p)
	f.accept(l.ID, l.Offer.TermsSHA256)
	b.must(http.StatusOK, "POST", "/bank/v1/loans/"+l.ID+"/disbursement", map[string]any{"method": "cash", "reference": "TRF-" + l.ID[:8]}, &l)
	return f, l
}

func TestLoanLife(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	p := b.product("Padi", intp(500), intp(300), "bullet")
	f, l := offered(t, e, b, p)
	if l.Decision == nil || *l.Decision.By != "policy" || l.Decision.ScoreID == nil {
		t.Fatalf("decision %+v, want the policy's with a score", l.Decision)
	}
	rec := f.accept(l.ID, l.Offer.TermsSHA256)
	b.must(http.StatusOK, "GET", "/bank/v1/loans/"+l.ID, nil, &l)
	if l.State != lending.Accepted || *l.AcceptedRecordID != rec {
		t.Fatalf("state %s accepted by %v, want accepted by %s", l.State, l.AcceptedRecordID, rec)
	}
	b.must(http.StatusOK, "POST", "/bank/v1/loans/"+l.ID+"/disbursement", map[string]any{"method": "cash", "reference": "TRF-1"}, &l)
	total := l.Offer.TotalDue.Amount
	coll := f.collect(l.ID, "KWT-1", total/2)
	if ok, why := f.outcome(coll); !ok {
		t.Fatalf("collection refused: %s", why)
	}
	var r lending.RepaymentResult
	b.must(http.StatusCreated, "POST", "/bank/v1/loans/"+l.ID+"/repayments", map[string]any{"payer_reference": "P2", "amount": money(total - total/2), "paid_on": today()}, &r)
	if r.LoanState != lending.Repaid || r.Balance.Amount != 0 {
		t.Fatalf("after the last repayment: %+v", r)
	}
	t.Run("OK_EveryStepJournaledAndTold", func(t *testing.T) {
		rows, _ := e.pool.Query(context.Background(), `SELECT kind, leaf_index IS NOT NULL FROM lending.loan_events WHERE loan_id = $1 ORDER BY revision`, l.ID)
		var got []string
		for rows.Next() {
			var k string
			var j bool
			rows.Scan(&k, &j)
			if !j {
				t.Errorf("%s not journaled", k)
			}
			got = append(got, k)
		}
		if strings.Join(got, " ") != "loan.applied loan.offered loan.agreement loan.disbursed loan.repaid" {
			t.Errorf("events %v", got)
		}
		var types []string
		rows, _ = e.pool.Query(context.Background(), `SELECT type FROM events.outbox WHERE organization_id = $1 ORDER BY seq`, b.ID)
		for rows.Next() {
			var ty string
			rows.Scan(&ty)
			types = append(types, ty)
		}
		if want := "loan.applied loan.offered loan.accepted loan.disbursed repayment.received repayment.received loan.repaid"; strings.Join(types, " ") != want {
			t.Errorf("events told: %v, want %s", types, want)
		}
		var scored int
		e.pool.QueryRow(context.Background(), `SELECT count(*) FROM lending.scores WHERE loan_id = $1 AND leaf_index IS NOT NULL`, l.ID).Scan(&scored)
		if scored != 1 {
			t.Errorf("%d journaled scores for the loan, want 1", scored)
		}
	})
	t.Run("OK_Agreement", func(t *testing.T) {
		var a lending.Agreement
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+l.ID+"/agreement", nil, &a)
		if a.TermsSHA256 != l.Offer.TermsSHA256 || a.Acceptance.RecordID != rec || a.Entry.Receipt == nil || a.Acceptance.Receipt == nil {
			t.Fatalf("agreement %+v", a)
		}
		var terms lending.Terms
		json.Unmarshal(a.Terms, &terms)
		if terms.LoanID != l.ID || terms.TotalDue != total || terms.Harvest == nil || terms.DueBasis == "" {
			t.Errorf("terms %+v", terms)
		}
	})
}

// TestBadInput: each is refused with a clear 4xx and stores nothing.
func TestBadInput(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	p := b.product("Padi", intp(500), intp(300), "bullet")
	f, l := disbursed(t, e, b, p)
	noConsent, _ := e.typical("Central Java")
	narrow, _ := e.typical("Central Java")
	narrow.consent(b.ID, "plots", "harvests")
	loans := func() int {
		var n int
		e.pool.QueryRow(context.Background(), `SELECT count(*) FROM lending.loans`).Scan(&n)
		return n
	}
	repayments := func() int {
		var n int
		e.pool.QueryRow(context.Background(), `SELECT count(*) FROM lending.repayments`).Scan(&n)
		return n
	}
	denied := func(farmer string) int {
		var n int
		e.pool.QueryRow(context.Background(), `SELECT count(*) FROM consent.access_log WHERE farmer_id = $1 AND NOT allowed`, farmer).Scan(&n)
		return n
	}
	before, beforeRep := loans(), repayments()
	apply := func(farmer, product string, amount any) map[string]any {
		return map[string]any{"farmer_id": farmer, "product_id": product, "amount": amount, "purpose": "seed"}
	}
	loanPath := "/bank/v1/loans/" + l.ID
	rep := func(ref string, amount any) map[string]any {
		return map[string]any{"payer_reference": ref, "amount": amount, "paid_on": today()}
	}
	cases := []struct {
		name, method, path string
		body               any
		want               int
		says               string
	}{
		{"ErrProfileWithoutConsent", "GET", "/bank/v1/farmers/" + noConsent.ID + "/profile", nil, 403, "no live consent"},
		{"ErrScoreWithoutConsent", "POST", "/bank/v1/farmers/" + noConsent.ID + "/score", map[string]any{"product_id": p.ID}, 403, "no live consent"},
		{"ErrScoreOutOfScope", "POST", "/bank/v1/farmers/" + narrow.ID + "/score", map[string]any{"product_id": p.ID}, 403, "no live consent"},
		{"ErrProfileSectionOutOfScope", "GET", "/bank/v1/farmers/" + narrow.ID + "/profile?sections=land,sales", nil, 403, "no live consent"},
		{"ErrUnknownSection", "GET", "/bank/v1/farmers/" + narrow.ID + "/profile?sections=land,gossip", nil, 400, "sections"},
		{"ErrLoanForUnknownFarmer", "POST", "/bank/v1/loans", apply(uuid.NewString(), p.ID, money(1_000_000_00)), 403, "no live consent"},
		{"ErrLoanForUnknownProduct", "POST", "/bank/v1/loans", apply(f.ID, uuid.NewString(), money(1_000_000_00)), 400, "product_id"},
		{"ErrAmountBelowRange", "POST", "/bank/v1/loans", apply(f.ID, p.ID, money(1000)), 400, "amount.amount"},
		{"ErrAmountAboveRange", "POST", "/bank/v1/loans", apply(f.ID, p.ID, money(90_000_000_00)), 400, "amount.amount"},
		{"ErrAmountOtherCurrency", "POST", "/bank/v1/loans", apply(f.ID, p.ID, map[string]any{"amount": 1_000_000_00, "currency": "USD"}), 400, "amount.currency"},
		{"ErrAmountZero", "POST", "/bank/v1/loans", apply(f.ID, p.ID, money(0)), 400, "amount.amount"},
		{"ErrMalformedFarmerID", "POST", "/bank/v1/loans", apply("F-1", p.ID, money(1_000_000_00)), 400, "farmer_id"},
		{"ErrUnknownField", "POST", "/bank/v1/loans", map[string]any{"farmer_id": f.ID, "product_id": p.ID, "amount": money(1_000_000_00), "purpose": "x", "rate": 0}, 400, "rate"},
		{"ErrMalformedLoanPath", "GET", "/bank/v1/loans/LOAN-1", nil, 400, "id"},
		{"ErrUnknownLoan", "GET", "/bank/v1/loans/" + uuid.NewString(), nil, 404, "no loan"},
		{"ErrRepaymentZero", "POST", loanPath + "/repayments", rep("Z1", money(0)), 400, "amount.amount"},
		{"ErrRepaymentNegative", "POST", loanPath + "/repayments", rep("Z2", money(-5)), 400, "amount.amount"},
		{"ErrRepaymentOtherCurrency", "POST", loanPath + "/repayments", rep("Z3", map[string]any{"amount": 100, "currency": "USD"}), 400, "amount.currency"},
		{"ErrRepaymentAboveBalance", "POST", loanPath + "/repayments", rep("Z4", money(1_000_000_000_00)), 400, "outstanding balance"},
		{"ErrRepaymentInTheFuture", "POST", loanPath + "/repayments", map[string]any{"payer_reference": "Z5", "amount": money(100), "paid_on": time.Now().AddDate(0, 0, 5).Format(time.DateOnly)}, 400, "paid_on"},
		{"ErrRepaymentNoReference", "POST", loanPath + "/repayments", rep("", money(100)), 400, "payer_reference"},
		{"ErrRepaymentUnknownLoan", "POST", "/bank/v1/loans/" + uuid.NewString() + "/repayments", rep("Z6", money(100)), 404, "no loan"},
		{"ErrDisburseTwice", "POST", loanPath + "/disbursement", map[string]any{"method": "cash", "reference": "again"}, 409, "cannot become disbursed"},
		{"ErrCashWithoutReference", "POST", loanPath + "/disbursement", map[string]any{"method": "cash"}, 400, "reference"},
		{"ErrDecideDisbursedLoan", "POST", loanPath + "/decision", map[string]any{"decision": "approve", "reason": "again"}, 409, "cannot become offered"},
		{"ErrDecisionWithoutReason", "POST", loanPath + "/decision", map[string]any{"decision": "decline"}, 400, "reason"},
		{"ErrProductBadRange", "POST", "/bank/v1/products", map[string]any{"name": "x", "crops": []string{"rice"}, "currency": "IDR", "min_amount": 500, "max_amount": 100,
			"fee_bps": 0, "interest_bps": 0, "tenor_days": 90, "grace_days": 0, "repayment_style": "bullet", "ltv_bps": 5000, "offer_valid_days": 7}, 400, "max_amount"},
		{"ErrProductCropWithoutBenchmark", "POST", "/bank/v1/products", map[string]any{"name": "y", "crops": []string{"other"}, "currency": "IDR", "min_amount": 100, "max_amount": 1000,
			"fee_bps": 0, "interest_bps": 0, "tenor_days": 90, "grace_days": 0, "repayment_style": "bullet", "ltv_bps": 5000, "offer_valid_days": 7}, 400, "crops[0]"},
		{"ErrOversizeBody", "POST", "/bank/v1/repayments", []byte(`{"repayments":[` + strings.Repeat(`{"loan_id":"`+l.ID+`","payer_reference":"X","amount":{"amount":1,"currency":"IDR"},"paid_on":"2026-01-01"},`, 20000) + `{}]}`), 413, ""},
		{"ErrTooManyInBatch", "POST", "/bank/v1/repayments", map[string]any{"repayments": make([]map[string]any, 1001)}, 400, "repayments"},
		{"ErrNoKey", "GET", "/bank/v1/products", nil, 401, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token := b.Token
			if tc.name == "ErrNoKey" {
				token = ""
			}
			status, raw := e.do(tc.method, tc.path, token, tc.body, nil)
			if status != tc.want || !strings.Contains(string(raw), tc.says) {
				t.Errorf("%s %s = %d %s, want %d mentioning %q", tc.method, tc.path, status, raw, tc.want, tc.says)
			}
		})
	}
	if n := loans(); n != before {
		t.Errorf("%d loans stored by refused requests", n-before)
	}
	if n := repayments(); n != beforeRep {
		t.Errorf("%d repayments stored by refused requests", n-beforeRep)
	}
	if denied(noConsent.ID) < 2 || denied(narrow.ID) < 2 {
		t.Errorf("denied reads not logged: %d, %d", denied(noConsent.ID), denied(narrow.ID))
	}
	t.Run("OK_DuplicateReferenceIsIdempotent", func(t *testing.T) {
		var r1, r2 lending.RepaymentResult
		b.must(http.StatusCreated, "POST", loanPath+"/repayments", rep("DUP-1", money(1000)), &r1)
		b.must(http.StatusOK, "POST", loanPath+"/repayments", rep("DUP-1", money(1000)), &r2)
		if r1.Repayment.ID != r2.Repayment.ID || r2.Status != "duplicate" || r2.Balance.Amount != r1.Balance.Amount {
			t.Errorf("first %+v, again %+v: want the same repayment, counted once", r1, r2)
		}
		status, raw := b.do("POST", loanPath+"/repayments", rep("DUP-1", money(2000)), nil)
		if status != http.StatusConflict || !strings.Contains(string(raw), "already used") {
			t.Errorf("same reference, other amount: %d %s, want 409", status, raw)
		}
	})
	t.Run("ErrAgentRecordsRefusedWithAReason", func(t *testing.T) {
		// An acceptance of terms that are not the offer's, a collection on
		// another farmer's loan: verified by attest, refused by lending.
		_, l2 := offered(t, e, b, p)
		g, _ := e.typical("Central Java")
		rec := g.accept(l2.ID, strings.Repeat("0", 64))
		if ok, why := g.outcome(rec); ok || !strings.Contains(why, "another farmer's") {
			t.Errorf("acceptance by another farmer: applied %v, %q", ok, why)
		}
		rec = g.collect(l.ID, "KWT-X", 100)
		if ok, why := g.outcome(rec); ok || !strings.Contains(why, "not this farmer's") {
			t.Errorf("collection on another farmer's loan: applied %v, %q", ok, why)
		}
	})
	t.Run("ErrAcceptanceOfChangedTerms", func(t *testing.T) {
		h, l3 := offered(t, e, b, p)
		rec := h.accept(l3.ID, strings.Repeat("ab", 32))
		if ok, why := h.outcome(rec); ok || !strings.Contains(why, "terms_sha256 differs") {
			t.Errorf("applied %v, %q", ok, why)
		}
		var got lending.LoanView
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+l3.ID, nil, &got)
		if got.State != lending.Offered {
			t.Errorf("state %s, want still offered", got.State)
		}
	})
	t.Run("ErrAcceptanceAfterExpiry", func(t *testing.T) {
		h, l4 := offered(t, e, b, p)
		e.clock.Add(15 * 24 * time.Hour)
		defer e.clock.Add(-15 * 24 * time.Hour)
		if err := e.svc.Service(context.Background()); err != nil {
			t.Fatal(err)
		}
		rec := h.accept(l4.ID, l4.Offer.TermsSHA256)
		if ok, why := h.outcome(rec); ok || !strings.Contains(why, "offer expired") {
			t.Errorf("applied %v, %q", ok, why)
		}
	})
	_ = f
}

// TestIsolation: bank B never sees bank A's products, loans, repayments,
// agreements, restructurings or portfolio, and cannot act on them.
func TestIsolation(t *testing.T) {
	e := mustEnv(t)
	a, b := e.bank("Bank A"), e.bank("Bank B")
	p := a.product("Padi", intp(500), intp(300), "bullet")
	f, l := disbursed(t, e, a, p)
	f.consent(b.ID) // the farmer consents to both: loans stay each bank's own
	for _, r := range []struct{ method, path string }{
		{"GET", "/bank/v1/products/" + p.ID},
		{"POST", "/bank/v1/products/" + p.ID + "/retire"},
		{"GET", "/bank/v1/loans/" + l.ID},
		{"GET", "/bank/v1/loans/" + l.ID + "/repayments"},
		{"GET", "/bank/v1/loans/" + l.ID + "/agreement"},
		{"GET", "/bank/v1/loans/" + l.ID + "/events"},
		{"GET", "/bank/v1/loans/" + l.ID + "/restructurings"},
	} {
		if status, raw := b.do(r.method, r.path, nil, nil); status != http.StatusNotFound {
			t.Errorf("bank B %s %s = %d %s, want 404", r.method, r.path, status, raw)
		}
	}
	for _, r := range []struct {
		path string
		body any
	}{
		{"/bank/v1/loans/" + l.ID + "/repayments", map[string]any{"payer_reference": "B-1", "amount": money(100), "paid_on": today()}},
		{"/bank/v1/loans/" + l.ID + "/write-off", map[string]any{"reason": "not ours"}},
		{"/bank/v1/loans/" + l.ID + "/decision", map[string]any{"decision": "decline", "reason": "not ours"}},
		{"/bank/v1/loans/" + l.ID + "/disbursement", map[string]any{"method": "cash", "reference": "x"}},
		{"/bank/v1/loans", map[string]any{"farmer_id": f.ID, "product_id": p.ID, "amount": money(1_000_000_00), "purpose": "x"}},
		{"/bank/v1/farmers/" + f.ID + "/score", map[string]any{"product_id": p.ID}},
	} {
		status, raw := b.do("POST", r.path, r.body, nil)
		if status != http.StatusNotFound && !(status == http.StatusBadRequest && strings.Contains(string(raw), "not one of your products")) {
			t.Errorf("bank B POST %s = %d %s, want 404 or 400 naming the product", r.path, status, raw)
		}
	}
	status, raw := b.do("POST", "/bank/v1/repayments", map[string]any{"repayments": []map[string]any{{"loan_id": l.ID, "payer_reference": "B-2", "amount": money(100), "paid_on": today()}}}, nil)
	if status != http.StatusBadRequest || !strings.Contains(string(raw), "not a loan of yours") {
		t.Errorf("bank B batch repayment = %d %s", status, raw)
	}
	var list struct{ Loans []lending.LoanView }
	b.must(http.StatusOK, "GET", "/bank/v1/loans", nil, &list)
	var products struct{ Products []lending.Product }
	b.must(http.StatusOK, "GET", "/bank/v1/products", nil, &products)
	var port struct{ Rows []lending.PortfolioRow }
	b.must(http.StatusOK, "GET", "/bank/v1/portfolio", nil, &port)
	if len(list.Loans) != 0 || len(products.Products) != 0 || len(port.Rows) != 0 {
		t.Errorf("bank B sees %d loans, %d products, %d portfolio rows of bank A", len(list.Loans), len(products.Products), len(port.Rows))
	}
	// In the farmer's profile B sees A's loan only as another lender's.
	var prof lending.Profile
	b.must(http.StatusOK, "GET", "/bank/v1/farmers/"+f.ID+"/profile", nil, &prof)
	if len(prof.Loans) != 1 || prof.Loans[0].Lender != "another Tani lender" || prof.Loans[0].ProductID != nil || prof.Loans[0].TotalDue != nil {
		t.Errorf("bank B's view of A's loan: %+v", prof.Loans)
	}
	var bundle struct{ Items []struct{ RecordID string } }
	b.must(http.StatusOK, "GET", "/bank/v1/farmers/"+f.ID+"/evidence-bundle", nil, &bundle)
	for _, it := range bundle.Items {
		if it.RecordID == l.ID {
			t.Error("bank B's evidence bundle holds bank A's loan entries")
		}
	}
	// Events are the owning bank's only.
	var n int
	e.pool.QueryRow(context.Background(), `SELECT count(*) FROM events.outbox WHERE organization_id = $1`, b.ID).Scan(&n)
	if n != 0 {
		t.Errorf("%d events addressed to bank B", n)
	}
}

// TestDecisions: the credit officer's approval (with an amount above the
// limit), decline, and an agent's application waiting for consent.
func TestDecisions(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	manual := b.product("Manual", nil, nil, "flexible")
	f, _ := e.typical("Central Java")
	f.consent(b.ID)
	var l lending.LoanView
	b.must(http.StatusCreated, "POST", "/bank/v1/loans", map[string]any{"farmer_id": f.ID, "product_id": manual.ID, "amount": money(40_000_000_00), "purpose": "tractor hire"}, &l)
	if l.State != lending.Applied || !strings.Contains(*l.Decision.Reason, "a credit officer decides") {
		t.Fatalf("loan %s %v, want applied for an officer", l.State, l.Decision)
	}
	t.Run("OK_OfficerApprovesAboveTheLimit", func(t *testing.T) {
		b.must(http.StatusOK, "POST", "/bank/v1/loans/"+l.ID+"/decision", map[string]any{"decision": "approve", "reason": "long-standing client", "amount": money(30_000_000_00)}, &l)
		if l.State != lending.Offered || l.Offer.Principal.Amount != 30_000_000_00 || *l.Decision.Reason != "long-standing client" {
			t.Fatalf("loan %+v", l)
		}
		var terms lending.Terms
		json.Unmarshal(l.Offer.Terms, &terms)
		if terms.RepaymentStyle != "flexible" || terms.TermDays != 240 {
			t.Errorf("flexible terms %+v, want due after the product's tenor", terms)
		}
		var above bool
		e.pool.QueryRow(context.Background(), `SELECT (convert_from(payload, 'UTF8')::jsonb->'details'->>'above_recommended_limit')::bool FROM lending.loan_events WHERE loan_id = $1 AND kind = 'loan.offered'`, l.ID).Scan(&above)
		if !above {
			t.Error("the journaled offer does not say it is above the recommended limit")
		}
	})
	t.Run("OK_OfferWithdrawn", func(t *testing.T) {
		b.must(http.StatusOK, "POST", "/bank/v1/loans/"+l.ID+"/decision", map[string]any{"decision": "decline", "reason": "client changed plans"}, &l)
		if l.State != lending.Declined {
			t.Fatalf("state %s", l.State)
		}
	})
	t.Run("OK_PolicyDeclines", func(t *testing.T) {
		strict := b.product("Strict", intp(900), intp(800), "bullet")
		var d lending.LoanView
		b.must(http.StatusCreated, "POST", "/bank/v1/loans", map[string]any{"farmer_id": f.ID, "product_id": strict.ID, "amount": money(1_000_000_00), "purpose": "seed"}, &d)
		if d.State != lending.Declined || !strings.Contains(*d.Decision.Reason, "below the policy's 800") {
			t.Errorf("loan %s %v", d.State, *d.Decision.Reason)
		}
	})
	t.Run("OK_AgentApplicationWaitsForConsent", func(t *testing.T) {
		auto := b.product("Auto", intp(500), intp(300), "bullet")
		g, _ := e.typical("Central Java")
		id := g.applyFor(auto.ID, 2_000_000_00)
		var a lending.LoanView
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+id, nil, &a)
		if a.State != lending.Applied || a.Channel != "agent" || !strings.Contains(*a.Decision.Reason, "awaiting the farmer's consent") {
			t.Fatalf("loan %s %v", a.State, a.Decision)
		}
		g.consent(b.ID)
		if err := e.svc.Service(context.Background()); err != nil {
			t.Fatal(err)
		}
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+id, nil, &a)
		if a.State != lending.Offered {
			t.Errorf("after consent: %s, want offered by the policy", a.State)
		}
		var policyReads int
		e.pool.QueryRow(context.Background(), `SELECT count(*) FROM consent.access_log WHERE farmer_id = $1 AND credential = 'user:lending-policy'`, g.ID).Scan(&policyReads)
		if policyReads < 2 {
			t.Errorf("%d policy reads logged, want the denied one and the allowed one", policyReads)
		}
	})
}

// TestServicing: a loan falls due and into arrears; a harvest far below
// the benchmark and a regional shock propose restructurings; accepting one
// moves the due date; write-off; the portfolio's figures and CSV.
func TestServicing(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	p := b.product("Padi", intp(500), intp(300), "bullet")
	f, late := disbursed(t, e, b, p)
	_, good := disbursed(t, e, b, p)
	ctx := context.Background()
	var lv lending.LoanView
	b.must(http.StatusCreated, "POST", "/bank/v1/loans/"+good.ID+"/repayments", map[string]any{"payer_reference": "G1", "amount": money(good.Offer.TotalDue.Amount), "paid_on": today()}, nil)

	// Past the due date by 35 days.
	due, _ := time.Parse(time.DateOnly, late.Offer.DueOn)
	e.clock.Add(due.Sub(time.Now()) + 35*24*time.Hour)
	if err := e.svc.Service(ctx); err != nil {
		t.Fatal(err)
	}
	b.must(http.StatusOK, "GET", "/bank/v1/loans/"+late.ID, nil, &lv)
	if lv.State != lending.InArrears || lv.DaysPastDue < 34 || lv.MaxDaysPastDue < 34 || lv.Schedule[0].Status != "overdue" {
		t.Fatalf("late loan %s dpd %d max %d schedule %+v", lv.State, lv.DaysPastDue, lv.MaxDaysPastDue, lv.Schedule)
	}
	t.Run("OK_PortfolioAtRisk", func(t *testing.T) {
		var port struct{ Rows []lending.PortfolioRow }
		b.must(http.StatusOK, "GET", "/bank/v1/portfolio?group_by=region", nil, &port)
		r := port.Rows[0]
		if len(port.Rows) != 1 || r.Group != "Central Java" || r.PAR30 != 1 || r.PAR90 != 0 || r.Loans != 2 || r.LoansOut != 1 ||
			r.DisbursedVolume != late.Offer.Principal.Amount+good.Offer.Principal.Amount || r.RepaymentRate == nil {
			t.Errorf("portfolio %+v", port.Rows)
		}
		// Repaid in full of the one that fell due: none of the late one.
		want := float64(good.Offer.TotalDue.Amount) / float64(good.Offer.TotalDue.Amount+late.Offer.TotalDue.Amount)
		if d := *r.RepaymentRate - want; d > 0.0001 || d < -0.0001 {
			t.Errorf("repayment rate %v, want %v", *r.RepaymentRate, want)
		}
		status, raw := b.do("GET", "/bank/v1/portfolio.csv?group_by=crop", nil, nil)
		recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if status != 200 || err != nil || len(recs) != 2 || recs[0][0] != "crop" || recs[1][0] != "rice" || recs[1][7] != "1.0000" {
			t.Errorf("csv %d %v %q", status, err, raw)
		}
		if status, _ := b.do("GET", "/bank/v1/portfolio?group_by=mood", nil, nil); status != 400 {
			t.Errorf("bad group_by = %d", status)
		}
	})
	t.Run("OK_HarvestShortfallProposed", func(t *testing.T) {
		plot, _ := f.plot(1.0, walked)
		f.harvest(plot, "rice", 1200, e.clock.Now().AddDate(0, 0, -1)) // 1.2 t/ha vs 5.6: 21 %
		if err := e.svc.Service(ctx); err != nil {
			t.Fatal(err)
		}
		var rs struct{ Restructurings []lending.Restructuring }
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+late.ID+"/restructurings", nil, &rs)
		if len(rs.Restructurings) != 1 || rs.Restructurings[0].Cause != "harvest_shortfall" || !strings.Contains(rs.Restructurings[0].Detail, "% of the 5.6 t/ha benchmark") {
			t.Fatalf("restructurings %+v", rs.Restructurings)
		}
		if err := e.svc.Service(ctx); err != nil { // idempotent
			t.Fatal(err)
		}
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+late.ID+"/restructurings", nil, &rs)
		if len(rs.Restructurings) != 1 {
			t.Errorf("%d proposals after a second pass, want 1", len(rs.Restructurings))
		}
		x := rs.Restructurings[0]
		b.must(http.StatusOK, "POST", "/bank/v1/loans/"+late.ID+"/restructurings/"+x.ID+"/decision", map[string]any{"decision": "accept", "reason": "drought"}, &x)
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+late.ID, nil, &lv)
		if x.State != "accepted" || lv.State != lending.Restructured || lv.Offer.DueOn != due.AddDate(0, 0, 180).Format(time.DateOnly) || lv.DaysPastDue != 0 || lv.MaxDaysPastDue < 34 {
			t.Errorf("after restructuring: %s due %s dpd %d max %d", lv.State, lv.Offer.DueOn, lv.DaysPastDue, lv.MaxDaysPastDue)
		}
		status, _ := b.do("POST", "/bank/v1/loans/"+late.ID+"/restructurings/"+x.ID+"/decision", map[string]any{"decision": "accept", "reason": "again"}, nil)
		if status != http.StatusConflict {
			t.Errorf("deciding twice = %d, want 409", status)
		}
	})
	t.Run("OK_ShockProposed", func(t *testing.T) {
		_, l := disbursed(t, e, b, p)
		d, _ := time.Parse(time.DateOnly, l.Offer.DueOn)
		var sh lending.Shock
		status, raw := e.do("POST", "/admin/v1/lending/shocks", "", map[string]any{"region": "Central Java", "crops": []string{"rice"}, "reason": "flood in the Bengawan Solo basin",
			"starts_on": e.clock.Now().AddDate(0, 0, -1).Format(time.DateOnly), "ends_on": d.Format(time.DateOnly), "extension_days": 60, "declared_by": "operator:ops1"}, &sh)
		if status != http.StatusCreated {
			t.Fatalf("declare shock = %d %s", status, raw)
		}
		var rs struct{ Restructurings []lending.Restructuring }
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+l.ID+"/restructurings", nil, &rs)
		if len(rs.Restructurings) != 1 || rs.Restructurings[0].Cause != "regional_shock" || rs.Restructurings[0].Evidence != sh.ID || rs.Restructurings[0].ExtensionDays != 60 {
			t.Errorf("restructurings %+v", rs.Restructurings)
		}
		x := rs.Restructurings[0]
		b.must(http.StatusOK, "POST", "/bank/v1/loans/"+l.ID+"/restructurings/"+x.ID+"/decision", map[string]any{"decision": "decline", "reason": "harvest insured"}, &x)
		b.must(http.StatusOK, "GET", "/bank/v1/loans/"+l.ID, nil, &lv)
		if x.State != "declined" || lv.State == lending.Restructured {
			t.Errorf("declined proposal: %s, loan %s", x.State, lv.State)
		}
		status, _ = e.do("POST", "/admin/v1/lending/shocks", "", map[string]any{"region": "x", "crops": []string{"rice"}, "reason": "r", "starts_on": "2026-05-01", "ends_on": "2026-04-01", "extension_days": 60, "declared_by": "o"}, nil)
		if status != http.StatusBadRequest {
			t.Errorf("shock ending before it starts = %d, want 400", status)
		}
	})
	t.Run("OK_WriteOff", func(t *testing.T) {
		b.must(http.StatusOK, "POST", "/bank/v1/loans/"+late.ID+"/write-off", map[string]any{"reason": "farmer left the district"}, &lv)
		if lv.State != lending.WrittenOff || lv.ClosedAt == nil {
			t.Errorf("state %s", lv.State)
		}
		status, _ := b.do("POST", "/bank/v1/loans/"+late.ID+"/repayments", map[string]any{"payer_reference": "AFTER", "amount": money(100), "paid_on": e.clock.Now().Format(time.DateOnly)}, nil)
		if status != http.StatusConflict {
			t.Errorf("repayment on a written-off loan = %d, want 409", status)
		}
		// The farmer's next score sees the write-off.
		var sc lending.ScoreView
		b.must(http.StatusOK, "POST", "/bank/v1/farmers/"+f.ID+"/score", map[string]any{"product_id": p.ID}, &sc)
		if sc.Band != "E" || sc.Limit != 0 {
			t.Errorf("score after a write-off: band %s limit %d", sc.Band, sc.Limit)
		}
	})
}

// TestVoucherDisbursement: the voucher is issued once, with an id derived
// from the loan, for the product's categories; a chain failure leaves the
// loan accepted and the retry issues the same voucher.
func TestVoucherDisbursement(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	p := b.product("Padi", intp(500), intp(300), "bullet")
	f, l := offered(t, e, b, p)
	f.accept(l.ID, l.Offer.TermsSHA256)
	e.vouch.fail = errors.New("gateway unavailable")
	status, raw := b.do("POST", "/bank/v1/loans/"+l.ID+"/disbursement", map[string]any{"method": "voucher"}, nil)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("disbursement with the chain down = %d %s, want 503", status, raw)
	}
	b.must(http.StatusOK, "GET", "/bank/v1/loans/"+l.ID, nil, &l)
	if l.State != lending.Accepted {
		t.Fatalf("state %s, want still accepted", l.State)
	}
	e.vouch.fail = nil
	b.must(http.StatusOK, "POST", "/bank/v1/loans/"+l.ID+"/disbursement", map[string]any{"method": "voucher"}, &l)
	var d struct {
		Method  string
		Voucher lending.VoucherIssued
	}
	json.Unmarshal(l.Disbursement, &d)
	v := e.vouch.issued[d.Voucher.ID]
	if l.State != lending.Disbursed || d.Method != "voucher" || v.LoanID != l.ID || v.Amount.Amount != l.Offer.Principal.Amount ||
		fmt.Sprint(v.Categories) != "[seed fertilizer]" || v.Region != "Central Java" || v.BankOrganizationID != b.ID {
		t.Errorf("loan %s disbursement %+v voucher %+v", l.State, d, v)
	}
}

// TestRescore: the book re-scored, each farmer through the gate; a
// farmer who revoked is skipped and counted; every score journaled.
func TestRescore(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	p := b.product("Padi", intp(500), intp(300), "bullet")
	var farmers []*farmer
	for range 3 {
		f, _ := disbursed(t, e, b, p)
		farmers = append(farmers, f)
	}
	farmers[2].revoke()
	var res lending.RescoreResult
	b.must(http.StatusOK, "POST", "/bank/v1/rescore", map[string]any{"product_id": p.ID}, &res)
	if res.Farmers != 3 || res.Scored != 2 || res.Denied != 1 || res.Journaled != 2 {
		t.Errorf("rescore %+v", res)
	}
	var journaled int
	e.pool.QueryRow(context.Background(), `SELECT count(*) FROM lending.scores WHERE loan_id IS NULL AND leaf_index IS NOT NULL`).Scan(&journaled)
	if journaled != 2 {
		t.Errorf("%d journaled re-scores, want 2", journaled)
	}
}
