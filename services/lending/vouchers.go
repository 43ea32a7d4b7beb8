package lending

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/apperr"
)

// VoucherIssuer issues an input voucher on Fabric (the vouchers
// chaincode, which distributors redeem against a verified delivery and the
// bank settles). It must be idempotent by VoucherIssue.ID: issuing the
// same voucher again returns it. The composition root adapts the vouchers
// chaincode client to it; lending never talks to Fabric itself.
type VoucherIssuer interface {
	IssueVoucher(ctx context.Context, v VoucherIssue) (VoucherIssued, error)
}

// VoucherIssue is a voucher to issue for a loan's disbursement in kind.
type VoucherIssue struct {
	ID                 string    // derived from the loan: a retry issues the same voucher
	LoanID             string    //
	FarmerID           string    //
	BankOrganizationID string    // the issuing bank
	Amount             Money     // the loan's principal
	Categories         []string  // what it may buy (the product's voucher categories)
	Region             string    // where the goods must be delivered ("" anywhere)
	ExpiresAt          time.Time // the first instant it no longer redeems
}

// VoucherIssued is where the chain holds the voucher.
type VoucherIssued struct {
	ID     string `json:"id"`
	TxID   string `json:"issue_tx_id"`
	Status string `json:"status"`
}

// voucherNamespace derives voucher ids from loan ids.
var voucherNamespace = uuid.MustParse("3c9f7e0a-5b1d-5c4e-8f2a-9d6b1e0c4a73")

// issueVoucher issues the voucher of l's disbursement: the principal, for
// the product's voucher categories, in the farmer's region, until expires.
// The id is derived from the loan, so a retried disbursement (the first
// one's commit lost) finds the voucher already issued.
func (s *Service) issueVoucher(ctx context.Context, l *loan, p *Product, expires time.Time) (VoucherIssued, error) {
	if len(p.VoucherCategories) == 0 {
		return VoucherIssued{}, apperr.Fields("invalid disbursement", apperr.FieldError{Field: "method",
			Message: "the product names no voucher categories: disburse in cash, or give the product voucher_categories"})
	}
	v := VoucherIssue{ID: uuid.NewSHA1(voucherNamespace, []byte(l.ID)).String(), LoanID: l.ID, FarmerID: l.FarmerID, BankOrganizationID: l.OrgID,
		Amount: Money{Amount: *l.Principal, Currency: l.Currency}, Categories: p.VoucherCategories, Region: l.Region, ExpiresAt: dayOf(expires).AddDate(0, 0, 1)}
	out, err := s.vouchers.IssueVoucher(ctx, v)
	if err != nil {
		if _, ok := apperr.As(err); ok {
			return VoucherIssued{}, err
		}
		return VoucherIssued{}, apperr.Wrap(apperr.Unavailable, err, "the voucher could not be issued on the chain; retry the disbursement (it is idempotent)")
	}
	if out.ID != v.ID {
		return VoucherIssued{}, fmt.Errorf("vouchers: issued %s for %s", out.ID, v.ID)
	}
	return out, nil
}
