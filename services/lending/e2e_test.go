package lending_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/app/cli"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
	"github.com/tani-platform/tani/services/lending"
)

var fieldLoc = client.Location{Lat: -7.2505, Lon: 110.4005, AccuracyM: 4}

// process is a whole Tani process (`tani up`) with a bank and an agent.
type process struct {
	t     *testing.T
	tani  *apptest.Running
	agent *clienttest.Agent
	bank  string // organization id
	token string // the bank's API key
}

func mustProcess(t *testing.T) *process {
	t.Helper()
	tani := apptest.MustStart(t, "-log.level=info", "-ledger.checkpoint-interval=100ms", "-anchor.interval=100ms", "-lending.servicing-interval=200ms")
	p := &process{t: t, tani: tani, agent: clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")}
	var org struct{ ID string }
	p.call("POST", "/admin/v1/organizations", tani.OperatorToken, map[string]any{"name": "Bank Rakyat Tani " + uuid.NewString()[:8], "kind": "bank"}, &org, http.StatusCreated)
	var key struct{ Token string }
	p.call("POST", "/admin/v1/organizations/"+org.ID+"/api-keys", tani.OperatorToken, map[string]any{"name": "credit engine"}, &key, http.StatusCreated)
	p.bank, p.token = org.ID, key.Token
	return p
}

func (p *process) call(method, path, token string, in, out any, want int) []byte {
	p.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.tani.URL+path, body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if want != 0 && resp.StatusCode != want {
		p.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return raw
}

func (p *process) asBank(method, path string, in, out any, want int) []byte {
	p.t.Helper()
	return p.call(method, path, p.token, in, out, want)
}

// sync signs and syncs one record from the agent's phone; it must be
// accepted.
func (p *process) sync(typ string, payload map[string]any) string {
	p.t.Helper()
	raw, id, err := p.agent.Record(record.Type(typ), time.Now().Add(-time.Minute), fieldLoc, payload)
	if err != nil {
		p.t.Fatal(err)
	}
	res, err := p.agent.Sync(context.Background(), []json.RawMessage{raw})
	if err != nil {
		p.t.Fatalf("sync %s: %v", typ, err)
	}
	if res[0].Status != "accepted" {
		p.t.Fatalf("sync %s: %+v, want accepted", typ, res[0])
	}
	return id
}

// syncRefused syncs a record that /sync must refuse, and returns the
// field errors.
func (p *process) syncRefused(typ string, payload map[string]any) string {
	p.t.Helper()
	raw, _, err := p.agent.Record(record.Type(typ), time.Now().Add(-time.Minute), fieldLoc, payload)
	if err != nil {
		p.t.Fatal(err)
	}
	_, err = p.agent.Sync(context.Background(), []json.RawMessage{raw})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		p.t.Fatalf("sync %s: got %v, want a 400", typ, err)
	}
	return apiErr.Error()
}

// verified waits until attest verified and journaled the record.
func (p *process) verified(id string) {
	p.t.Helper()
	polltest.Eventually(p.t, 60*time.Second, func() error {
		st, err := p.agent.Status(context.Background(), id)
		if err != nil {
			return err
		}
		if st.Status != "verified" {
			return fmt.Errorf("record %s is %s (%v)", id, st.Status, st.Reason)
		}
		return nil
	})
}

var smsCode = regexp.MustCompile(`(?:consent code is|code to accept is) (\d{6})`)

// lastCode is the newest code the development SMS sender logged.
func (p *process) lastCode(before int) string {
	p.t.Helper()
	var codes []string
	polltest.Eventually(p.t, 10*time.Second, func() error {
		codes = nil
		for _, line := range p.tani.Logs() {
			if m := smsCode.FindStringSubmatch(line); m != nil {
				codes = append(codes, m[1])
			}
		}
		if len(codes) <= before {
			return errors.New("no new SMS code")
		}
		return nil
	})
	return codes[len(codes)-1]
}

func (p *process) codes() int {
	n := 0
	for _, line := range p.tani.Logs() {
		if smsCode.MatchString(line) {
			n++
		}
	}
	return n
}

// loan waits until the bank's loan is in state.
func (p *process) loan(id string, state lending.State) lending.LoanView {
	p.t.Helper()
	var l lending.LoanView
	polltest.Eventually(p.t, 60*time.Second, func() error {
		l = lending.LoanView{}
		req, _ := http.NewRequest("GET", p.tani.URL+"/bank/v1/loans/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&l)
		if l.State != state {
			return fmt.Errorf("loan %s is %q (http %d), want %s", id, l.State, resp.StatusCode, state)
		}
		return nil
	})
	return l
}

// tani runs the tani command line in-process.
func (p *process) tani_(args ...string) (string, int) {
	var out strings.Builder
	code := cli.Main(context.Background(), args, &out, &out, func(string) string { return "" })
	return out.String(), code
}

// TestLoanLife_ThroughThePublicAPIs follows one loan from the field to
// repaid, through the agent's phone (mobile-api client) and the bank's
// API only: the farmer's records are attested, the farmer consents with a
// code, the agent applies, the bank's policy offers, the farmer accepts
// with a code sent with the terms, the bank disburses, the agent collects
// part and the bank receives the rest; the agreement's receipt then
// verifies offline and against the devnet's anchor, and so does the
// farmer's evidence bundle.
func TestLoanLife_ThroughThePublicAPIs(t *testing.T) {
	p := mustProcess(t)
	ctx := context.Background()
	farmer, plot := uuid.NewString(), uuid.NewString()
	now := time.Now()
	payloads := clienttest.Payloads(farmer, plot, now)
	payloads["plot.mapped"]["declared_area"] = map[string]any{"value": 1.22, "unit": "ha"}
	var farm []string
	for _, typ := range []string{"farmer.registered", "plot.mapped", "crop.planted", "input.applied", "harvest.recorded", "sale.recorded"} {
		id := p.sync(typ, payloads[typ])
		p.verified(id)
		farm = append(farm, id)
	}

	// The farmer consents to the bank, with the code sent to their phone.
	before := p.codes()
	challenge, err := p.agent.RequestOTP(ctx, farmer)
	if err != nil {
		t.Fatal(err)
	}
	p.verified(p.sync("consent.granted", map[string]any{
		"farmer_id": farmer, "consent_id": uuid.NewString(), "grantee_organization_id": p.bank,
		"scopes": []string{"plots", "crops", "inputs", "harvests", "sales", "credit"}, "expires_at": now.AddDate(0, 0, 170).UTC().Format(time.RFC3339),
		"otp_challenge_id": challenge, "otp_code": p.lastCode(before)}))

	// The bank's product: offers automatically from score 500.
	var product lending.Product
	p.asBank("POST", "/bank/v1/products", map[string]any{
		"name": "Kredit Usaha Tani padi", "crops": []string{"rice"}, "currency": "IDR", "min_amount": 100_000_00, "max_amount": 20_000_000_00,
		"fee_bps": 100, "interest_bps": 1800, "tenor_days": 240, "grace_days": 30, "repayment_style": "bullet", "ltv_bps": 5000,
		"auto_approve_min_score": 500, "auto_decline_below_score": 400, "offer_valid_days": 14,
	}, &product, http.StatusCreated)

	// The agent applies on the phone.
	loanID := uuid.NewString()
	t.Run("ErrApplicationForAnUnknownProduct", func(t *testing.T) {
		msg := p.syncRefused("loan.applied", map[string]any{"farmer_id": farmer, "loan_id": loanID, "product_id": uuid.NewString(),
			"amount": map[string]any{"amount": 5_000_000_00, "currency": "IDR"}, "purpose": "seed and fertilizer"})
		if !strings.Contains(msg, "product_id") {
			t.Errorf("got %s, want a payload.product_id error", msg)
		}
	})
	t.Run("ErrApplicationOutOfRange", func(t *testing.T) {
		msg := p.syncRefused("loan.applied", map[string]any{"farmer_id": farmer, "loan_id": loanID, "product_id": product.ID,
			"amount": map[string]any{"amount": 90_000_000_00, "currency": "IDR"}, "purpose": "seed and fertilizer"})
		if !strings.Contains(msg, "amount.amount") {
			t.Errorf("got %s, want a payload.amount.amount error", msg)
		}
	})
	applied := p.sync("loan.applied", map[string]any{"farmer_id": farmer, "loan_id": loanID, "product_id": product.ID,
		"amount": map[string]any{"amount": 5_000_000_00, "currency": "IDR"}, "purpose": "seed and fertilizer"})
	l := p.loan(loanID, lending.Offered)
	if l.ApplicationRecordID == nil || *l.ApplicationRecordID != applied || l.Decision == nil || *l.Decision.By != "policy" {
		t.Fatalf("offer %+v, want the policy's, from record %s", l, applied)
	}
	if l.Offer.DueOn != now.AddDate(0, 0, 50+30).Format(time.DateOnly) {
		t.Errorf("due on %s, want the expected harvest (in 50 days) plus 30 days' grace", l.Offer.DueOn)
	}

	// The farmer accepts, with a code sent together with the terms.
	offers, err := p.agent.FarmerLoans(ctx, farmer)
	if err != nil || len(offers) != 1 || offers[0].State != "offered" || *offers[0].TermsSHA256 != l.Offer.TermsSHA256 {
		t.Fatalf("phone sees %+v (%v), want the offer", offers, err)
	}
	before = p.codes()
	loanChallenge, offer, err := p.agent.RequestLoanOTP(ctx, farmer, loanID)
	if err != nil {
		t.Fatal(err)
	}
	code := p.lastCode(before)
	accept := map[string]any{"farmer_id": farmer, "loan_id": loanID, "terms_sha256": *offer.TermsSHA256, "otp_challenge_id": loanChallenge, "otp_code": code}
	t.Run("ErrAcceptanceWithAWrongCode", func(t *testing.T) {
		wrong := map[string]any{}
		for k, v := range accept {
			wrong[k] = v
		}
		wrong["otp_code"] = fmt.Sprintf("%06d", (atoi(code)+1)%1_000_000)
		if msg := p.syncRefused("loan.accepted", wrong); !strings.Contains(msg, "otp_code") {
			t.Errorf("got %s, want a payload.otp_code error", msg)
		}
	})
	t.Run("ErrAcceptanceWithAConsentCode", func(t *testing.T) {
		before := p.codes()
		consentChallenge, err := p.agent.RequestOTP(ctx, farmer)
		if err != nil {
			t.Fatal(err)
		}
		wrong := map[string]any{"farmer_id": farmer, "loan_id": loanID, "terms_sha256": *offer.TermsSHA256, "otp_challenge_id": consentChallenge, "otp_code": p.lastCode(before)}
		if msg := p.syncRefused("loan.accepted", wrong); !strings.Contains(msg, "otp_code") {
			t.Errorf("got %s, want a payload.otp_code error", msg)
		}
	})
	t.Run("ErrDisburseBeforeAcceptance", func(t *testing.T) {
		raw := p.asBank("POST", "/bank/v1/loans/"+loanID+"/disbursement", map[string]any{"method": "cash", "reference": "TRF-1"}, nil, http.StatusConflict)
		if !strings.Contains(string(raw), "cannot become disbursed") {
			t.Errorf("got %s", raw)
		}
	})
	accepted := p.sync("loan.accepted", accept)
	l = p.loan(loanID, lending.Accepted)
	if l.AcceptedRecordID == nil || *l.AcceptedRecordID != accepted {
		t.Fatalf("accepted by %v, want record %s", l.AcceptedRecordID, accepted)
	}

	// Disbursed in cash (see the report: the vouchers chaincode client is
	// on another branch); then the agent collects part, the bank the rest.
	p.asBank("POST", "/bank/v1/loans/"+loanID+"/disbursement", map[string]any{"method": "cash", "reference": "TRF-20261123-001"}, &l, http.StatusOK)
	first := l.Offer.TotalDue.Amount / 3
	collected := p.sync("repayment.collected", map[string]any{"farmer_id": farmer, "loan_id": loanID,
		"amount": map[string]any{"amount": first, "currency": "IDR"}, "payer_reference": "KWT-0001", "collected_on": now.Format(time.DateOnly)})
	polltest.Eventually(t, 60*time.Second, func() error {
		var rs struct{ Repayments []lending.Repayment }
		p.asBank("GET", "/bank/v1/loans/"+loanID+"/repayments", nil, &rs, http.StatusOK)
		if len(rs.Repayments) != 1 || rs.Repayments[0].RecordID == nil || *rs.Repayments[0].RecordID != collected {
			return fmt.Errorf("repayments %+v, want the agent's collection", rs.Repayments)
		}
		return nil
	})
	rest := map[string]any{"payer_reference": "TRF-IN-77", "amount": map[string]any{"amount": l.Offer.TotalDue.Amount - first, "currency": "IDR"}, "paid_on": now.Format(time.DateOnly)}
	var res lending.RepaymentResult
	p.asBank("POST", "/bank/v1/loans/"+loanID+"/repayments", rest, &res, http.StatusCreated)
	p.asBank("POST", "/bank/v1/loans/"+loanID+"/repayments", rest, &res, http.StatusOK) // the same again: a duplicate
	if res.Status != "duplicate" || res.LoanState != lending.Repaid || res.Balance.Amount != 0 {
		t.Fatalf("after repaying: %+v, want a duplicate on a repaid loan with no balance", res)
	}
	t.Run("ErrRepaymentOnARepaidLoan", func(t *testing.T) {
		p.asBank("POST", "/bank/v1/loans/"+loanID+"/repayments", map[string]any{"payer_reference": "TRF-IN-78",
			"amount": map[string]any{"amount": 1000, "currency": "IDR"}, "paid_on": now.Format(time.DateOnly)}, nil, http.StatusConflict)
	})

	// The loan's history: every state change journaled.
	var evs struct {
		Events []struct {
			Kind      string
			To        string
			LeafIndex *int64 `json:"leaf_index"`
		}
	}
	polltest.Eventually(t, 30*time.Second, func() error {
		p.asBank("GET", "/bank/v1/loans/"+loanID+"/events", nil, &evs, http.StatusOK)
		var kinds []string
		for _, e := range evs.Events {
			if e.LeafIndex == nil {
				return fmt.Errorf("%s not journaled yet", e.Kind)
			}
			kinds = append(kinds, e.Kind)
		}
		if want := "loan.applied loan.offered loan.agreement loan.disbursed loan.repaid"; strings.Join(kinds, " ") != want {
			t.Fatalf("history %v, want %s", kinds, want)
		}
		return nil
	})

	// The agreement: terms, the farmer's signed acceptance, receipts; its
	// receipt verifies offline and against the devnet anchor.
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ledger.pub")
	pub, err := os.ReadFile(filepath.Join(p.tani.DataDir, "ledger.pub"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, pub, 0o644)
	var ag lending.Agreement
	polltest.Eventually(t, 60*time.Second, func() error {
		p.asBank("GET", "/bank/v1/loans/"+loanID+"/agreement", nil, &ag, http.StatusOK)
		if ag.Entry.Receipt == nil || ag.Entry.Receipt.Anchor == nil {
			return errors.New("the agreement's checkpoint is not anchored yet")
		}
		return nil
	})
	if ag.TermsSHA256 != l.Offer.TermsSHA256 || ag.Acceptance.RecordID != accepted || ag.Acceptance.Receipt == nil {
		t.Fatalf("agreement %+v", ag)
	}
	var payload struct {
		Details struct {
			TermsSHA256        string `json:"terms_sha256"`
			AcceptanceRecordID string `json:"acceptance_record_id"`
		}
	}
	json.Unmarshal(ag.Entry.Payload, &payload)
	if payload.Details.TermsSHA256 != ag.TermsSHA256 || payload.Details.AcceptanceRecordID != accepted {
		t.Errorf("journaled agreement names terms %s and acceptance %s", payload.Details.TermsSHA256, payload.Details.AcceptanceRecordID)
	}
	receiptFile := filepath.Join(dir, "agreement.json")
	b, _ := json.Marshal(ag.Entry.Receipt)
	os.WriteFile(receiptFile, b, 0o644)
	fc := app.DevnetClientConfig(p.tani.DataDir, p.tani.App.FabricDevnetAddr())
	chain := []string{"-fabric.endpoint", fc.Endpoint, "-fabric.server-name", fc.ServerName, "-fabric.tls-ca-cert", fc.TLSCACert,
		"-fabric.msp-id", fc.MSPID, "-fabric.cert", fc.Cert, "-fabric.key-file", fc.Key}
	t.Run("OK_AgreementReceiptOffline", func(t *testing.T) {
		out, code := p.tani_("receipt", "verify", receiptFile, "-key", keyFile)
		if code != 0 || !strings.Contains(out, "OK: revision entry for record "+loanID) || !strings.Contains(out, "chain was NOT consulted") {
			t.Errorf("exit %d: %s", code, out)
		}
	})
	t.Run("OK_AgreementReceiptOnTheChain", func(t *testing.T) {
		out, code := p.tani_(append([]string{"receipt", "verify", receiptFile, "-key", keyFile}, chain...)...)
		if code != 0 || !strings.Contains(out, "the chain holds this checkpoint in tx "+ag.Entry.Receipt.Anchor.TxID) {
			t.Errorf("exit %d: %s", code, out)
		}
	})
	t.Run("OK_EvidenceBundleOnTheChain", func(t *testing.T) {
		var raw []byte
		polltest.Eventually(t, 60*time.Second, func() error {
			raw = p.asBank("GET", "/bank/v1/farmers/"+farmer+"/evidence-bundle", nil, nil, http.StatusOK)
			var b verify.Bundle
			json.Unmarshal(raw, &b)
			if b.Anchor == nil {
				return errors.New("the bundle's checkpoint is not anchored yet")
			}
			return nil
		})
		file := filepath.Join(dir, "bundle.json")
		os.WriteFile(file, raw, 0o644)
		out, code := p.tani_(append([]string{"receipt", "verify", file, "-key", keyFile}, chain...)...)
		if code != 0 || !strings.Contains(out, "the chain holds this checkpoint") {
			t.Fatalf("exit %d: %s", code, out)
		}
		// Every farm record, and the agreement, are in it.
		for _, id := range append(farm[1:], loanID) {
			if !strings.Contains(out, id) {
				t.Errorf("bundle lacks %s:\n%s", id, out)
			}
		}
	})
	t.Run("OK_ProfileCarriesTheReceipts", func(t *testing.T) {
		var prof lending.Profile
		p.asBank("GET", "/bank/v1/farmers/"+farmer+"/profile", nil, &prof, http.StatusOK)
		if prof.Land == nil || len(prof.Land.Plots) != 1 || prof.Land.Plots[0].Receipt == nil || prof.Land.Plots[0].Verification.Level != "gps_walk" {
			t.Fatalf("profile land %+v", prof.Land)
		}
		if len(prof.Loans) != 1 || prof.Loans[0].State != "repaid" || prof.Loans[0].Lender != "this bank" {
			t.Errorf("profile loans %+v", prof.Loans)
		}
		rb, _ := json.Marshal(prof.Harvests[0].Receipt)
		if res, err := verify.VerifyReceipt(rb, strings.TrimSpace(string(pub))); err != nil || res.Entry.RecordID != farm[4] {
			t.Errorf("harvest receipt: %v, %+v", err, res)
		}
	})
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
