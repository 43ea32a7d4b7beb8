package lending

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// VoucherSettler reads vouchers on the chain and settles redeemed ones as
// the banks' MSP (the vouchers chaincode's Settle, which the issuing bank
// alone may call). Settling must be idempotent by payment reference: the
// same voucher settled again under the same reference returns it. The
// composition root adapts the vouchers client to it (ChainVouchers).
type VoucherSettler interface {
	Voucher(ctx context.Context, id string) (*vouchers.Voucher, error)
	SettleVoucher(ctx context.Context, id, paymentReference string) (*vouchers.Voucher, error)
}

// Voucher is an input voucher of the bank's as the chain holds it: what
// it was issued for, the delivery that redeemed it and the bank's payment.
type Voucher struct {
	ID         string             `json:"id"`
	Status     string             `json:"status"` // issued, redeemed, settled
	LoanID     string             `json:"loan_id"`
	FarmerID   string             `json:"farmer_id"`
	Amount     Money              `json:"amount"`
	Categories []string           `json:"categories"`
	Region     string             `json:"region,omitempty"`
	ExpiresAt  time.Time          `json:"expires_at"`
	IssuedAt   time.Time          `json:"issued_at"`
	IssueTxID  string             `json:"issue_tx_id"`
	Redemption *VoucherRedemption `json:"redemption"`
	Settlement *VoucherSettlement `json:"settlement"`
}

// VoucherRedemption is the delivery that redeemed a voucher: what the bank
// owes the distributor.
type VoucherRedemption struct {
	DistributorMSP string    `json:"distributor_msp"`
	DistributorOrg string    `json:"distributor_org,omitempty"`
	DeliveryID     string    `json:"delivery_id"`
	LeafIndex      uint64    `json:"delivery_leaf_index"`
	ReceiptSHA256  string    `json:"delivery_receipt_sha256"`
	Amount         Money     `json:"amount"`
	RedeemedAt     time.Time `json:"redeemed_at"`
	TxID           string    `json:"tx_id"`
}

// VoucherSettlement is the bank's payment of a redeemed voucher.
type VoucherSettlement struct {
	PaymentReference string    `json:"payment_reference"`
	Amount           Money     `json:"amount"`
	SettledAt        time.Time `json:"settled_at"`
	TxID             string    `json:"tx_id"`
}

func voucherView(v *vouchers.Voucher) Voucher {
	out := Voucher{ID: v.ID, Status: v.Status, LoanID: v.LoanID, FarmerID: v.FarmerID, Amount: money(v.Amount), Categories: v.Categories,
		Region: v.Region, ExpiresAt: v.ExpiresAt, IssuedAt: v.IssuedAt, IssueTxID: v.IssueTxID}
	if r := v.Redemption; r != nil {
		out.Redemption = &VoucherRedemption{DistributorMSP: r.Distributor, DistributorOrg: r.DistributorOrg, DeliveryID: r.DeliveryID, LeafIndex: r.LeafIndex,
			ReceiptSHA256: r.ReceiptHash, Amount: money(r.Amount), RedeemedAt: r.RedeemedAt, TxID: r.TxID}
	}
	if st := v.Settlement; st != nil {
		out.Settlement = &VoucherSettlement{PaymentReference: st.PaymentReference, Amount: money(st.Amount), SettledAt: st.SettledAt, TxID: st.TxID}
	}
	if out.Categories == nil {
		out.Categories = []string{}
	}
	return out
}

func money(m vouchers.Money) Money { return Money{Amount: m.Minor, Currency: m.Currency} }

// listVouchers: GET /vouchers?status=: the bank's vouchers as the chain's
// projection holds them, newest issue first; by default the redeemed ones,
// which await the bank's settlement.
func (s *Service) listVouchers(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	status := c.QueryParam("status")
	if status == "" {
		status = vouchers.StatusRedeemed
	}
	limit, err := limitParam(c, 50, 500)
	if err != nil {
		return err
	}
	list, next, err := vouchers.List(c.Request().Context(), s.readPool, vouchers.Filter{BankOrg: bank.OrganizationID, Status: status,
		After: c.QueryParam("cursor"), Limit: limit})
	if err != nil {
		if fe, ok := apperr.As(err); ok && fe.Code == apperr.Invalid {
			// The list's own field names: "after" is this API's "cursor".
			for i := range fe.Fields {
				if fe.Fields[i].Field == "after" {
					fe.Fields[i].Field = "cursor"
				}
			}
		}
		return err
	}
	out := struct {
		Vouchers   []Voucher `json:"vouchers"`
		NextCursor string    `json:"next_cursor,omitempty"`
	}{Vouchers: make([]Voucher, 0, len(list)), NextCursor: next}
	for i := range list {
		out.Vouchers = append(out.Vouchers, voucherView(&list[i].Voucher))
	}
	return c.JSON(http.StatusOK, out)
}

// SettlementRequest is the bank's payment of a redeemed voucher: its own
// reference for the transfer (the idempotency key) and the amount, which
// must be the amount redeemed.
type SettlementRequest struct {
	PaymentReference string `json:"payment_reference" validate:"required,max=128"`
	Amount           Money  `json:"amount"`
}

// SettlementResult is a settlement's answer: "settled" the first time,
// "duplicate" for the same payment again.
type SettlementResult struct {
	Status  string  `json:"status"`
	Voucher Voucher `json:"voucher"`
}

// projectionWait bounds how long a settlement waits for the projection
// (vouchers.voucher_states, fed by the chain's events) to hold it, so
// that the bank's next listing and the distributor's settlements already
// show it paid. The chain has committed by then; past the bound the answer
// is the same and the projection catches up on its own.
const projectionWait = 5 * time.Second

// settleVoucher: POST /vouchers/{id}/settlement. The bank says it paid the
// distributor for a redeemed voucher; Tani records it on the chain as the
// bank (the chaincode's Settle), and tells the bank and the distributor
// (voucher.settled). Everything is checked before the chain is asked, so
// a refused request writes nothing anywhere.
func (s *Service) settleVoucher(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	var req SettlementRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	if !vouchers.ValidPaymentReference(req.PaymentReference) {
		return apperr.Fields("invalid settlement", apperr.FieldError{Field: "payment_reference",
			Message: "must be 1 to 128 letters, digits, spaces or . _ : / # -, starting with a letter or digit"})
	}
	if s.settler == nil {
		return apperr.Errorf(apperr.Unavailable, "vouchers are not configured in this deployment (no vouchers chaincode client)")
	}
	ctx := c.Request().Context()
	v, err := s.settler.Voucher(ctx, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && v.BankOrg != bank.OrganizationID) {
		// Another bank's voucher is as unknown as one that does not exist.
		return apperr.Errorf(apperr.NotFound, "voucher %s not found", id)
	}
	if err != nil {
		return err
	}
	status := "settled"
	switch v.Status {
	case vouchers.StatusIssued:
		return apperr.Errorf(apperr.Conflict, "voucher %s is not redeemed yet: it is settled once a verified delivery has redeemed it", id)
	case vouchers.StatusSettled:
		if v.Settlement.PaymentReference != req.PaymentReference {
			return apperr.Errorf(apperr.Conflict, "voucher %s is already settled, under payment reference %q", id, v.Settlement.PaymentReference)
		}
		status = "duplicate"
	}
	owed := money(v.Redemption.Amount)
	switch {
	case req.Amount.Currency != owed.Currency:
		return apperr.Fields("invalid settlement", apperr.FieldError{Field: "amount.currency", Message: "must be " + owed.Currency + ", the redeemed amount's currency"})
	case req.Amount.Amount != owed.Amount:
		return apperr.Fields("invalid settlement", apperr.FieldError{Field: "amount.amount",
			Message: fmt.Sprintf("must be %d, the amount redeemed (a voucher is settled in full)", owed.Amount)})
	}
	if status == "settled" {
		if v, err = s.settler.SettleVoucher(ctx, id, req.PaymentReference); err != nil {
			return err
		}
		if v.Settlement == nil || v.Settlement.PaymentReference != req.PaymentReference {
			return fmt.Errorf("settle voucher %s: the chain returned no settlement under %q", id, req.PaymentReference)
		}
	}
	// Recorded again for a duplicate: the first answer may have been lost
	// after the chain committed, before the events were (their ids are
	// derived, so a second recording changes nothing).
	if err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return recordSettledEvents(ctx, tx, v) }); err != nil {
		return err
	}
	s.awaitProjection(ctx, id, v.Settlement.TxID)
	code := http.StatusCreated
	if status == "duplicate" {
		code = http.StatusOK
	}
	return c.JSON(code, SettlementResult{Status: status, Voucher: voucherView(v)})
}

// voucherSettledData is what voucher.settled carries: ids and the payment,
// never the farmer's data.
type voucherSettledData struct {
	VoucherID        string `json:"voucher_id"`
	LoanID           string `json:"loan_id"`
	DeliveryID       string `json:"delivery_id"`
	PaymentReference string `json:"payment_reference"`
	Amount           Money  `json:"amount"`
	TxID             string `json:"tx_id"`
}

// recordSettledEvents tells the issuing bank and the redeeming distributor
// that v was settled.
func recordSettledEvents(ctx context.Context, tx pgx.Tx, v *vouchers.Voucher) error {
	data := voucherSettledData{VoucherID: v.ID, LoanID: v.LoanID, DeliveryID: v.Redemption.DeliveryID, PaymentReference: v.Settlement.PaymentReference,
		Amount: money(v.Settlement.Amount), TxID: v.Settlement.TxID}
	var evs []events.Event
	for _, org := range []string{v.BankOrg, v.Redemption.DistributorOrg} {
		if org == "" {
			continue
		}
		evs = append(evs, events.Event{ID: events.DeriveID(events.VoucherSettled, v.ID+":"+org), Type: events.VoucherSettled, OrganizationID: org,
			FarmerID: v.FarmerID, OccurredAt: v.Settlement.SettledAt, Data: data})
	}
	return events.RecordAll(ctx, tx, evs)
}

// awaitProjection waits, at most projectionWait, until the projection
// holds voucher id's settlement txID.
func (s *Service) awaitProjection(ctx context.Context, id, txID string) {
	ctx, cancel := context.WithTimeout(ctx, projectionWait)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		var projected bool
		err := s.pool.QueryRow(ctx, `SELECT coalesce(settle_tx_id = $2, false) FROM vouchers.voucher_states WHERE id = $1`, id, txID).Scan(&projected)
		if err == nil && projected {
			return
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "read the vouchers projection", "voucher", id, "err", err)
		}
		select {
		case <-ctx.Done():
			s.logger.WarnContext(context.WithoutCancel(ctx), "voucher settled on the chain, not projected yet; the projection catches up from the chain's events",
				"voucher", id, "tx_id", txID)
			return
		case <-t.C:
		}
	}
}
