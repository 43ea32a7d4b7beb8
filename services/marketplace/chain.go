package marketplace

import (
	"context"
	"fmt"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// ChainVouchers redeems on the vouchers chaincode through the vouchers
// client, acting as the distributors' MSP: the chaincode records the
// redeeming Tani organization (DistributorOrg) inside it, and its
// key-level policies make the redemption need the distributor's and
// Tani's endorsements.
type ChainVouchers struct {
	Client *vouchers.Client
	// MSPID is the MSP the process acts as for distributors
	// (-marketplace.distributor-msp).
	MSPID string
}

// Redeem implements Vouchers. The client is idempotent by delivery, so a
// retry after a lost answer finds the redemption done; the chain's
// refusals (redeemed already, expired, wrong distributor, goods outside
// the voucher, missing endorsement) come back wrapping ErrVoucherRefused.
func (c ChainVouchers) Redeem(ctx context.Context, voucherID string, r Redemption) (string, error) {
	req := vouchers.RedeemRequest{DistributorOrg: r.DistributorOrg, DeliveryID: r.DeliveryID, LeafIndex: uint64(r.LeafIndex),
		ReceiptHash: r.ReceiptSHA256, Region: r.Region}
	for _, g := range r.Goods {
		req.Goods = append(req.Goods, vouchers.Goods{Category: g.Category, Amount: vouchers.Money{Minor: g.Minor, Currency: g.Currency}})
	}
	v, err := c.Client.Redeem(ctx, c.MSPID, voucherID, req)
	switch apperr.CodeOf(err) {
	case "":
	case apperr.Invalid, apperr.NotFound, apperr.Conflict, apperr.Forbidden:
		return "", fmt.Errorf("%w: %v", ErrVoucherRefused, err)
	default:
		return "", err
	}
	if v.Redemption == nil {
		return "", fmt.Errorf("voucher %s: the chain returned no redemption", voucherID)
	}
	return v.Redemption.TxID, nil
}
