package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// TestUpVouchersOnTheDevnet runs `tani up -target=vouchers` with no Fabric
// configuration: the devnet hosts the vouchers chaincode with the default
// organizations' roles registered, the module's client issues, redeems
// and settles as the bank and the distributor, the projection follows,
// and an operator's rebuild replays it from the chain.
func TestUpVouchersOnTheDevnet(t *testing.T) {
	r := apptest.MustStart(t, "-target=vouchers")
	runVoucherLife(t, r)
}

// TestUpVouchersOnARealNetwork is the same configured only by
// tani-TaniMSP.env from `tani network init` against the suite's real
// Fabric network.
func TestUpVouchersOnARealNetwork(t *testing.T) {
	n := localnettest.Shared(t)
	r := apptest.MustStartWithEnv(t, envFileVars(t, filepath.Join(n.C.Dir, "tani-TaniMSP.env")), "-target=vouchers")
	runVoucherLife(t, r)
}

func runVoucherLife(t *testing.T, r *apptest.Running) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := r.App.Vouchers()
	if c == nil {
		t.Fatal("the vouchers module provides no client")
	}
	dealer := uuid.NewString()
	req := vouchers.IssueRequest{
		ID: uuid.NewString(), FarmerID: uuid.NewString(), LoanID: uuid.NewString(),
		Amount: vouchers.Money{Minor: 450_000_00, Currency: "IDR"}, Categories: []string{"seed", "crop_protection"},
		Distributors: []string{"DistributorMSP"}, DistributorOrgs: []string{dealer}, ExpiresAt: time.Now().Add(60 * 24 * time.Hour),
	}
	if _, err := c.Issue(ctx, "BankMSP", req); err != nil {
		t.Fatalf("issue: %v", err)
	}
	redeem := vouchers.RedeemRequest{
		DistributorOrg: dealer, DeliveryID: uuid.NewString(), ReceiptHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Goods: []vouchers.Goods{{Category: "seed", Amount: vouchers.Money{Minor: 300_000_00, Currency: "IDR"}}},
	}
	// On a real network another organization's peer may endorse the next
	// transaction a moment before it has the block; the client re-endorses.
	if _, err := c.Redeem(ctx, "DistributorMSP", req.ID, redeem); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if _, err := c.Settle(ctx, "BankMSP", req.ID, "BRI-778812"); err != nil {
		t.Fatalf("settle: %v", err)
	}
	projected := func(status string) func() error {
		return func() error {
			p, err := vouchers.Get(ctx, r.DB, req.ID)
			if err != nil {
				return err
			}
			if p.Status != status {
				return fmt.Errorf("projected %s, want %s", p.Status, status)
			}
			return nil
		}
	}
	polltest.Eventually(t, 30*time.Second, projected(vouchers.StatusSettled))

	admin := func(method, path string) map[string]any {
		t.Helper()
		hreq, err := http.NewRequestWithContext(ctx, method, r.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		hreq.Header.Set("Authorization", "Bearer "+r.OperatorToken)
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, body)
		}
		return body
	}
	if pos := admin(http.MethodGet, "/admin/v1/vouchers/projection"); pos["block_number"].(float64) == 0 || pos["tx_id"] == "" {
		t.Errorf("projection position %v, want past the settlement", pos)
	}
	admin(http.MethodPost, "/admin/v1/vouchers/projection/rebuild")
	polltest.Eventually(t, 30*time.Second, projected(vouchers.StatusSettled))
	p, err := vouchers.Get(ctx, r.DB, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	onChain, err := c.Get(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Settlement == nil || p.Settlement.TxID != onChain.Settlement.TxID || p.Redemption.Amount.Minor != 300_000_00 {
		t.Errorf("rebuilt projection %+v, chain %+v", p.Voucher, onChain)
	}
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/admin/v1/vouchers/projection/rebuild", nil)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("rebuild without the operator token: %d, want 401", resp.StatusCode)
	}
}
