package vouchers

import (
	"testing"
	"time"
)

func TestTermsChanged(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	issued := Voucher{ID: "v", Status: StatusIssued, Issuer: "BankMSP", Amount: Money{Minor: 100, Currency: "KES"}, Categories: []string{"seed"}, ExpiresAt: at.Add(time.Hour), IssuedAt: at, IssueTxID: "t1"}
	redeemed := issued
	redeemed.Status = StatusRedeemed
	redeemed.Redemption = &Redemption{Distributor: "DistributorMSP", DeliveryID: "d", Amount: Money{Minor: 90, Currency: "KES"}, RedeemedAt: at, TxID: "t2"}
	settled := redeemed
	settled.Status = StatusSettled
	settled.Settlement = &Settlement{PaymentReference: "p", TxID: "t3"}
	for _, tc := range []struct {
		name      string
		old, next Voucher
		want      string
	}{
		{"OK_Redeemed", issued, redeemed, ""},
		{"OK_Settled", redeemed, settled, ""},
		{"ErrAmountRaised", issued, func() Voucher { v := redeemed; v.Amount.Minor = 1000; return v }(), "issued terms"},
		{"ErrExpiryMoved", issued, func() Voucher { v := redeemed; v.ExpiresAt = at.Add(48 * time.Hour); return v }(), "issued terms"},
		{"ErrUnredeemed", redeemed, issued, "status redeemed → issued, redemption"},
		{"ErrRedemptionRewritten", redeemed, func() Voucher {
			v := settled
			r := *v.Redemption
			r.Amount.Minor = 99
			v.Redemption = &r
			return v
		}(), "redemption"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := termsChanged(&tc.old, &tc.next); got != tc.want {
				t.Errorf("termsChanged = %q, want %q", got, tc.want)
			}
		})
	}
}
