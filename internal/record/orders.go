package record

import (
	"fmt"
	"math"
)

// Marketplace records: an input order an agent takes for a farmer, and the
// proof that the goods reached the farm. Both are signed on the device like
// every record, so an order and a delivery are attributable to an agent and
// a device, and a delivery that redeems a voucher can be proven to a bank.

// MaxOrderItems bounds the lines of an order or a delivery.
const MaxOrderItems = 50

// MaxPacks bounds the packs of one line: far above any smallholder order,
// low enough that a total in minor units never nears 2^53.
const MaxPacks = 100_000

// OrderPlaced is an order of inputs from a distributor for a farmer. Prices
// are the catalog's as the phone last saw them, in one currency; the total
// is their sum, so the farmer signs off on an amount, not on a formula.
type OrderPlaced struct {
	FarmerID      string      `json:"farmer_id" validate:"required,uuidlower"`
	OrderID       string      `json:"order_id" validate:"required,uuidlower"`
	DistributorID string      `json:"distributor_id" validate:"required,uuidlower"`
	PlotID        string      `json:"plot_id,omitempty" validate:"omitempty,uuidlower"`
	Items         []OrderItem `json:"items" validate:"required,min=1,max=50,dive"`
	Payment       string      `json:"payment" validate:"required,oneof=cash voucher"`
	VoucherID     string      `json:"voucher_id,omitempty" validate:"omitempty,uuidlower"`
	Total         Money       `json:"total" validate:"required"`
}

// OrderItem is one line of an order: packs of a catalog product at a unit
// price.
type OrderItem struct {
	ProductID string `json:"product_id" validate:"required,uuidlower"`
	Quantity  int64  `json:"quantity" validate:"gt=0,lte=100000"`
	UnitPrice Money  `json:"unit_price" validate:"required"`
}

// DeliveryConfirmed is the proof that goods of an order reached the
// farmer: where the agent's phone was (compared with the farmer's plots),
// what was received, a photo of the goods, and the one-time code the
// farmer received by SMS (so the farmer, not only the agent, confirms).
type DeliveryConfirmed struct {
	FarmerID       string          `json:"farmer_id" validate:"required,uuidlower"`
	OrderID        string          `json:"order_id" validate:"required,uuidlower"`
	Items          []DeliveredItem `json:"items" validate:"required,min=1,max=50,dive"`
	PhotoHash      string          `json:"photo_hash" validate:"required,sha256hex"`
	ReceivedOn     string          `json:"received_on" validate:"required,datetime=2006-01-02"`
	OTPChallengeID string          `json:"otp_challenge_id" validate:"required,uuidlower"`
	OTPCode        string          `json:"otp_code" validate:"required,len=6,numeric"`
}

// DeliveredItem is how many packs of a product the farmer received.
type DeliveredItem struct {
	ProductID string `json:"product_id" validate:"required,uuidlower"`
	Quantity  int64  `json:"quantity" validate:"gt=0,lte=100000"`
}

func (p *OrderPlaced) Farmer() string { return p.FarmerID }
func (p *OrderPlaced) Plot() string   { return p.PlotID }
func (p *OrderPlaced) Crop() string   { return "" }

func (p *DeliveryConfirmed) Farmer() string { return p.FarmerID }
func (p *DeliveryConfirmed) Plot() string   { return "" }
func (p *DeliveryConfirmed) Crop() string   { return "" }

// orderProblems are the rules of an order that tags cannot express: one
// line per product, one currency, a voucher exactly when paid by voucher,
// and a total that is the sum of the lines.
func orderProblems(p *OrderPlaced) []fieldProblem {
	var out []fieldProblem
	seen := map[string]int{}
	var sum int64
	overflow := false
	for i, it := range p.Items {
		if j, ok := seen[it.ProductID]; ok {
			out = append(out, fieldProblem{fmt.Sprintf("items[%d].product_id", i), fmt.Sprintf("repeats items[%d]; order a product on one line", j)})
		}
		seen[it.ProductID] = i
		if it.UnitPrice.Currency != p.Total.Currency {
			out = append(out, fieldProblem{fmt.Sprintf("items[%d].unit_price.currency", i), fmt.Sprintf("is %s but the order is in %s", it.UnitPrice.Currency, p.Total.Currency)})
		}
		if it.UnitPrice.Amount > 0 && it.Quantity > 0 {
			if it.UnitPrice.Amount > (math.MaxInt64-sum)/it.Quantity {
				overflow = true
			} else {
				sum += it.UnitPrice.Amount * it.Quantity
			}
		}
	}
	switch {
	case overflow || sum > MaxMinorAmount:
		out = append(out, fieldProblem{"total.amount", fmt.Sprintf("the lines add up to more than %d minor units", int64(MaxMinorAmount))})
	case sum != p.Total.Amount:
		out = append(out, fieldProblem{"total.amount", fmt.Sprintf("is %d but the lines add up to %d", p.Total.Amount, sum)})
	}
	switch {
	case p.Payment == "voucher" && p.VoucherID == "":
		out = append(out, fieldProblem{"voucher_id", "is required when payment is voucher"})
	case p.Payment == "cash" && p.VoucherID != "":
		out = append(out, fieldProblem{"voucher_id", "must be empty when payment is cash"})
	}
	return out
}

// deliveryProblems: one line per product.
func deliveryProblems(p *DeliveryConfirmed) []fieldProblem {
	var out []fieldProblem
	seen := map[string]int{}
	for i, it := range p.Items {
		if j, ok := seen[it.ProductID]; ok {
			out = append(out, fieldProblem{fmt.Sprintf("items[%d].product_id", i), fmt.Sprintf("repeats items[%d]; report a product on one line", j)})
		}
		seen[it.ProductID] = i
	}
	return out
}

// MaxMinorAmount bounds money in minor units: 2^53-1, the largest integer
// every JSON reader holds exactly (the vouchers chaincode's bound too).
const MaxMinorAmount = 1<<53 - 1

type fieldProblem struct{ field, message string }
