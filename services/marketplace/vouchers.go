package marketplace

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// VoucherOrder is a voucher presented for an order: the order, what was
// delivered under it and where its redemption stands.
type VoucherOrder struct {
	VoucherID   string     `json:"voucher_id"`
	OrderID     string     `json:"order_id"`
	FarmerID    string     `json:"farmer_id"`
	OrderStatus string     `json:"order_status"`
	Total       Money      `json:"order_total"`
	Delivered   Money      `json:"delivered_value"`
	Redemption  string     `json:"redemption"` // awaiting_delivery, pending, redeemed, refused
	TxID        string     `json:"redemption_tx,omitempty"`
	Error       string     `json:"redemption_error,omitempty"`
	RedeemedAt  *time.Time `json:"redeemed_at,omitempty"`
	DeliveryID  string     `json:"delivery_id,omitempty"`
	seq         int64
}

// VoucherOrders lists org's voucher-paid orders, newest first.
func (s *Service) VoucherOrders(ctx context.Context, org, cursor string, limit int) (Page[VoucherOrder], error) {
	cur, limit, err := pageArgs(cursor, limit)
	if err != nil {
		return Page[VoucherOrder]{}, err
	}
	rows, err := s.readPool.Query(ctx, `
		SELECT o.voucher_id::text, o.order_id::text, o.farmer_id::text, o.status, o.total, o.currency, o.seq,
		       coalesce(d.value, 0), coalesce(d.redemption, 'awaiting_delivery'), coalesce(d.redemption_tx, ''), coalesce(d.redemption_error, ''),
		       d.redeemed_at, coalesce(d.record_id::text, '')
		FROM marketplace.orders o
		LEFT JOIN LATERAL (SELECT * FROM marketplace.deliveries d WHERE d.order_id = o.order_id ORDER BY seq DESC LIMIT 1) d ON true
		WHERE o.distributor_id = $1 AND o.voucher_id IS NOT NULL AND ($2 = 0 OR o.seq < $2)
		ORDER BY o.seq DESC LIMIT $3`, org, cur, limit+1)
	if err != nil {
		return Page[VoucherOrder]{}, fmt.Errorf("list vouchers: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (VoucherOrder, error) {
		var v VoucherOrder
		err := r.Scan(&v.VoucherID, &v.OrderID, &v.FarmerID, &v.OrderStatus, &v.Total.Amount, &v.Total.Currency, &v.seq,
			&v.Delivered.Amount, &v.Redemption, &v.TxID, &v.Error, &v.RedeemedAt, &v.DeliveryID)
		v.Delivered.Currency = v.Total.Currency
		return v, err
	})
	if err != nil {
		return Page[VoucherOrder]{}, fmt.Errorf("list vouchers: %w", err)
	}
	return paginate(items, limit, func(v VoucherOrder) int64 { return v.seq }), nil
}

// Settlement sums, per currency, what org redeemed on vouchers (what the
// issuing banks owe it), what they paid, and what is outstanding.
type Settlement struct {
	Currency    string `json:"currency"`
	Redeemed    int64  `json:"redeemed"`
	Vouchers    int    `json:"vouchers_redeemed"`
	Settled     int64  `json:"settled"`
	SettledN    int    `json:"vouchers_settled"`
	Outstanding int64  `json:"outstanding"`
	Pending     int64  `json:"pending_redemption"`
}

// Settlements is org's settlement position by currency.
func (s *Service) Settlements(ctx context.Context, org string) ([]Settlement, error) {
	rows, err := s.readPool.Query(ctx, settlementsSQL, org)
	if err != nil {
		return nil, fmt.Errorf("settlements: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Settlement, error) {
		var x Settlement
		err := r.Scan(&x.Currency, &x.Redeemed, &x.Vouchers, &x.Settled, &x.SettledN, &x.Pending)
		x.Outstanding = x.Redeemed - x.Settled
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("settlements: %w", err)
	}
	if out == nil {
		out = []Settlement{}
	}
	return out, nil
}

// settlementsSQL reads the chain's projection of the vouchers this
// distributor redeemed (vouchers.vouchers, rebuilt from chaincode events:
// the chain, not the marketplace, says what was redeemed and settled) and
// the marketplace's redemptions still waiting for the chain.
const settlementsSQL = `
WITH chain AS (
    SELECT currency, sum(redeemed_minor) AS r, count(*) AS n, coalesce(sum(settled_minor), 0) AS s, count(settled_at) AS sn
    FROM vouchers.vouchers WHERE distributor_org = $1 AND status <> 'issued' GROUP BY currency),
pend AS (
    SELECT currency::text AS currency, sum(value) AS p FROM marketplace.deliveries
    WHERE distributor_id = $1 AND redemption = 'pending' GROUP BY currency)
SELECT coalesce(chain.currency, pend.currency), coalesce(r, 0)::bigint, coalesce(n, 0)::int, coalesce(s, 0)::bigint, coalesce(sn, 0)::int, coalesce(p, 0)::bigint
FROM chain FULL JOIN pend ON pend.currency = chain.currency ORDER BY 1`
