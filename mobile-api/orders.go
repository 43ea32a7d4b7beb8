package mobileapi

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/record"
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
