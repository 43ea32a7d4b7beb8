package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
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

// OrdersPage is one page of the agent's farmers' orders.
type OrdersPage struct {
	Orders []Order `json:"orders"`
	// Cursor, while More is true, asks for the next page.
	Cursor string `json:"cursor"`
	More   bool   `json:"more"`
}

// Orders lists the open and recently closed orders of the farmers
// assigned to this agent (farmerID "" for all of them), newest placed
// first, reading every page.
func (c *Client) Orders(ctx context.Context, farmerID string) ([]Order, error) {
	var all []Order
	cursor := ""
	for {
		page, err := c.OrdersPage(ctx, farmerID, cursor, 0)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Orders...)
		if !page.More {
			return all, nil
		}
		cursor = page.Cursor
	}
}

// OrdersPage reads one page of Orders: cursor "" for the first, then the
// page's Cursor while its More is true; limit 0 takes the server's
// default page size.
func (c *Client) OrdersPage(ctx context.Context, farmerID, cursor string, limit int) (OrdersPage, error) {
	q := url.Values{}
	if farmerID != "" {
		q.Set("farmer_id", farmerID)
	}
	setPage(q, cursor, limit)
	path := "/mobile/v1/orders"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var page OrdersPage
	err := c.authed(ctx, http.MethodGet, path, nil, &page)
	return page, err
}

// setPage adds a list page's cursor and limit to q.
func setPage(q url.Values, cursor string, limit int) {
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
}
