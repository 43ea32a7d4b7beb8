package lending_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
	"github.com/tani-platform/tani/ledger/vouchers"
	"github.com/tani-platform/tani/services/lending"
)

// TestSettlement_Devnet settles through the banks' API on a fresh devnet.
func TestSettlement_Devnet(t *testing.T) {
	v := devnettest.MustVouchers(t, nil)
	runSettlement(t, v.Client, func(*testing.T) {})
}

// TestSettlement_Fabric settles through the banks' API on the suite's
// real Fabric network (skipped without one, failed under CI), where the
// settlement needs the issuing bank's and Tani's peers to endorse it, as
// the key's policy after the redemption says.
func TestSettlement_Fabric(t *testing.T) {
	n := localnettest.Shared(t)
	gw := n.ClientConfig("TaniMSP")
	gw.Chaincode = n.C.VouchersChaincode()
	var ids []vouchers.Identity
	for _, org := range []string{"TaniMSP", "BankMSP", "DistributorMSP"} {
		cert, key := n.C.ClientPaths(org)
		ids = append(ids, vouchers.Identity{MSPID: org, Cert: cert, Key: key})
	}
	c, err := vouchers.Dial(gw, ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	runSettlement(t, c, func(t *testing.T) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := n.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// runSettlement: the lending service, acting as BankMSP on chain (the
// adapter the composition root gives it) with the projection following
// the chain into its database, lists a redeemed voucher as awaiting
// settlement, refuses bad settlements before asking the chain, settles
// once on the chain, answers the same payment as a duplicate and another
// as a conflict, and records voucher.settled for the bank and the
// distributor.
func runSettlement(t *testing.T, chain *vouchers.Client, sync func(*testing.T)) {
	cv := lending.ChainVouchers{Client: chain, MSPID: "BankMSP"}
	e := mustEnv(t, func(d *lending.Deps) { d.Vouchers, d.Settler = cv, cv })
	ctx, cancel := context.WithCancel(context.Background())
	proj := vouchers.NewProjection(e.pool, chain, nil)
	done := make(chan error, 1)
	go func() { done <- proj.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	b, other := e.bank("Bank Tani"), e.bank("Bank Lain")
	dealer := uuid.NewString()
	issue := func(bankOrg string) string {
		t.Helper()
		id := uuid.NewString()
		if _, err := chain.Issue(ctx, "BankMSP", vouchers.IssueRequest{ID: id, BankOrg: bankOrg, FarmerID: uuid.NewString(), LoanID: uuid.NewString(),
			Amount: vouchers.Money{Minor: 40_000_000, Currency: "IDR"}, Categories: []string{"seed", "fertilizer"},
			DistributorOrgs: []string{dealer}, Region: "Central Java", ExpiresAt: time.Now().Add(30 * 24 * time.Hour)}); err != nil {
			t.Fatalf("issue: %v", err)
		}
		sync(t)
		return id
	}
	redeem := func(id string) {
		t.Helper()
		if _, err := chain.Redeem(ctx, "DistributorMSP", id, vouchers.RedeemRequest{DistributorOrg: dealer, DeliveryID: uuid.NewString(), LeafIndex: 3,
			ReceiptHash: strings.Repeat("ef", 32), Region: "Central Java",
			Goods: []vouchers.Goods{{Category: "fertilizer", Amount: vouchers.Money{Minor: 12_500_000, Currency: "IDR"}}}}); err != nil {
			t.Fatalf("redeem: %v", err)
		}
		sync(t)
	}
	voucher, unredeemed, foreign := issue(b.ID), issue(b.ID), issue(other.ID)
	redeem(voucher)
	redeem(foreign)

	var list struct{ Vouchers []lending.Voucher }
	polltest.Eventually(t, 60*time.Second, func() error {
		b.must(http.StatusOK, "GET", "/bank/v1/vouchers", nil, &list)
		if len(list.Vouchers) != 1 || list.Vouchers[0].ID != voucher {
			return fmt.Errorf("awaiting settlement: %+v, want %s", list.Vouchers, voucher)
		}
		return nil
	})
	pay := func(ref string, amount int64) map[string]any {
		return map[string]any{"payment_reference": ref, "amount": map[string]any{"amount": amount, "currency": "IDR"}}
	}
	events := func() int {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM events.outbox WHERE type = 'voucher.settled'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	b.must(http.StatusNotFound, "POST", "/bank/v1/vouchers/"+foreign+"/settlement", pay("TRF-9", 12_500_000), nil)
	b.must(http.StatusConflict, "POST", "/bank/v1/vouchers/"+unredeemed+"/settlement", pay("TRF-9", 40_000_000), nil)
	b.must(http.StatusBadRequest, "POST", "/bank/v1/vouchers/"+voucher+"/settlement", pay("TRF-9", 40_000_000), nil)
	if n := events(); n != 0 {
		t.Fatalf("%d voucher.settled events after refused settlements", n)
	}

	var res lending.SettlementResult
	b.must(http.StatusCreated, "POST", "/bank/v1/vouchers/"+voucher+"/settlement", pay("RTGS 20261201/7", 12_500_000), &res)
	sync(t)
	b.must(http.StatusOK, "POST", "/bank/v1/vouchers/"+voucher+"/settlement", pay("RTGS 20261201/7", 12_500_000), &res)
	if res.Status != "duplicate" || res.Voucher.Settlement == nil || res.Voucher.Settlement.Amount.Amount != 12_500_000 {
		t.Errorf("again: %+v, want a duplicate of the 12,500,000 settlement", res)
	}
	b.must(http.StatusConflict, "POST", "/bank/v1/vouchers/"+voucher+"/settlement", pay("RTGS 20261201/8", 12_500_000), nil)
	v, err := chain.Get(ctx, voucher)
	if err != nil || v.Status != vouchers.StatusSettled || v.Settlement.PaymentReference != "RTGS 20261201/7" {
		t.Fatalf("on the chain: %+v %v", v, err)
	}
	polltest.Eventually(t, 60*time.Second, func() error {
		b.must(http.StatusOK, "GET", "/bank/v1/vouchers?status=settled", nil, &list)
		if len(list.Vouchers) != 1 || list.Vouchers[0].Settlement == nil || list.Vouchers[0].Settlement.TxID != v.Settlement.TxID {
			return fmt.Errorf("settled: %+v", list.Vouchers)
		}
		return nil
	})
	var orgs []string
	rows, err := e.pool.Query(ctx, `SELECT organization_id::text FROM events.outbox WHERE type = 'voucher.settled' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var o string
		rows.Scan(&o)
		orgs = append(orgs, o)
	}
	rows.Close()
	if want := []string{b.ID, dealer}; len(orgs) != 2 || !(orgs[0] == want[0] && orgs[1] == want[1] || orgs[0] == want[1] && orgs[1] == want[0]) {
		t.Errorf("voucher.settled for %v, want the bank and the distributor %v", orgs, want)
	}
}
