package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Order is an input order for one of the agent's farmers (see
// mobileapi.FarmerOrder): placed by the distributor for the farmer, or by
// an agent. Tell the farmer; once the goods arrive, sync a
// delivery.confirmed naming OrderID.
type Order struct {
	OrderID         string      `json:"order_id"`
	FarmerID        string      `json:"farmer_id"`
	DistributorID   string      `json:"distributor_id"`
	DistributorName string      `json:"distributor_name"`
	Source          string      `json:"source"`
	Status          string      `json:"status"`
	Reason          *string     `json:"reason,omitempty"`
	Payment         string      `json:"payment"`
	VoucherID       *string     `json:"voucher_id,omitempty"`
	Currency        string      `json:"currency"`
	Total           int64       `json:"total"`
	PlacedAt        time.Time   `json:"placed_at"`
	UpdatedAt       time.Time   `json:"updated_at"`
	Lines           []OrderLine `json:"lines"`
}

// OrderLine is one product of an order.
type OrderLine struct {
	ProductID string  `json:"product_id"`
	Name      string  `json:"name"`
	Category  string  `json:"category"`
	PackSize  float64 `json:"pack_size"`
	PackUnit  string  `json:"pack_unit"`
	Quantity  int64   `json:"quantity"`
	Delivered int64   `json:"delivered"`
	UnitPrice int64   `json:"unit_price"`
}

// Orders lists the open and recently closed orders of the farmers
// assigned to this agent (farmerID "" for all of them), newest change
// first.
func (c *Client) Orders(ctx context.Context, farmerID string) ([]Order, error) {
	path := "/mobile/v1/orders"
	if farmerID != "" {
		path += "?" + url.Values{"farmer_id": {farmerID}}.Encode()
	}
	var out struct {
		Orders []Order `json:"orders"`
	}
	err := c.authed(ctx, http.MethodGet, path, nil, &out)
	return out.Orders, err
}
