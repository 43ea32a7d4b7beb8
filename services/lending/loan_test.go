package lending_test

import (
	"context"
	"net/http"
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
	var leaf int64
	f.e.pool.QueryRow(ctx, `SELECT leaf_index FROM attest.records WHERE record_id = $1`, rec).Scan(&leaf)
	if err := f.e.svc.ApplyAttested(ctx, rec, &leaf); err != nil {
		f.e.tb.Fatal(err)
	}
	return rec
}

func TestLoanLife(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	p := b.product("Padi musim hujan", intp(500), intp(300), "bullet")
	f, _ := e.typical("Central Java")
	f.consent(b.ID)
	var l lending.LoanView
	b.must(http.StatusCreated, "POST", "/bank/v1/loans", map[string]any{"farmer_id": f.ID, "product_id": p.ID,
		"amount": map[string]any{"amount": 5_000_000_00, "currency": "IDR"}, "purpose": "seed and fertilizer"}, &l)
	if l.State != lending.Offered || l.Offer == nil {
		t.Fatalf("loan %+v, want offered", l)
	}
	t.Logf("offer: %+v decision %s", l.Offer, *l.Decision.Reason)
	f.accept(l.ID, l.Offer.TermsSHA256)
	b.must(http.StatusOK, "GET", "/bank/v1/loans/"+l.ID, nil, &l)
	if l.State != lending.Accepted {
		t.Fatalf("state %s, want accepted", l.State)
	}
	b.must(http.StatusOK, "POST", "/bank/v1/loans/"+l.ID+"/disbursement", map[string]any{"method": "cash", "reference": "TRF-1"}, &l)
	half := l.Offer.TotalDue.Amount / 2
	var r lending.RepaymentResult
	b.must(http.StatusCreated, "POST", "/bank/v1/loans/"+l.ID+"/repayments", map[string]any{"payer_reference": "P1", "amount": map[string]any{"amount": half, "currency": "IDR"}, "paid_on": time.Now().Format(time.DateOnly)}, &r)
	b.must(http.StatusOK, "POST", "/bank/v1/loans/"+l.ID+"/repayments", map[string]any{"payer_reference": "P1", "amount": map[string]any{"amount": half, "currency": "IDR"}, "paid_on": time.Now().Format(time.DateOnly)}, &r)
	b.must(http.StatusCreated, "POST", "/bank/v1/loans/"+l.ID+"/repayments", map[string]any{"payer_reference": "P2", "amount": map[string]any{"amount": l.Offer.TotalDue.Amount - half, "currency": "IDR"}, "paid_on": time.Now().Format(time.DateOnly)}, &r)
	if r.LoanState != lending.Repaid {
		t.Fatalf("state %s, want repaid", r.LoanState)
	}
	raw := b.must(http.StatusOK, "GET", "/bank/v1/loans/"+l.ID+"/agreement", nil, nil)
	t.Logf("agreement %d bytes", len(raw))
	raw = b.must(http.StatusOK, "GET", "/bank/v1/farmers/"+f.ID+"/profile", nil, nil)
	t.Logf("profile %s", raw[:min(len(raw), 3000)])
	raw = b.must(http.StatusOK, "GET", "/bank/v1/portfolio?group_by=crop", nil, nil)
	t.Logf("portfolio %s", raw)
}
