package marketplace_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
	"github.com/tani-platform/tani/services/marketplace"
)

// grantOrders stores the farmer's consent to the distributor handling
// their orders, as ingest does from a signed consent.granted (the consent
// flow itself is the consent module's test).
func (s *scenario) grantOrders() {
	s.t.Helper()
	if _, err := s.tani.DB.Exec(context.Background(), `
		INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at)
		VALUES ($1, $2, $3, '{orders,plots,crops}', now() + interval '30 days', $4, now())`, uuid.NewString(), s.farmer, s.d.org, uuid.NewString()); err != nil {
		s.t.Fatal(err)
	}
}

// phoneOrder waits until the agent's phone lists the order in status want.
func (s *scenario) phoneOrder(orderID, want string) client.Order {
	s.t.Helper()
	var got client.Order
	polltest.Eventually(s.t, 10*time.Second, func() error {
		orders, err := s.agent.Orders(context.Background(), s.farmer)
		if err != nil {
			return err
		}
		for _, o := range orders {
			if o.OrderID == orderID {
				got = o
				if o.Status == want {
					return nil
				}
				return fmt.Errorf("order %s is %s on the phone, want %s", orderID, o.Status, want)
			}
		}
		return fmt.Errorf("order %s is not on the phone (%d orders)", orderID, len(orders))
	})
	return got
}

// TestE2E_DistributorOrderOnThePhoneThenErased: an order the distributor
// places for a consenting farmer reaches the farmer's agent's phone
// (GET /mobile/v1/orders, with what to tell the farmer), follows its
// status there, and its delivery proved from the phone is verified and
// projected. Then the farmer asks to be forgotten: the distributor keeps
// the order and the delivery under a pseudonym, without the place and the
// photo, the journal's revisions naming the farmer are redacted (receipts
// still served), and no farmer-level read or new order is served.
func TestE2E_DistributorOrderOnThePhoneThenErased(t *testing.T) {
	s := mustScenario(t)
	ctx := context.Background()
	seed := s.product("Inpari 32 rice seed", "seed", "rice", 7500000, 10)
	s.grantOrders()

	var o marketplace.Order
	if code := s.d.call(t, s.tani, "POST", "/distributor/v1/orders", map[string]any{"farmer_id": s.farmer, "currency": "IDR", "payment": "cash",
		"items": []any{map[string]any{"product_id": seed.ID, "quantity": 2}}}, &o); code != 201 {
		t.Fatalf("place order: %d", code)
	}
	var p marketplace.Product
	if s.d.call(t, s.tani, "GET", "/distributor/v1/products/"+seed.ID, nil, &p); p.Stock != 8 {
		t.Errorf("stock %d after placing 2 of 10, want 8 (reserved at placement)", p.Stock)
	}

	t.Run("OK_OnTheAgentsPhone", func(t *testing.T) {
		got := s.phoneOrder(o.ID, "placed")
		if got.Source != "distributor" || got.FarmerID != s.farmer || got.DistributorID != s.d.org || !strings.HasPrefix(got.DistributorName, "Toko Tani") ||
			got.Total != 2*seed.UnitPrice.Amount || len(got.Lines) != 1 || got.Lines[0].Name != seed.Name || got.Lines[0].Quantity != 2 || got.Lines[0].Delivered != 0 ||
			got.Lines[0].PackSize != 5 || got.Lines[0].PackUnit != "kg" {
			t.Errorf("phone order = %+v", got)
		}
		all, err := s.agent.Orders(ctx, "")
		if err != nil || len(all) != 1 {
			t.Errorf("all the agent's farmers' orders: %d %v, want 1", len(all), err)
		}
	})
	t.Run("ErrAnotherAgent", func(t *testing.T) {
		stranger := clienttest.MustAgent(t, s.tani.URL, s.tani.OperatorToken, "Central Java")
		got, err := stranger.Orders(ctx, "")
		if err != nil || len(got) != 0 {
			t.Errorf("an agent not serving the farmer sees %d orders (%v)", len(got), err)
		}
		got, err = stranger.Orders(ctx, s.farmer)
		if err != nil || len(got) != 0 {
			t.Errorf("an agent not serving the farmer sees %d of their orders (%v)", len(got), err)
		}
	})
	t.Run("ErrBadFarmerQuery", func(t *testing.T) {
		_, err := s.agent.Orders(ctx, "Siti")
		if err == nil || !strings.Contains(err.Error(), "farmer_id") {
			t.Errorf("got %v, want a field error on farmer_id", err)
		}
	})

	for _, a := range []string{"accept", "ship"} {
		if code := s.d.call(t, s.tani, "POST", "/distributor/v1/orders/"+o.ID+"/"+a, nil, &o); code != 200 {
			t.Fatalf("%s: %d", a, code)
		}
	}
	s.phoneOrder(o.ID, "shipped")
	del := s.sync(record.TypeDeliveryConfirmed, s.deliveryPayload(o.ID, map[string]any{"product_id": seed.ID, "quantity": 2}))
	s.decided(del, "verified")
	if got := s.phoneOrder(o.ID, "delivered"); got.Lines[0].Delivered != 2 {
		t.Errorf("phone order after the delivery = %+v", got)
	}
	var d marketplace.Delivery
	if code := s.d.call(t, s.tani, "GET", "/distributor/v1/deliveries/"+del, nil, &d); code != 200 || d.OrderID != o.ID || d.Lat == nil || d.PhotoHash == nil {
		t.Fatalf("delivery = %d %+v", code, d)
	}
	polltest.Eventually(t, 10*time.Second, func() error {
		var n int
		if err := s.tani.DB.QueryRow(ctx, `SELECT count(*) FROM marketplace.order_revisions WHERE order_id = $1 AND leaf_index IS NOT NULL`, o.ID).Scan(&n); err != nil || n != 4 {
			return fmt.Errorf("%d revisions journaled (%v), want 4", n, err)
		}
		return nil
	})

	// The farmer's verified plot is in the demand outlook's plan.
	polltest.Eventually(t, 10*time.Second, func() error {
		var n int
		if err := s.tani.DB.QueryRow(ctx, `SELECT count(*) FROM marketplace.demand_plan_plots WHERE farmer_id = $1`, s.farmer).Scan(&n); err != nil || n == 0 {
			return fmt.Errorf("%d plots of the farmer in the demand plan (%v)", n, err)
		}
		return nil
	})

	// The farmer asks to be forgotten.
	admin := client.NewAdmin(s.tani.URL, s.tani.OperatorToken)
	if _, err := admin.EraseFarmer(ctx, s.farmer, "data protection request, ticket 13", "Dewi (operator)"); err != nil {
		t.Fatal(err)
	}
	var progress client.ErasureOwnerStatus
	polltest.Eventually(t, 60*time.Second, func() error {
		st, err := admin.FarmerErasure(ctx, s.farmer)
		if err != nil {
			return err
		}
		for _, ow := range st.Owners {
			if ow.Owner == "marketplace" {
				progress = ow
				if ow.State == "complete" {
					return nil
				}
				return fmt.Errorf("marketplace's erasure is %s (%v)", ow.State, ow.LastError)
			}
		}
		return fmt.Errorf("the status names no marketplace owner: %+v", st.Owners)
	})
	var erased marketplace.Erased
	if err := json.Unmarshal(progress.Erased, &erased); err != nil || erased.Orders != 1 || erased.Deliveries != 1 || erased.Redacted != 4 {
		t.Errorf("marketplace erased %s, want 1 order, 1 delivery, 4 journaled revisions redacted", progress.Erased)
	}
	t.Run("OK_GoneFromTheDemandPlan", func(t *testing.T) {
		var left int
		if err := s.tani.DB.QueryRow(ctx, `SELECT (SELECT count(*) FROM marketplace.demand_plan_plots WHERE farmer_id = $1)
			+ (SELECT count(*) FROM marketplace.demand_farmer_cells WHERE farmer_id = $1)
			+ (SELECT count(*) FROM marketplace.demand_pending WHERE farmer_id = $1)`, s.farmer).Scan(&left); err != nil || left != 0 {
			t.Errorf("%d rows of the demand plan still name the farmer (%v)", left, err)
		}
	})

	t.Run("OK_CommercialRecordsKeptUnderAPseudonym", func(t *testing.T) {
		var after marketplace.Order
		if code := s.d.call(t, s.tani, "GET", "/distributor/v1/orders/"+o.ID, nil, &after); code != 200 {
			t.Fatalf("order after the erasure: %d", code)
		}
		if after.FarmerID == s.farmer || !after.FarmerErased || after.PlotID != "" || after.Status != "delivered" || after.Total != o.Total || len(after.Lines) != 1 {
			t.Errorf("order after the erasure = %+v", after)
		}
		var d marketplace.Delivery
		if code := s.d.call(t, s.tani, "GET", "/distributor/v1/deliveries/"+del, nil, &d); code != 200 {
			t.Fatalf("delivery after the erasure: %d", code)
		}
		if d.FarmerID != after.FarmerID || !d.FarmerErased || d.Lat != nil || d.Lon != nil || d.PhotoHash != nil || d.Value.Amount != 2*seed.UnitPrice.Amount {
			t.Errorf("delivery after the erasure = %+v, want the order's pseudonym and no place or photo", d)
		}
		var receipts struct {
			Receipts []marketplace.OrderReceipt `json:"receipts"`
		}
		if code := s.d.call(t, s.tani, "GET", "/distributor/v1/orders/"+o.ID+"/receipts", nil, &receipts); code != 200 || len(receipts.Receipts) != 4 {
			t.Errorf("receipts after the erasure: %d, %d revisions, want 4", code, len(receipts.Receipts))
		}
		for _, q := range []string{
			`SELECT count(*) FROM marketplace.orders WHERE farmer_id = $1`,
			`SELECT count(*) FROM marketplace.deliveries WHERE farmer_id = $1`,
			`SELECT count(*) FROM marketplace.order_revisions WHERE position($1 in convert_from(payload, 'UTF8')) > 0`,
			`SELECT count(*) FROM ledger.entries WHERE record_id = '` + o.ID + `' AND position($1 in convert_from(payload, 'UTF8')) > 0`,
		} {
			var n int
			if err := s.tani.DB.QueryRow(ctx, q, s.farmer).Scan(&n); err != nil || n != 0 {
				t.Errorf("%s: %d rows name the erased farmer (%v)", q, n, err)
			}
		}
	})
	t.Run("ErrNoFarmerLevelRead", func(t *testing.T) {
		var body map[string]any
		if code := s.d.call(t, s.tani, "GET", "/distributor/v1/farmers/"+s.farmer+"/basket", nil, &body); code != 404 && code != 403 {
			t.Errorf("basket of an erased farmer: %d %v, want refused", code, body)
		}
		var before int
		s.tani.DB.QueryRow(ctx, `SELECT count(*) FROM marketplace.orders`).Scan(&before)
		if code := s.d.call(t, s.tani, "POST", "/distributor/v1/orders", map[string]any{"farmer_id": s.farmer, "currency": "IDR", "payment": "cash",
			"items": []any{map[string]any{"product_id": seed.ID, "quantity": 1}}}, &body); code != 404 && code != 403 {
			t.Errorf("order for an erased farmer: %d %v, want refused", code, body)
		}
		var after int
		s.tani.DB.QueryRow(ctx, `SELECT count(*) FROM marketplace.orders`).Scan(&after)
		if after != before {
			t.Errorf("an order for an erased farmer was stored")
		}
		if got, err := s.agent.Orders(ctx, ""); err != nil || len(got) != 0 {
			t.Errorf("the phone still lists %d orders of the erased farmer (%v)", len(got), err)
		}
	})
}
