package mobileapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

// Marketplace records are checked at /sync against the marketplace's
// public views (marketplace.catalog, marketplace.order_book), so that an
// agent learns at once that an order names a product the distributor
// does not sell or lacks the stock for, or that a delivery exceeds what
// is left to deliver: nothing is stored for such a record. attest checks
// them again when it decides them (the catalog may change in between).

// checkOrder refuses an order for products the distributor does not
// offer (unknown, withdrawn, priced in another currency) or in quantities
// above its stock.
func (s *Service) checkOrder(ctx context.Context, p *record.OrderPlaced) ([]apperr.FieldError, error) {
	ids := make([]string, len(p.Items))
	for i, it := range p.Items {
		ids[i] = it.ProductID
	}
	type product struct {
		currency string
		stock    int64
		active   bool
	}
	rows, err := s.pool.Query(ctx, `
		SELECT product_id::text, currency, stock, active FROM marketplace.catalog WHERE distributor_id = $1 AND product_id = ANY($2::uuid[])`,
		p.DistributorID, ids)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	catalog := map[string]product{}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var id string
		var x product
		err := r.Scan(&id, &x.currency, &x.stock, &x.active)
		catalog[id] = x
		return struct{}{}, err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var errs []apperr.FieldError
	for i, it := range p.Items {
		f := fmt.Sprintf("payload.items[%d]", i)
		c, ok := catalog[it.ProductID]
		switch {
		case !ok:
			errs = append(errs, apperr.FieldError{Field: f + ".product_id", Message: "is not a product of this distributor"})
		case !c.active:
			errs = append(errs, apperr.FieldError{Field: f + ".product_id", Message: "was withdrawn from the distributor's catalog"})
		case c.currency != it.UnitPrice.Currency:
			errs = append(errs, apperr.FieldError{Field: f + ".unit_price.currency", Message: fmt.Sprintf("the distributor prices this product in %s", c.currency)})
		case it.Quantity > c.stock:
			errs = append(errs, apperr.FieldError{Field: f + ".quantity", Message: fmt.Sprintf("exceeds the distributor's stock of %d packs", c.stock)})
		}
	}
	return errs, nil
}

// checkDelivery refuses a delivery for an order the marketplace does not
// hold for this farmer, not accepted or shipped, or for more than is left
// to deliver of a product.
func (s *Service) checkDelivery(ctx context.Context, p *record.DeliveryConfirmed) ([]apperr.FieldError, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT product_id::text, farmer_id::text, status, quantity - delivered FROM marketplace.order_book WHERE order_id = $1`, p.OrderID)
	if err != nil {
		return nil, fmt.Errorf("order book: %w", err)
	}
	left := map[string]int64{}
	var farmer, status string
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var product string
		var n int64
		err := r.Scan(&product, &farmer, &status, &n)
		left[product] = n
		return struct{}{}, err
	})
	if err != nil {
		return nil, fmt.Errorf("order book: %w", err)
	}
	switch {
	case len(left) == 0 || farmer != p.FarmerID:
		return []apperr.FieldError{{Field: "payload.order_id", Message: "is not an order of this farmer"}}, nil
	case status != "accepted" && status != "shipped":
		return []apperr.FieldError{{Field: "payload.order_id", Message: fmt.Sprintf("is %s; only accepted or shipped orders are delivered", status)}}, nil
	}
	var errs []apperr.FieldError
	for i, it := range p.Items {
		n, ok := left[it.ProductID]
		switch {
		case !ok:
			errs = append(errs, apperr.FieldError{Field: fmt.Sprintf("payload.items[%d].product_id", i), Message: "is not in the order"})
		case it.Quantity > n:
			errs = append(errs, apperr.FieldError{Field: fmt.Sprintf("payload.items[%d].quantity", i), Message: fmt.Sprintf("is more than the %d packs left to deliver", n)})
		}
	}
	return errs, nil
}

// FarmerOrder is an input order for one of the agent's farmers, as the
// phone shows it: placed by the distributor for the farmer (who consented
// to it), or by this or another agent. The agent tells the farmer, and
// once the goods arrive records a delivery.confirmed naming OrderID and
// what was received of each line (at most Quantity − Delivered).
type FarmerOrder struct {
	OrderID         string           `json:"order_id"`
	FarmerID        string           `json:"farmer_id"`
	DistributorID   string           `json:"distributor_id"`
	DistributorName string           `json:"distributor_name"`
	Source          string           `json:"source"`
	Status          string           `json:"status"`
	Reason          *string          `json:"reason,omitempty"`
	Payment         string           `json:"payment"`
	VoucherID       *string          `json:"voucher_id,omitempty"`
	Currency        string           `json:"currency"`
	Total           int64            `json:"total"`
	PlacedAt        time.Time        `json:"placed_at"`
	UpdatedAt       time.Time        `json:"updated_at"`
	Lines           []FarmerOrderRow `json:"lines"`
}

// FarmerOrderRow is one product of a farmer's order.
type FarmerOrderRow struct {
	ProductID string  `json:"product_id"`
	Name      string  `json:"name"`
	Category  string  `json:"category"`
	PackSize  float64 `json:"pack_size"`
	PackUnit  string  `json:"pack_unit"`
	Quantity  int64   `json:"quantity"`
	Delivered int64   `json:"delivered"`
	UnitPrice int64   `json:"unit_price"`
}

// ordersRecentDays is how long a closed order (rejected, cancelled,
// delivered) stays on the phone: long enough for the agent's next visit.
const ordersRecentDays = 30

// OrdersPage is one page of GET /orders.
type OrdersPage struct {
	Orders []FarmerOrder `json:"orders"`
	// Cursor, while More is true, is passed back as ?cursor= for the
	// next page.
	Cursor string `json:"cursor,omitempty"`
	More   bool   `json:"more"`
}

// farmerOrders: GET /orders — the orders of farmers assigned to this
// agent that are open (placed, accepted, shipped: the agent tells the
// farmer, then proves the delivery), and those closed in the last
// ordersRecentDays, newest placed first, a page at a time (see listPage:
// by placing time, which never changes, so that an order changing while
// the phone pages is neither skipped nor repeated); ?farmer_id= narrows to
// one farmer.
func (s *Service) farmerOrders(c echo.Context) error {
	cur, limit, err := listPage(c)
	farmer := c.QueryParam("farmer_id")
	if farmer != "" && !validate.LowerUUID(farmer) {
		fields := []apperr.FieldError{{Field: "farmer_id", Message: "must be a lowercase UUID"}}
		if e, ok := apperr.As(err); ok {
			fields = append(fields, e.Fields...)
		}
		return apperr.Fields("bad query", fields...)
	}
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	rows, err := s.pool.Query(ctx, `
		SELECT f.order_id::text, f.farmer_id::text, f.distributor_id::text, coalesce(org.name, ''), f.source, f.status, f.reject_reason, f.payment,
		       f.voucher_id::text, f.currency, f.total, f.placed_at, f.updated_at, coalesce(f.lines, '[]')
		FROM marketplace.farmer_orders f
		JOIN mobile.assignments a ON a.farmer_id = f.farmer_id AND a.agent_id = $1
		LEFT JOIN identity.organizations org ON org.id = f.distributor_id
		WHERE ($2 = '' OR f.farmer_id::text = $2)
		  AND (f.status IN ('placed', 'accepted', 'shipped') OR f.updated_at > now() - make_interval(days => $3))
		  AND ($4 = '' OR (f.placed_at, f.order_id) < ($5, nullif($4, '')::uuid))
		ORDER BY f.placed_at DESC, f.order_id DESC
		LIMIT $6`, auth.ClaimsOf(c).Subject, farmer, ordersRecentDays, cur.ID, cur.At, limit+1)
	if err != nil {
		return fmt.Errorf("list farmers' orders: %w", err)
	}
	page := OrdersPage{Orders: []FarmerOrder{}}
	for rows.Next() {
		var o FarmerOrder
		var lines []byte
		if err := rows.Scan(&o.OrderID, &o.FarmerID, &o.DistributorID, &o.DistributorName, &o.Source, &o.Status, &o.Reason, &o.Payment,
			&o.VoucherID, &o.Currency, &o.Total, &o.PlacedAt, &o.UpdatedAt, &lines); err != nil {
			rows.Close()
			return err
		}
		if err := json.Unmarshal(lines, &o.Lines); err != nil {
			rows.Close()
			return fmt.Errorf("lines of order %s: %w", o.OrderID, err)
		}
		page.Orders = append(page.Orders, o)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list farmers' orders: %w", err)
	}
	if len(page.Orders) > limit {
		page.Orders, page.More = page.Orders[:limit], true
		last := page.Orders[limit-1]
		page.Cursor = listCursor{At: last.PlacedAt, ID: last.OrderID}.encode()
	}
	return c.JSON(http.StatusOK, page)
}
