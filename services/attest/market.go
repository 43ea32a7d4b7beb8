package attest

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/record"
)

// Marketplace records are decided like any record: an order must name
// products the distributor offers, in its currency; a delivery must be
// for an order of this farmer with that much left to deliver, confirmed by
// the farmer's delivery code (used by this very record), captured by an
// agent who serves the farmer, near the farmer's plots. Only a verified
// delivery redeems a voucher (the marketplace acts on farm.attested).

// CatalogItem is a product as marketplace.catalog publishes it.
type CatalogItem struct {
	DistributorID string
	Currency      string
	Active        bool
}

// OrderBook is an order as marketplace.order_book publishes it: its
// farmer, status and what is left to deliver of each product.
type OrderBook struct {
	FarmerID string
	Status   string
	Left     map[string]int64
}

// OTPUse is a one-time code as mobile.otp_uses publishes it (never the
// code itself): for which farmer and purpose it was sent, and which record
// used it.
type OTPUse struct {
	FarmerID string
	Purpose  string
	UsedBy   *string
}

// loadMarketEvidence adds what the marketplace rules compare orders and
// deliveries with: a fixed number of queries per batch.
func loadMarketEvidence(ctx context.Context, tx pgx.Tx, ins []Input, ev []Evidence) error {
	var products, orders, otps, deliveryFarmers []string
	var di []int32
	var lon, lat []float64
	for i, in := range ins {
		switch p := in.Payload.(type) {
		case *record.OrderPlaced:
			ev[i].Catalog = map[string]CatalogItem{}
			for _, it := range p.Items {
				products = append(products, it.ProductID)
			}
		case *record.DeliveryConfirmed:
			orders = append(orders, p.OrderID)
			otps = append(otps, p.OTPChallengeID)
			deliveryFarmers = append(deliveryFarmers, p.FarmerID)
			di = append(di, int32(i))
			lon, lat = append(lon, *in.Env.Location.Lon), append(lat, *in.Env.Location.Lat)
		}
	}
	if len(products) > 0 {
		rows, _ := tx.Query(ctx, `SELECT product_id::text, distributor_id::text, currency, active FROM marketplace.catalog WHERE product_id = ANY($1::uuid[])`, products)
		found := map[string]CatalogItem{}
		err := forEach(rows, func(r pgx.Rows) error {
			var id string
			var c CatalogItem
			if err := r.Scan(&id, &c.DistributorID, &c.Currency, &c.Active); err != nil {
				return err
			}
			found[id] = c
			return nil
		})
		if err != nil {
			return fmt.Errorf("load catalog: %w", err)
		}
		for i, in := range ins {
			if p, ok := in.Payload.(*record.OrderPlaced); ok {
				for _, it := range p.Items {
					if c, ok := found[it.ProductID]; ok {
						ev[i].Catalog[it.ProductID] = c
					}
				}
			}
		}
	}
	if len(di) == 0 {
		return nil
	}
	books := map[string]*OrderBook{}
	rows, _ := tx.Query(ctx, `SELECT order_id::text, farmer_id::text, status, product_id::text, quantity - delivered FROM marketplace.order_book WHERE order_id = ANY($1::uuid[])`, orders)
	err := forEach(rows, func(r pgx.Rows) error {
		var id, farmer, status, product string
		var left int64
		if err := r.Scan(&id, &farmer, &status, &product, &left); err != nil {
			return err
		}
		b := books[id]
		if b == nil {
			b = &OrderBook{FarmerID: farmer, Status: status, Left: map[string]int64{}}
			books[id] = b
		}
		b.Left[product] = left
		return nil
	})
	if err != nil {
		return fmt.Errorf("load order book: %w", err)
	}
	uses := map[string]*OTPUse{}
	rows, _ = tx.Query(ctx, `SELECT challenge_id::text, farmer_id::text, purpose, used_by::text FROM mobile.otp_uses WHERE challenge_id = ANY($1::uuid[])`, otps)
	err = forEach(rows, func(r pgx.Rows) error {
		var id string
		u := &OTPUse{}
		if err := r.Scan(&id, &u.FarmerID, &u.Purpose, &u.UsedBy); err != nil {
			return err
		}
		uses[id] = u
		return nil
	})
	if err != nil {
		return fmt.Errorf("load one-time codes: %w", err)
	}
	serves := map[[2]string]bool{}
	rows, _ = tx.Query(ctx, `SELECT farmer_id::text, agent_id::text FROM mobile.farmer_agents WHERE farmer_id = ANY($1::uuid[])`, deliveryFarmers)
	err = forEach(rows, func(r pgx.Rows) error {
		var f, a string
		if err := r.Scan(&f, &a); err != nil {
			return err
		}
		serves[[2]string{f, a}] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("load assignments: %w", err)
	}
	// Distance from each delivery's capture point to the farmer's nearest
	// plot, through the GiST index (KNN).
	rows, _ = tx.Query(ctx, `
		SELECT u.i, n.d FROM unnest($1::int[], $2::uuid[], $3::float8[], $4::float8[]) AS u(i, farmer, lon, lat)
		CROSS JOIN LATERAL (
		    SELECT ST_Distance(p.boundary, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326)::geography) AS d
		    FROM attest.plots p WHERE p.farmer_id = u.farmer ORDER BY d LIMIT 1) AS n`, di, deliveryFarmers, lon, lat)
	err = forEach(rows, func(r pgx.Rows) error {
		var i int32
		var d float64
		if err := r.Scan(&i, &d); err != nil {
			return err
		}
		ev[i].NearestPlotM = &d
		return nil
	})
	if err != nil {
		return fmt.Errorf("distance to plots: %w", err)
	}
	for _, i := range di {
		p := ins[i].Payload.(*record.DeliveryConfirmed)
		ev[i].Order = books[p.OrderID]
		ev[i].OTP = uses[p.OTPChallengeID]
		ev[i].Assigned = serves[[2]string{p.FarmerID, ins[i].AgentID}]
	}
	return nil
}

func checkOrderCatalog(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.OrderPlaced)
	var problems []string
	for i, it := range p.Items {
		item, ok := c.Ev.Catalog[it.ProductID]
		switch {
		case !ok || item.DistributorID != p.DistributorID:
			problems = append(problems, fmt.Sprintf("items[%d]: product %s is not in distributor %s's catalog", i, it.ProductID, p.DistributorID))
		case !item.Active:
			problems = append(problems, fmt.Sprintf("items[%d]: product %s was withdrawn", i, it.ProductID))
		case item.Currency != it.UnitPrice.Currency:
			problems = append(problems, fmt.Sprintf("items[%d]: product %s is priced in %s, not %s", i, it.ProductID, item.Currency, it.UnitPrice.Currency))
		}
	}
	if len(problems) > 0 {
		return Reject, strings.Join(problems, "; "), nil
	}
	return Pass, fmt.Sprintf("%d products of distributor %s's catalog, in %s", len(p.Items), p.DistributorID, p.Total.Currency), nil
}

func checkDeliveryOrder(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.DeliveryConfirmed)
	o := c.Ev.Order
	switch {
	case o == nil:
		return Reject, fmt.Sprintf("order %s is not in the marketplace's order book", p.OrderID), nil
	case o.FarmerID != p.FarmerID:
		return Reject, fmt.Sprintf("order %s is another farmer's", p.OrderID), nil
	case o.Status != "accepted" && o.Status != "shipped":
		return Reject, fmt.Sprintf("order %s is %s; only accepted or shipped orders are delivered", p.OrderID, o.Status), nil
	}
	var problems []string
	for i, it := range p.Items {
		left, ok := o.Left[it.ProductID]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("items[%d]: product %s is not in the order", i, it.ProductID))
		case it.Quantity > left:
			problems = append(problems, fmt.Sprintf("items[%d]: %d packs received but only %d left to deliver", i, it.Quantity, left))
		}
	}
	if len(problems) > 0 {
		return Reject, strings.Join(problems, "; "), nil
	}
	return Pass, fmt.Sprintf("%d lines within what order %s left to deliver", len(p.Items), p.OrderID), nil
}

func checkDeliveryOTP(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.DeliveryConfirmed)
	u := c.Ev.OTP
	switch {
	case u == nil || u.FarmerID != p.FarmerID || u.Purpose != "delivery":
		return Reject, fmt.Sprintf("code %s was not sent to this farmer for a delivery", p.OTPChallengeID), nil
	case u.UsedBy == nil:
		// mobile-api consumes the code right after JetStream acknowledged
		// the record; this decision may come first. Decide again later.
		return "", "", fmt.Errorf("delivery code %s is not recorded as used yet", p.OTPChallengeID)
	case *u.UsedBy != c.Env.ID:
		return Reject, fmt.Sprintf("delivery code %s was used by record %s", p.OTPChallengeID, *u.UsedBy), nil
	}
	return Pass, "the farmer confirmed receipt with the delivery code sent to their phone", nil
}

func checkDeliveryAgent(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.DeliveryConfirmed)
	if !c.Ev.Assigned {
		return Reject, fmt.Sprintf("agent %s does not serve farmer %s", c.AgentID, p.FarmerID), nil
	}
	return Pass, fmt.Sprintf("agent %s serves farmer %s", c.AgentID, p.FarmerID), nil
}

func checkDeliveryNearFarm(c *Case) (Verdict, string, error) {
	if c.T.DeliveryDistanceMaxM == nil {
		return "", "", fmt.Errorf("thresholds v%d have no delivery distance", c.T.Version)
	}
	limit := *c.T.DeliveryDistanceMaxM
	d := c.Ev.NearestPlotM
	switch {
	case d == nil:
		return Flag, "the farmer has no mapped plot to compare the delivery position with", nil
	case *d > limit:
		return Reject, fmt.Sprintf("confirmed %.0f m from the farmer's nearest plot (limit %.0f m)", *d, limit), nil
	}
	return Pass, fmt.Sprintf("confirmed %.0f m from the farmer's nearest plot (limit %.0f m)", *d, limit), nil
}
