package lending_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/ledger/vouchers"
	"github.com/tani-platform/tani/services/lending"
)

// TestE2E_VoucherSettlement: the bank settles, through its API, a voucher
// a distributor redeemed on the chain (the devnet of `tani up`): it sees
// it among the vouchers awaiting settlement, pays it once under its
// reference (again under the same reference is a duplicate, under
// another a conflict), the chain holds the settlement, the projection
// and the distributor's settlements (API and portal page) show it paid,
// and voucher.settled is recorded for both. Bad requests are refused
// before the chain is asked and leave nothing behind.
func TestE2E_VoucherSettlement(t *testing.T) {
	p := mustProcess(t)
	chain := p.tani.App.Vouchers()
	if chain == nil {
		t.Fatal("no vouchers client: the vouchers module is not running")
	}
	ctx := context.Background()
	dist := p.org("distributor")
	otherBank := p.org("bank")

	farmer := uuid.NewString()
	issue := func(bankOrg string) string {
		t.Helper()
		id := uuid.NewString()
		if _, err := chain.Issue(ctx, "BankMSP", vouchers.IssueRequest{ID: id, BankOrg: bankOrg, FarmerID: farmer, LoanID: uuid.NewString(),
			Amount: vouchers.Money{Minor: 50_000_000, Currency: "IDR"}, Categories: []string{"seed", "fertilizer"},
			DistributorOrgs: []string{dist.id}, ExpiresAt: time.Now().Add(30 * 24 * time.Hour)}); err != nil {
			t.Fatalf("issue voucher: %v", err)
		}
		return id
	}
	redeem := func(id string) {
		t.Helper()
		if _, err := chain.Redeem(ctx, "DistributorMSP", id, vouchers.RedeemRequest{DistributorOrg: dist.id, DeliveryID: uuid.NewString(), LeafIndex: 7,
			ReceiptHash: strings.Repeat("ab", 32), Goods: []vouchers.Goods{{Category: "seed", Amount: vouchers.Money{Minor: 30_000_000, Currency: "IDR"}}}}); err != nil {
			t.Fatalf("redeem voucher %s: %v", id, err)
		}
	}
	voucher, unredeemed, foreign := issue(p.bank), issue(p.bank), issue(otherBank.id)
	redeem(voucher)
	redeem(foreign)

	// The bank sees the redeemed voucher awaiting settlement, and only it.
	var list struct{ Vouchers []lending.Voucher }
	polltest.Eventually(t, 30*time.Second, func() error {
		p.asBank("GET", "/bank/v1/vouchers", nil, &list, http.StatusOK)
		if len(list.Vouchers) != 1 || list.Vouchers[0].ID != voucher || list.Vouchers[0].Redemption == nil {
			return fmt.Errorf("awaiting settlement: %+v, want voucher %s redeemed", list.Vouchers, voucher)
		}
		return nil
	})
	if r := list.Vouchers[0].Redemption; r.Amount != (lending.Money{Amount: 30_000_000, Currency: "IDR"}) || r.DistributorOrg != dist.id {
		t.Fatalf("redemption %+v", r)
	}
	p.asBank("GET", "/bank/v1/vouchers?status=issued", nil, &list, http.StatusOK)
	if len(list.Vouchers) != 1 || list.Vouchers[0].ID != unredeemed {
		t.Errorf("issued vouchers %+v, want %s only", list.Vouchers, unredeemed)
	}

	pay := func(ref string, amount int64) map[string]any {
		return map[string]any{"payment_reference": ref, "amount": map[string]any{"amount": amount, "currency": "IDR"}}
	}
	settled := func() int {
		var n int
		if err := p.tani.DB.QueryRow(ctx, `SELECT count(*) FROM events.outbox WHERE type = 'voucher.settled'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	refused := []struct {
		name, path string
		body       any
		want       int
		says       string
	}{
		{"ErrUnknownVoucher", "/bank/v1/vouchers/" + uuid.NewString() + "/settlement", pay("TRF-1", 30_000_000), 404, "not found"},
		{"ErrAnotherBanksVoucher", "/bank/v1/vouchers/" + foreign + "/settlement", pay("TRF-1", 30_000_000), 404, "not found"},
		{"ErrNotRedeemed", "/bank/v1/vouchers/" + unredeemed + "/settlement", pay("TRF-1", 50_000_000), 409, "not redeemed"},
		{"ErrWrongAmount", "/bank/v1/vouchers/" + voucher + "/settlement", pay("TRF-1", 50_000_000), 400, "amount.amount"},
		{"ErrZeroAmount", "/bank/v1/vouchers/" + voucher + "/settlement", pay("TRF-1", 0), 400, "amount.amount"},
		{"ErrOtherCurrency", "/bank/v1/vouchers/" + voucher + "/settlement",
			map[string]any{"payment_reference": "TRF-1", "amount": map[string]any{"amount": 30_000_000, "currency": "USD"}}, 400, "amount.currency"},
		{"ErrNoReference", "/bank/v1/vouchers/" + voucher + "/settlement", pay("", 30_000_000), 400, "payment_reference"},
		{"ErrBadReference", "/bank/v1/vouchers/" + voucher + "/settlement", pay("<script>", 30_000_000), 400, "payment_reference"},
		{"ErrMalformedID", "/bank/v1/vouchers/NOT-A-UUID/settlement", pay("TRF-1", 30_000_000), 400, "id"},
		{"ErrUnknownField", "/bank/v1/vouchers/" + voucher + "/settlement",
			map[string]any{"payment_reference": "TRF-1", "amount": map[string]any{"amount": 30_000_000, "currency": "IDR"}, "paid": true}, 400, ""},
	}
	for _, r := range refused {
		t.Run(r.name, func(t *testing.T) {
			raw := p.asBank("POST", r.path, r.body, nil, r.want)
			if !strings.Contains(string(raw), r.says) {
				t.Errorf("got %s, want it to say %q", raw, r.says)
			}
			if n := settled(); n != 0 {
				t.Errorf("%d voucher.settled events after a refused settlement", n)
			}
			if v, err := chain.Get(ctx, voucher); err != nil || v.Status != vouchers.StatusRedeemed {
				t.Errorf("voucher on the chain: %+v %v, want still redeemed", v, err)
			}
		})
	}
	t.Run("ErrDistributorCredential", func(t *testing.T) {
		p.call("POST", "/bank/v1/vouchers/"+voucher+"/settlement", dist.token, pay("TRF-1", 30_000_000), nil, http.StatusForbidden)
	})

	// Paid once; the same payment again is a duplicate, another a conflict.
	var res lending.SettlementResult
	p.asBank("POST", "/bank/v1/vouchers/"+voucher+"/settlement", pay("BANK-PAY 2026/0001", 30_000_000), &res, http.StatusCreated)
	if res.Status != "settled" || res.Voucher.Status != vouchers.StatusSettled || res.Voucher.Settlement == nil ||
		res.Voucher.Settlement.PaymentReference != "BANK-PAY 2026/0001" || res.Voucher.Settlement.Amount.Amount != 30_000_000 {
		t.Fatalf("settlement %+v", res)
	}
	p.asBank("POST", "/bank/v1/vouchers/"+voucher+"/settlement", pay("BANK-PAY 2026/0001", 30_000_000), &res, http.StatusOK)
	if res.Status != "duplicate" || res.Voucher.Settlement.TxID == "" {
		t.Errorf("the same payment again: %+v, want a duplicate", res)
	}
	if raw := p.asBank("POST", "/bank/v1/vouchers/"+voucher+"/settlement", pay("BANK-PAY 2026/0002", 30_000_000), nil, http.StatusConflict); !strings.Contains(string(raw), "BANK-PAY 2026/0001") {
		t.Errorf("another payment: %s, want it to name the first", raw)
	}
	v, err := chain.Get(ctx, voucher)
	if err != nil || v.Status != vouchers.StatusSettled || v.Settlement.PaymentReference != "BANK-PAY 2026/0001" || v.Settlement.TxID != res.Voucher.Settlement.TxID {
		t.Fatalf("voucher on the chain: %+v %v", v, err)
	}

	// The projection already holds it: no longer awaiting, listed settled.
	p.asBank("GET", "/bank/v1/vouchers", nil, &list, http.StatusOK)
	if len(list.Vouchers) != 0 {
		t.Errorf("still awaiting settlement: %+v", list.Vouchers)
	}
	p.asBank("GET", "/bank/v1/vouchers?status=settled", nil, &list, http.StatusOK)
	if len(list.Vouchers) != 1 || list.Vouchers[0].Settlement == nil || list.Vouchers[0].Settlement.PaymentReference != "BANK-PAY 2026/0001" {
		t.Errorf("settled vouchers %+v", list.Vouchers)
	}
	p.asBank("GET", "/bank/v1/vouchers?status=paid", nil, nil, http.StatusBadRequest)

	// voucher.settled, once for the bank and once for the distributor.
	rows, err := p.tani.DB.Query(ctx, `SELECT organization_id::text, data->>'payment_reference' FROM events.outbox WHERE type = 'voucher.settled' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var org, ref string
		rows.Scan(&org, &ref)
		got[org] = ref
	}
	rows.Close()
	if len(got) != 2 || got[p.bank] != "BANK-PAY 2026/0001" || got[dist.id] != "BANK-PAY 2026/0001" || settled() != 2 {
		t.Errorf("voucher.settled events %v, want one for the bank and one for the distributor", got)
	}

	// The distributor sees it paid, in its API and on its portal page; the
	// other bank's voucher it redeemed is still owed.
	var st []struct {
		Currency    string
		Redeemed    int64
		Settled     int64
		SettledN    int `json:"vouchers_settled"`
		Outstanding int64
	}
	p.call("GET", "/distributor/v1/settlements", dist.token, nil, &st, http.StatusOK)
	if len(st) != 1 || st[0].Redeemed != 60_000_000 || st[0].Settled != 30_000_000 || st[0].SettledN != 1 || st[0].Outstanding != 30_000_000 {
		t.Errorf("distributor's settlements %+v, want 60,000,000 redeemed, 30,000,000 paid", st)
	}
	page := dist.portal(t, p, "/portal/settlements")
	row := regexp.MustCompile(`<tr><td>IDR</td>(.*?)</tr>`).FindStringSubmatch(page)
	if row == nil {
		t.Fatalf("no IDR row on the settlements page:\n%s", page)
	}
	cells := regexp.MustCompile(`<td class="n">([^<]*)</td>`).FindAllStringSubmatch(row[1], -1)
	var shown []string
	for _, c := range cells {
		shown = append(shown, c[1])
	}
	if want := "IDR 600,000.00|2|IDR 300,000.00|1|IDR 300,000.00|IDR 0.00"; strings.Join(shown, "|") != want {
		t.Errorf("settlements row %q, want cells %s (redeemed, vouchers, paid, vouchers paid, outstanding, awaiting the chain)", shown, want)
	}
}

// orgOf is an organization of the process with an API key and a signed-in
// admin's session cookie.
type orgOf struct {
	id, token string
	session   *http.Cookie
}

// org creates an organization of kind with an API key and an admin user.
func (p *process) org(kind string) orgOf {
	p.t.Helper()
	var o orgOf
	var org struct{ ID string }
	p.call("POST", "/admin/v1/organizations", p.tani.OperatorToken, map[string]any{"name": kind + " " + uuid.NewString()[:8], "kind": kind}, &org, http.StatusCreated)
	var key struct{ Token string }
	p.call("POST", "/admin/v1/organizations/"+org.ID+"/api-keys", p.tani.OperatorToken, map[string]any{"name": "test"}, &key, http.StatusCreated)
	user := "u" + strings.ReplaceAll(uuid.NewString()[:13], "-", "")
	p.call("POST", "/admin/v1/organizations/"+org.ID+"/users", p.tani.OperatorToken,
		map[string]any{"username": user, "name": "Ibu Sari", "role": "admin", "password": "correct horse battery"}, nil, http.StatusCreated)
	b, _ := json.Marshal(map[string]string{"username": user, "password": "correct horse battery"})
	resp, err := http.Post(p.tani.URL+"/portal/sign-in", "application/json", bytes.NewReader(b))
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "tani_session" {
			o.session = c
		}
	}
	if resp.StatusCode != http.StatusOK || o.session == nil {
		p.t.Fatalf("sign in: %d, session %v", resp.StatusCode, o.session)
	}
	o.id, o.token = org.ID, key.Token
	return o
}

// portal fetches a portal page as o's signed-in admin.
func (o orgOf) portal(t *testing.T, p *process, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", p.tani.URL+path, nil)
	req.AddCookie(o.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}
