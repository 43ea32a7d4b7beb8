package lending

import (
	"context"
	"fmt"

	"github.com/tani-platform/tani/ledger/vouchers"
)

// ChainVouchers issues and settles vouchers on the vouchers chaincode through the
// vouchers client, acting as the banks' MSP: the chain records the Tani
// organization of the issuing bank inside it (bank_org). The composition
// root passes it as Deps.Vouchers when the vouchers module runs.
type ChainVouchers struct {
	Client *vouchers.Client
	// MSPID is the MSP the process issues vouchers as for banks
	// (-lending.bank-msp).
	MSPID string
}

// IssueVoucher implements VoucherIssuer. The client is idempotent by the
// voucher's id, so a retried disbursement finds the voucher issued; the
// chain's refusals come back in Tani's error vocabulary.
func (c ChainVouchers) IssueVoucher(ctx context.Context, v VoucherIssue) (VoucherIssued, error) {
	out, err := c.Client.Issue(ctx, c.MSPID, vouchers.IssueRequest{
		ID: v.ID, BankOrg: v.BankOrganizationID, FarmerID: v.FarmerID, LoanID: v.LoanID,
		Amount: vouchers.Money{Minor: v.Amount.Amount, Currency: v.Amount.Currency}, Categories: v.Categories, Region: v.Region, ExpiresAt: v.ExpiresAt,
	})
	if err != nil {
		return VoucherIssued{}, err
	}
	if out == nil {
		return VoucherIssued{}, fmt.Errorf("vouchers: issue %s returned no voucher", v.ID)
	}
	return VoucherIssued{ID: out.ID, TxID: out.IssueTxID, Status: out.Status}, nil
}

// Voucher implements VoucherSettler: the voucher as the chain holds it.
func (c ChainVouchers) Voucher(ctx context.Context, id string) (*vouchers.Voucher, error) {
	return c.Client.Get(ctx, id)
}

// SettleVoucher implements VoucherSettler, acting as the banks' MSP (the
// issuer of every voucher lending issues). The client is idempotent by
// payment reference.
func (c ChainVouchers) SettleVoucher(ctx context.Context, id, paymentReference string) (*vouchers.Voucher, error) {
	return c.Client.Settle(ctx, c.MSPID, id, paymentReference)
}
