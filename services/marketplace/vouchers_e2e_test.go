package marketplace_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/vouchers"
	"github.com/tani-platform/tani/services/marketplace"
)

// TestE2E_VoucherRedeemedOnVerifiedDelivery: a bank issues an input voucher
// on the chain (the devnet of `tani up`); the agent orders with it; only
// the verified delivery redeems it, once, with the delivery's journal
// leaf and receipt hash on the chain; the bank settles and the
// distributor's settlements say so. A second redemption, an expired
// voucher and a voucher for another distributor are refused by the chain
// itself, and the marketplace records the refusal.
func TestE2E_VoucherRedeemedOnVerifiedDelivery(t *testing.T) {
	s := mustScenario(t)
	chain := s.tani.App.Vouchers()
	if chain == nil {
		t.Fatal("no vouchers client: the vouchers module is not running")
	}
	ctx := context.Background()
	seed := s.product("Inpari 32 seed", "seed", "rice", 7500000, 50)
	issue := func(expires time.Time, distributorOrg string) string {
		t.Helper()
		id := uuid.NewString()
		_, err := chain.Issue(ctx, "BankMSP", vouchers.IssueRequest{ID: id, FarmerID: s.farmer, LoanID: uuid.NewString(),
			Amount: vouchers.Money{Minor: 50_000_000, Currency: "IDR"}, Categories: []string{"seed", "fertilizer"},
			DistributorOrgs: []string{distributorOrg}, ExpiresAt: expires})
		if err != nil {
			t.Fatalf("issue voucher: %v", err)
		}
		return id
	}
	// orderWith places, accepts and ships an order paid by voucher, then
	// proves its delivery and returns the delivery once projected.
	orderWith := func(voucher string, wait func()) marketplace.Delivery {
		t.Helper()
		orderID := uuid.NewString()
		s.decided(s.sync(record.TypeOrderPlaced, s.orderPayload(orderID, "voucher", voucher, seed)), "verified")
		polltest.Eventually(t, 20*time.Second, func() error {
			if code := s.d.call(t, s.tani, "POST", "/distributor/v1/orders/"+orderID+"/accept", nil, nil); code != 200 {
				return fmt.Errorf("accept: %d", code)
			}
			return nil
		})
		if code := s.d.call(t, s.tani, "POST", "/distributor/v1/orders/"+orderID+"/ship", nil, nil); code != 200 {
			t.Fatalf("ship: %d", code)
		}
		if wait != nil {
			wait()
		}
		payload := s.deliveryPayload(orderID, map[string]any{"product_id": seed.ID, "quantity": 2})
		synced := time.Now()
		del := s.sync(record.TypeDeliveryConfirmed, payload)
		s.decided(del, "verified")
		var d marketplace.Delivery
		polltest.Eventually(t, 30*time.Second, func() error {
			if code := s.d.call(t, s.tani, "GET", "/distributor/v1/deliveries/"+del, nil, &d); code != 200 {
				return fmt.Errorf("delivery not projected: %d", code)
			}
			if d.Redemption == "pending" {
				return fmt.Errorf("redemption pending: %s", d.RedemptionError)
			}
			return nil
		})
		// The issue's figure: delivery record synced → redeemed on the
		// chain (or refused by it), as the distributor's API sees it.
		t.Logf("delivery %s: synced to %s on the chain in %s", del, d.Redemption, time.Since(synced).Round(time.Millisecond))
		return d
	}

	voucher := issue(time.Now().Add(30*24*time.Hour), s.d.org)
	d := orderWith(voucher, nil)
	if d.Redemption != "redeemed" || d.RedemptionTx == "" {
		t.Fatalf("delivery = %+v, want redeemed", d)
	}
	v, err := chain.Get(ctx, voucher)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != vouchers.StatusRedeemed || v.Redemption.DeliveryID != d.RecordID || v.Redemption.DistributorOrg != s.d.org ||
		v.Redemption.LeafIndex != uint64(d.LeafIndex) || v.Redemption.ReceiptHash != d.ReceiptSHA256 || v.Redemption.TxID != d.RedemptionTx {
		t.Errorf("chain voucher = %+v (redemption %+v), delivery %+v", v, v.Redemption, d)
	}
	if v.Redemption.Amount.Minor != 2*seed.UnitPrice.Amount {
		t.Errorf("redeemed %d, want %d", v.Redemption.Amount.Minor, 2*seed.UnitPrice.Amount)
	}

	t.Run("ErrSecondRedemption", func(t *testing.T) {
		d2 := orderWith(voucher, nil)
		if d2.Redemption != "refused" || !strings.Contains(d2.RedemptionError, "redeemed") {
			t.Errorf("second redemption: %+v", d2)
		}
	})
	other := mustDistributor(t, s.tani)
	t.Run("ErrWrongDistributor", func(t *testing.T) {
		d3 := orderWith(issue(time.Now().Add(24*time.Hour), other.org), nil)
		if d3.Redemption != "refused" {
			t.Errorf("voucher of another distributor: %+v", d3)
		}
	})
	t.Run("ErrExpired", func(t *testing.T) {
		expires := time.Now().Add(3 * time.Second)
		d4 := orderWith(issue(expires, s.d.org), func() {
			polltest.Eventually(t, 10*time.Second, func() error {
				if time.Now().Before(expires.Add(100 * time.Millisecond)) {
					return fmt.Errorf("voucher not expired yet")
				}
				return nil
			})
		})
		if d4.Redemption != "refused" || !strings.Contains(d4.RedemptionError, "expire") {
			t.Errorf("expired voucher: %+v", d4)
		}
	})

	if _, err := chain.Settle(ctx, "BankMSP", voucher, "BANK-PAY-0001"); err != nil {
		t.Fatalf("settle: %v", err)
	}
	polltest.Eventually(t, 20*time.Second, func() error {
		var st []marketplace.Settlement
		if code := s.d.call(t, s.tani, "GET", "/distributor/v1/settlements", nil, &st); code != 200 {
			return fmt.Errorf("settlements: %d", code)
		}
		if len(st) != 1 || st[0].Redeemed != 2*seed.UnitPrice.Amount || st[0].Settled != st[0].Redeemed || st[0].Outstanding != 0 {
			return fmt.Errorf("settlements = %+v", st)
		}
		return nil
	})
	t.Run("IsolationOtherDistributor", func(t *testing.T) {
		var st []marketplace.Settlement
		var vs struct{ Items []marketplace.VoucherOrder }
		if code := other.call(t, s.tani, "GET", "/distributor/v1/settlements", nil, &st); code != 200 || len(st) != 0 {
			t.Errorf("another distributor's settlements: %d %+v", code, st)
		}
		if code := other.call(t, s.tani, "GET", "/distributor/v1/vouchers", nil, &vs); code != 200 || len(vs.Items) != 0 {
			t.Errorf("another distributor's vouchers: %d %+v", code, vs)
		}
	})
}
