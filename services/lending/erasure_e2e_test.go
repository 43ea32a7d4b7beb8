package lending_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
	"github.com/tani-platform/tani/services/lending"
)

// TestE2E_PastScoreAndErasure: a bank reads a past score with the journal
// receipt of its entry (verifying offline), another bank does not; then
// the farmer is erased, and lending, an owner of farmer data, keeps the
// loan (the bank's contract) and the score's decision, but erases the
// evidence the score rested on, here and in the journal, and serves the
// score no more.
func TestE2E_PastScoreAndErasure(t *testing.T) {
	p := mustProcess(t)
	ctx := context.Background()
	farmer, plot := uuid.NewString(), uuid.NewString()
	now := time.Now()
	payloads := clienttest.Payloads(farmer, plot, now)
	for _, typ := range []string{"farmer.registered", "plot.mapped"} {
		p.verified(p.sync(typ, payloads[typ]))
	}
	before := p.codes()
	challenge, err := p.agent.RequestOTP(ctx, farmer)
	if err != nil {
		t.Fatal(err)
	}
	p.verified(p.sync("consent.granted", map[string]any{
		"farmer_id": farmer, "consent_id": uuid.NewString(), "grantee_organization_id": p.bank,
		"scopes": []string{"plots", "crops", "inputs", "harvests", "sales", "credit"}, "expires_at": now.AddDate(0, 0, 170).UTC().Format(time.RFC3339),
		"otp_challenge_id": challenge, "otp_code": p.lastCode(before)}))
	var product lending.Product
	p.asBank("POST", "/bank/v1/products", map[string]any{
		"name": "Kredit padi " + uuid.NewString()[:8], "crops": []string{"rice"}, "currency": "IDR", "min_amount": 100_000_00, "max_amount": 20_000_000_00,
		"fee_bps": 100, "interest_bps": 1800, "tenor_days": 240, "grace_days": 30, "repayment_style": "bullet", "ltv_bps": 5000, "offer_valid_days": 14,
	}, &product, http.StatusCreated)
	var score lending.ScoreView
	p.asBank("POST", "/bank/v1/farmers/"+farmer+"/score", map[string]any{"product_id": product.ID}, &score, http.StatusOK)
	var l lending.LoanView
	p.asBank("POST", "/bank/v1/loans", map[string]any{"farmer_id": farmer, "product_id": product.ID,
		"amount": map[string]any{"amount": 5_000_000_00, "currency": "IDR"}, "purpose": "seed and fertilizer"}, &l, http.StatusCreated)

	// The past score, as journaled, with a receipt that verifies offline.
	var past lending.PastScore
	p.asBank("GET", "/bank/v1/scores/"+score.ID, nil, &past, http.StatusOK)
	if past.ID != score.ID || past.FarmerID != farmer || past.ProductID != product.ID || past.ModelVersion != score.Model ||
		past.ModelSHA256 != score.ModelDigest || past.Entry.Receipt == nil || past.Purpose != "score" {
		t.Fatalf("past score %+v, want score %s of model %s", past, score.ID, score.Model)
	}
	var result struct {
		Score int
		Band  string
		Limit int64
	}
	json.Unmarshal(past.Result, &result)
	if result.Score != score.Score || result.Band != score.Band || result.Limit != score.Limit {
		t.Errorf("result %+v, computed %d %s %d", result, score.Score, score.Band, score.Limit)
	}
	if len(past.EvidenceLeaves) == 0 {
		t.Errorf("no evidence leaves: the score saw the farmer's verified records")
	}
	pub, err := os.ReadFile(filepath.Join(p.tani.DataDir, "ledger.pub"))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := json.Marshal(past.Entry.Receipt)
	if res, err := verify.VerifyReceipt(rb, strings.TrimSpace(string(pub))); err != nil || res.Entry.RecordID != score.ID || res.Entry.Kind != "credit.score" ||
		res.LeafIndex != uint64(past.Entry.LeafIndex) {
		t.Errorf("receipt: %v, %+v", err, res)
	}
	other := p.org("bank")
	t.Run("ErrAnotherBanksScore", func(t *testing.T) {
		p.call("GET", "/bank/v1/scores/"+score.ID, other.token, nil, nil, http.StatusNotFound)
	})
	t.Run("ErrUnknownScore", func(t *testing.T) {
		p.asBank("GET", "/bank/v1/scores/"+uuid.NewString(), nil, nil, http.StatusNotFound)
	})
	t.Run("ErrMalformedID", func(t *testing.T) {
		p.asBank("GET", "/bank/v1/scores/not-a-uuid", nil, nil, http.StatusBadRequest)
	})

	// The farmer asks to be forgotten.
	admin := client.NewAdmin(p.tani.URL, p.tani.OperatorToken)
	if _, err := admin.EraseFarmer(ctx, farmer, "data protection request, ticket 12", "Dewi (operator)"); err != nil {
		t.Fatal(err)
	}
	var st client.Erasure
	polltest.Eventually(t, 60*time.Second, func() error {
		if st, err = admin.FarmerErasure(ctx, farmer); err != nil {
			return err
		}
		if st.State != "complete" {
			return fmt.Errorf("erasure %s: %+v", st.State, st.Owners)
		}
		return nil
	})
	var erased struct {
		Scores    int `json:"scores"`
		LoansKept int `json:"loans_kept"`
		Journal   struct {
			Redacted []int64 `json:"redacted"`
		} `json:"journal"`
	}
	for _, o := range st.Owners {
		if o.Owner == "lending" {
			json.Unmarshal(o.Erased, &erased)
		}
	}
	// Two scores: the bank's, and the application's.
	if erased.Scores != 2 || erased.LoansKept != 1 || len(erased.Journal.Redacted) != 2 {
		t.Errorf("lending erased %+v, want 2 scores (and their 2 journal entries), 1 loan kept", erased)
	}

	t.Run("OK_ScoreNoLongerServed", func(t *testing.T) {
		if raw := p.asBank("GET", "/bank/v1/scores/"+score.ID, nil, nil, http.StatusNotFound); !strings.Contains(string(raw), "erased") {
			t.Errorf("got %s, want it to say the farmer was erased", raw)
		}
	})
	t.Run("OK_DecisionKeptEvidenceErased", func(t *testing.T) {
		var n, kept, withPayload, reasons int
		if err := p.tani.DB.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE score > 0 AND band <> '' AND erased_at IS NOT NULL),
			count(payload), count(retained_reasons) FROM lending.scores WHERE farmer_id = $1`, farmer).Scan(&n, &kept, &withPayload, &reasons); err != nil {
			t.Fatal(err)
		}
		if n != 2 || kept != 2 || withPayload != 0 || reasons != 2 {
			t.Errorf("scores: %d, %d with their decision, %d with evidence, %d with reason codes; want 2, 2, 0, 2", n, kept, withPayload, reasons)
		}
		var redacted int
		if err := p.tani.DB.QueryRow(ctx, `SELECT count(*) FROM ledger.entries e JOIN lending.scores s ON s.leaf_index = e.idx
			WHERE s.farmer_id = $1 AND e.payload IS NULL AND e.redacted_by IS NOT NULL`, farmer).Scan(&redacted); err != nil {
			t.Fatal(err)
		}
		if redacted != 2 {
			t.Errorf("%d score entries redacted in the journal, want 2", redacted)
		}
		// The old receipt still verifies: leaves commit to the payload's hash.
		if _, err := verify.VerifyReceipt(rb, strings.TrimSpace(string(pub))); err != nil {
			t.Errorf("the score's receipt no longer verifies: %v", err)
		}
	})
	t.Run("OK_LoanKept", func(t *testing.T) {
		var got lending.LoanView
		p.asBank("GET", "/bank/v1/loans/"+l.ID, nil, &got, http.StatusOK)
		if got.ID != l.ID || got.FarmerID != farmer {
			t.Errorf("loan %+v, want it kept", got)
		}
	})
	t.Run("ErrFarmerDataDenied", func(t *testing.T) {
		p.asBank("GET", "/bank/v1/farmers/"+farmer+"/profile", nil, nil, http.StatusForbidden)
		p.asBank("POST", "/bank/v1/farmers/"+farmer+"/score", map[string]any{"product_id": product.ID}, nil, http.StatusForbidden)
	})
}
