package record_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/record"
)

func orderPayload() map[string]any {
	return map[string]any{
		"farmer_id": uuid.NewString(), "order_id": uuid.NewString(), "distributor_id": uuid.NewString(),
		"items": []any{
			map[string]any{"product_id": uuid.NewString(), "quantity": 2, "unit_price": map[string]any{"amount": 7500000, "currency": "IDR"}},
			map[string]any{"product_id": uuid.NewString(), "quantity": 5, "unit_price": map[string]any{"amount": 1200000, "currency": "IDR"}},
		},
		"payment": "cash", "total": map[string]any{"amount": 21000000, "currency": "IDR"},
	}
}

func deliveryPayload() map[string]any {
	return map[string]any{
		"farmer_id": uuid.NewString(), "order_id": uuid.NewString(),
		"items":      []any{map[string]any{"product_id": uuid.NewString(), "quantity": 2}},
		"photo_hash": strings.Repeat("ab", 32), "received_on": "2026-11-22",
		"otp_challenge_id": uuid.NewString(), "otp_code": "123456",
	}
}

func TestCheck_Marketplace(t *testing.T) {
	mut := func(base func() map[string]any, typ string, f func(p map[string]any)) map[string]any {
		p := base()
		f(p)
		return envelope(typ, p)
	}
	item := func(p map[string]any, i int) map[string]any { return p["items"].([]any)[i].(map[string]any) }
	tests := []struct {
		name string
		rec  map[string]any
		want string // "" = valid
	}{
		{"OK_Order", envelope("order.placed", orderPayload()), ""},
		{"OK_OrderByVoucher", mut(orderPayload, "order.placed", func(p map[string]any) { p["payment"], p["voucher_id"] = "voucher", uuid.NewString() }), ""},
		{"OK_Delivery", envelope("delivery.confirmed", deliveryPayload()), ""},
		{"ErrZeroQuantity", mut(orderPayload, "order.placed", func(p map[string]any) { item(p, 0)["quantity"] = 0 }), "payload.items[0].quantity: must be > 0"},
		{"ErrNegativeQuantity", mut(orderPayload, "order.placed", func(p map[string]any) { item(p, 1)["quantity"] = -3 }), "payload.items[1].quantity: must be > 0"},
		{"ErrFractionalQuantity", mut(orderPayload, "order.placed", func(p map[string]any) { item(p, 1)["quantity"] = 1.5 }), "payload.items[1].quantity"},
		{"ErrOtherCurrency", mut(orderPayload, "order.placed", func(p map[string]any) {
			item(p, 1)["unit_price"] = map[string]any{"amount": 1200000, "currency": "USD"}
		}), "payload.items[1].unit_price.currency: is USD but the order is in IDR"},
		{"ErrTotalNotSum", mut(orderPayload, "order.placed", func(p map[string]any) { p["total"] = map[string]any{"amount": 1, "currency": "IDR"} }), "payload.total.amount: is 1 but the lines add up to 21000000"},
		{"ErrRepeatedProduct", mut(orderPayload, "order.placed", func(p map[string]any) { item(p, 1)["product_id"] = item(p, 0)["product_id"] }), "payload.items[1].product_id: repeats items[0]"},
		{"ErrNoItems", mut(orderPayload, "order.placed", func(p map[string]any) { p["items"] = []any{} }), "payload.items"},
		{"ErrVoucherMissing", mut(orderPayload, "order.placed", func(p map[string]any) { p["payment"] = "voucher" }), "payload.voucher_id: is required when payment is voucher"},
		{"ErrVoucherOnCash", mut(orderPayload, "order.placed", func(p map[string]any) { p["voucher_id"] = uuid.NewString() }), "payload.voucher_id: must be empty when payment is cash"},
		{"ErrPayment", mut(orderPayload, "order.placed", func(p map[string]any) { p["payment"] = "credit_card" }), "payload.payment: must be one of"},
		{"ErrUnknownMember", mut(orderPayload, "order.placed", func(p map[string]any) { item(p, 0)["discount"] = 5 }), "payload.items[0].discount: unknown field"},
		{"ErrDeliveryZero", mut(deliveryPayload, "delivery.confirmed", func(p map[string]any) { item(p, 0)["quantity"] = 0 }), "payload.items[0].quantity: must be > 0"},
		{"ErrDeliveryNoPhoto", mut(deliveryPayload, "delivery.confirmed", func(p map[string]any) { delete(p, "photo_hash") }), "payload.photo_hash: is required"},
		{"ErrDeliveryOTP", mut(deliveryPayload, "delivery.confirmed", func(p map[string]any) { p["otp_code"] = "12ab56" }), "payload.otp_code"},
		{"ErrDeliveryFuture", mut(deliveryPayload, "delivery.confirmed", func(p map[string]any) { p["received_on"] = "2027-01-01" }), "payload.received_on: is in the future"},
		{"ErrDeliveryRepeated", mut(deliveryPayload, "delivery.confirmed", func(p map[string]any) {
			p["items"] = append(p["items"].([]any), map[string]any{"product_id": item(p, 0)["product_id"], "quantity": 1})
		}), "payload.items[1].product_id: repeats items[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(check(t, tt.rec), "\n")
			if tt.want == "" {
				if got != "" {
					t.Fatalf("valid record refused: %s", got)
				}
				return
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("problems = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestMediaHashes_Delivery(t *testing.T) {
	p := &record.DeliveryConfirmed{PhotoHash: strings.Repeat("cd", 32)}
	if got := record.MediaHashes(p); len(got) != 1 || got[0] != p.PhotoHash {
		t.Errorf("MediaHashes = %v, want the photo: a delivery without its photo is incomplete", got)
	}
}
