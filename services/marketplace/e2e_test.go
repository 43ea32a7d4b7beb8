package marketplace_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
	"github.com/tani-platform/tani/services/marketplace"
)

// atFarm is where the agent stands: inside the farmer's plot.
var atFarm = client.Location{Lat: -7.2505, Lon: 110.4005, AccuracyM: 4}

// scenario is a running Tani with a field agent, one of their farmers
// with a mapped plot (decided by attest), and a distributor.
type scenario struct {
	t      *testing.T
	tani   *apptest.Running
	agent  *clienttest.Agent
	d      distributor
	farmer string
}

func mustScenario(t *testing.T, args ...string) *scenario {
	t.Helper()
	tani := apptest.MustStart(t, append([]string{"-log.level=info"}, args...)...)
	s := &scenario{t: t, tani: tani, agent: clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java"), farmer: uuid.NewString()}
	p := clienttest.Payloads(s.farmer, uuid.NewString(), time.Now())
	for _, typ := range []string{"farmer.registered", "plot.mapped"} {
		s.decided(s.sync(record.Type(typ), p[typ]), "verified", "flagged")
	}
	s.d = mustDistributor(t, tani)
	return s
}

// sync signs and sends one record; it must be accepted.
func (s *scenario) sync(typ record.Type, payload any) string {
	s.t.Helper()
	raw, id, err := s.agent.Record(typ, time.Now().Add(-time.Minute), atFarm, payload)
	if err != nil {
		s.t.Fatal(err)
	}
	res, err := s.agent.Sync(context.Background(), []json.RawMessage{raw})
	if err != nil {
		s.t.Fatalf("sync %s: %v", typ, err)
	}
	if res[0].Status != "accepted" {
		s.t.Fatalf("sync %s: %+v, want accepted", typ, res[0])
	}
	return id
}

// syncRefused sends one record and returns the field errors of its
// refusal.
func (s *scenario) syncRefused(typ record.Type, payload any) string {
	s.t.Helper()
	raw, _, err := s.agent.Record(typ, time.Now().Add(-time.Minute), atFarm, payload)
	if err != nil {
		s.t.Fatal(err)
	}
	_, err = s.agent.Sync(context.Background(), []json.RawMessage{raw})
	if err == nil {
		s.t.Fatalf("sync %s accepted, want refused", typ)
	}
	return err.Error()
}

// decided waits until attest decided the record one of want.
func (s *scenario) decided(id string, want ...string) string {
	s.t.Helper()
	var st client.Status
	polltest.Eventually(s.t, 30*time.Second, func() error {
		var err error
		if st, err = s.agent.Status(context.Background(), id); err != nil {
			return err
		}
		for _, w := range want {
			if st.Status == w {
				return nil
			}
		}
		return fmt.Errorf("record %s is %s (%v), want %v", id, st.Status, st.Reason, want)
	})
	return st.Status
}

// orderPayload is an agent's order of qty packs of each product.
func (s *scenario) orderPayload(orderID string, payment, voucher string, lines ...marketplace.Product) map[string]any {
	var items []any
	var total int64
	for _, p := range lines {
		items = append(items, map[string]any{"product_id": p.ID, "quantity": 2, "unit_price": map[string]any{"amount": p.UnitPrice.Amount, "currency": p.UnitPrice.Currency}})
		total += 2 * p.UnitPrice.Amount
	}
	out := map[string]any{"farmer_id": s.farmer, "order_id": orderID, "distributor_id": s.d.org, "items": items, "payment": payment,
		"total": map[string]any{"amount": total, "currency": "IDR"}}
	if voucher != "" {
		out["voucher_id"] = voucher
	}
	return out
}

var deliveryCode = regexp.MustCompile(`your delivery code is (\d{6})`)

// deliveryOTP asks for a delivery code for the farmer and reads it from
// the development SMS sender's log (the database holds only its hash).
func (s *scenario) deliveryOTP() (challenge, code string) {
	s.t.Helper()
	codes := func() []string {
		var out []string
		for _, l := range s.tani.Logs() {
			if m := deliveryCode.FindStringSubmatch(l); m != nil {
				out = append(out, m[1])
			}
		}
		return out
	}
	before := len(codes())
	challenge, err := s.agent.RequestDeliveryOTP(context.Background(), s.farmer)
	if err != nil {
		s.t.Fatalf("delivery code: %v", err)
	}
	polltest.Eventually(s.t, 10*time.Second, func() error {
		if len(codes()) > before {
			return nil
		}
		return fmt.Errorf("no delivery code sent yet")
	})
	all := codes()
	return challenge, all[len(all)-1]
}

// photo uploads a photo of the goods and returns its SHA-256.
func (s *scenario) photo() string {
	s.t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	img.Set(1, 1, color.RGBA{R: byte(time.Now().UnixNano()), A: 255})
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		s.t.Fatal(err)
	}
	sum, err := s.agent.UploadMedia(context.Background(), bytes.NewReader(b.Bytes()), int64(b.Len()), "image/jpeg")
	if err != nil {
		s.t.Fatalf("upload photo: %v", err)
	}
	return sum
}

func (s *scenario) deliveryPayload(orderID string, items ...any) map[string]any {
	challenge, code := s.deliveryOTP()
	return map[string]any{"farmer_id": s.farmer, "order_id": orderID, "items": items, "photo_hash": s.photo(),
		"received_on": time.Now().UTC().Format(time.DateOnly), "otp_challenge_id": challenge, "otp_code": code}
}

func (s *scenario) product(name, category, crop string, price, stock int64) marketplace.Product {
	s.t.Helper()
	var p marketplace.Product
	code := s.d.call(s.t, s.tani, "POST", "/distributor/v1/products", map[string]any{"sku": uuid.NewString()[:10], "name": name, "category": category,
		"crop": crop, "pack_size": 5, "pack_unit": "kg", "unit_price": map[string]any{"amount": price, "currency": "IDR"},
		"regions": []string{"Central Java"}, "stock": stock}, &p)
	if code != 201 {
		s.t.Fatalf("create product: %d", code)
	}
	return p
}

// TestE2E_PhoneOrderDeliveredAndProven follows an order from the agent's
// phone to its verified delivery through the public APIs: the signed
// order record reaches the distributor once attest verified it; the
// distributor accepts and ships; the phone's delivery proof (farmer's
// delivery code, photo, GPS at the farm) is verified and projected with
// its journal receipt. Bad orders and proofs are refused at /sync.
func TestE2E_PhoneOrderDeliveredAndProven(t *testing.T) {
	s := mustScenario(t)
	seed := s.product("Inpari 32 <b>rice</b> seed", "seed", "rice", 7500000, 10)
	other := mustDistributor(t, s.tani)
	ctx := context.Background()

	t.Run("ErrOrderRefusedAtSync", func(t *testing.T) {
		bad := s.orderPayload(uuid.NewString(), "cash", "", seed)
		bad["items"].([]any)[0].(map[string]any)["quantity"] = 11
		bad["total"] = map[string]any{"amount": 11 * seed.UnitPrice.Amount, "currency": "IDR"}
		if got := s.syncRefused(record.TypeOrderPlaced, bad); !strings.Contains(got, "exceeds the distributor's stock of 10 packs") {
			t.Errorf("stock exceeded: %s", got)
		}
		unknown := s.orderPayload(uuid.NewString(), "cash", "", marketplace.Product{ID: uuid.NewString(), UnitPrice: seed.UnitPrice})
		if got := s.syncRefused(record.TypeOrderPlaced, unknown); !strings.Contains(got, "is not a product of this distributor") {
			t.Errorf("unknown product: %s", got)
		}
		elsewhere := s.orderPayload(uuid.NewString(), "cash", "", seed)
		elsewhere["distributor_id"] = other.org
		if got := s.syncRefused(record.TypeOrderPlaced, elsewhere); !strings.Contains(got, "is not a product of this distributor") {
			t.Errorf("another distributor's order: %s", got)
		}
	})

	orderID := uuid.NewString()
	rec := s.sync(record.TypeOrderPlaced, s.orderPayload(orderID, "cash", "", seed))
	s.decided(rec, "verified")
	var o marketplace.Order
	polltest.Eventually(t, 20*time.Second, func() error {
		if code := s.d.call(t, s.tani, "GET", "/distributor/v1/orders/"+orderID, nil, &o); code != 200 {
			return fmt.Errorf("order not at the distributor yet: %d", code)
		}
		return nil
	})
	if o.Source != "agent" || o.RecordID != rec || o.Status != "placed" || o.Region != "Central Java" {
		t.Fatalf("order = %+v", o)
	}
	if code := other.call(t, s.tani, "GET", "/distributor/v1/orders/"+orderID, nil, nil); code != 404 {
		t.Errorf("another distributor reads the order: %d", code)
	}

	t.Run("ErrDeliveryBeforeAccept", func(t *testing.T) {
		got := s.syncRefused(record.TypeDeliveryConfirmed, s.deliveryPayload(orderID, map[string]any{"product_id": seed.ID, "quantity": 2}))
		if !strings.Contains(got, "only accepted or shipped orders are delivered") {
			t.Errorf("delivery of a placed order: %s", got)
		}
	})
	for _, a := range []string{"accept", "ship"} {
		if code := s.d.call(t, s.tani, "POST", "/distributor/v1/orders/"+orderID+"/"+a, nil, &o); code != 200 {
			t.Fatalf("%s: %d", a, code)
		}
	}
	t.Run("ErrWrongOTP", func(t *testing.T) {
		p := s.deliveryPayload(orderID, map[string]any{"product_id": seed.ID, "quantity": 2})
		p["otp_code"] = fmt.Sprintf("%06d", (atoi(p["otp_code"].(string))+1)%1000000)
		if got := s.syncRefused(record.TypeDeliveryConfirmed, p); !strings.Contains(got, "does not match an unexpired, unused delivery code") {
			t.Errorf("wrong code: %s", got)
		}
	})
	t.Run("ErrConsentCodeForDelivery", func(t *testing.T) {
		p := s.deliveryPayload(orderID, map[string]any{"product_id": seed.ID, "quantity": 2})
		challenge, err := s.agent.RequestOTP(ctx, s.farmer) // a consent code
		if err != nil {
			t.Fatal(err)
		}
		p["otp_challenge_id"] = challenge
		if got := s.syncRefused(record.TypeDeliveryConfirmed, p); !strings.Contains(got, "delivery code") {
			t.Errorf("consent code used for a delivery: %s", got)
		}
	})
	t.Run("ErrAboveOrder", func(t *testing.T) {
		got := s.syncRefused(record.TypeDeliveryConfirmed, s.deliveryPayload(orderID, map[string]any{"product_id": seed.ID, "quantity": 3}))
		if !strings.Contains(got, "is more than the 2 packs left to deliver") {
			t.Errorf("over-delivery: %s", got)
		}
	})
	t.Run("ErrAnotherAgentsFarmer", func(t *testing.T) {
		stranger := clienttest.MustAgent(t, s.tani.URL, s.tani.OperatorToken, "Central Java")
		p := s.deliveryPayload(orderID, map[string]any{"product_id": seed.ID, "quantity": 2})
		raw, _, _ := stranger.Record(record.TypeDeliveryConfirmed, time.Now(), atFarm, p)
		_, err := stranger.Sync(ctx, []json.RawMessage{raw})
		if err == nil || !strings.Contains(err.Error(), "is not a farmer assigned to you") {
			t.Errorf("another agent's farmer: %v", err)
		}
	})
	t.Run("ErrFarFromFarm", func(t *testing.T) {
		// Accepted at /sync (a phone cannot know where the plots are
		// offline), then rejected by attest: it never reaches the order.
		p := s.deliveryPayload(orderID, map[string]any{"product_id": seed.ID, "quantity": 2})
		raw, id, _ := s.agent.Record(record.TypeDeliveryConfirmed, time.Now().Add(-time.Minute), client.Location{Lat: -7.30, Lon: 110.45, AccuracyM: 4}, p)
		if res, err := s.agent.Sync(ctx, []json.RawMessage{raw}); err != nil || res[0].Status != "accepted" {
			t.Fatalf("sync: %v %+v", err, res)
		}
		if got := s.decided(id, "rejected", "verified", "flagged"); got != "rejected" {
			t.Fatalf("delivery 7 km away: %s, want rejected", got)
		}
		st, _ := s.agent.Status(ctx, id)
		if st.Reason == nil || !strings.Contains(*st.Reason, "delivery.near_farm") {
			t.Errorf("reason %v, want delivery.near_farm", st.Reason)
		}
	})
	del := s.sync(record.TypeDeliveryConfirmed, s.deliveryPayload(orderID, map[string]any{"product_id": seed.ID, "quantity": 2}))
	s.decided(del, "verified")
	var d marketplace.Delivery
	polltest.Eventually(t, 20*time.Second, func() error {
		if code := s.d.call(t, s.tani, "GET", "/distributor/v1/deliveries/"+del, nil, &d); code != 200 {
			return fmt.Errorf("delivery not projected yet: %d", code)
		}
		return nil
	})
	if d.OrderID != orderID || d.Value.Amount != 2*seed.UnitPrice.Amount || len(d.Receipt) == 0 || d.Redemption != "none" {
		t.Errorf("delivery = %+v", d)
	}
	if code := s.d.call(t, s.tani, "GET", "/distributor/v1/orders/"+orderID, nil, &o); code != 200 || o.Status != "delivered" || o.Lines[0].Delivered != 2 {
		t.Errorf("order after delivery = %+v", o)
	}
	var receipts struct {
		Receipts []marketplace.OrderReceipt `json:"receipts"`
	}
	polltest.Eventually(t, 10*time.Second, func() error {
		s.d.call(t, s.tani, "GET", "/distributor/v1/orders/"+orderID+"/receipts", nil, &receipts)
		for _, r := range receipts.Receipts {
			if len(r.Receipt) == 0 {
				return fmt.Errorf("revision %d not journaled yet", r.Revision)
			}
		}
		if len(receipts.Receipts) != 4 {
			return fmt.Errorf("%d revisions, want 4 (placed, accepted, shipped, delivered)", len(receipts.Receipts))
		}
		return nil
	})
	var doc map[string]any
	if code := s.d.call(t, s.tani, "GET", "/distributor/v1/epcis/events", nil, &doc); code != 200 {
		t.Fatalf("EPCIS: %d", code)
	}
	events := doc["epcisBody"].(map[string]any)["eventList"].([]any)
	if len(events) != 1 || events[0].(map[string]any)["eventID"] != "urn:uuid:"+del {
		t.Errorf("EPCIS events = %v", events)
	}
	if code := other.call(t, s.tani, "GET", "/distributor/v1/deliveries/"+del, nil, nil); code != 404 {
		t.Errorf("another distributor reads the delivery: %d", code)
	}
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}

// TestE2E_DemandPlanFollowsTheFarm: once the outlook's plan is built, a
// crop cycle an agent's phone syncs reaches it through attest's decision
// and the marketplace's consumer, without a rebuild; the run that
// publishes it says it did not rebuild.
func TestE2E_DemandPlanFollowsTheFarm(t *testing.T) {
	s := mustScenario(t, "-marketplace.demand-interval=0")
	ctx := context.Background()
	var run marketplace.Run
	if code := s.d.call(t, s.tani, "POST", "/distributor/v1/demand/refresh", nil, &run); code != 200 || !run.Rebuilt {
		t.Fatalf("first refresh: %d, %+v, want the plan built", code, run)
	}
	var plot, district string
	if err := s.tani.DB.QueryRow(ctx, `SELECT plot_id::text, district FROM marketplace.demand_plan_plots WHERE farmer_id = $1`, s.farmer).
		Scan(&plot, &district); err != nil {
		t.Fatalf("the farmer's verified plot is not in the built plan: %v", err)
	}
	parts := func() int {
		var n int
		if err := s.tani.DB.QueryRow(ctx, `SELECT count(*) FROM marketplace.demand_farmer_cells WHERE farmer_id = $1`, s.farmer).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := parts(); n != 0 {
		t.Fatalf("a plot without a crop has %d parts of cells", n)
	}
	// Coffee, a perennial: fertilized from the rainy season, so its second
	// split falls in the coming six months whatever today's date.
	p := clienttest.Payloads(s.farmer, plot, time.Now())["crop.planted"]
	p["crop"], p["variety"] = "coffee", "Robusta BP 42"
	p["planted_on"] = time.Now().AddDate(-2, 0, 0).Format(time.DateOnly)
	p["expected_harvest_on"] = time.Now().AddDate(1, 0, 0).Format(time.DateOnly)
	s.decided(s.sync(record.TypeCropPlanted, p), "verified")
	polltest.Eventually(t, 30*time.Second, func() error {
		if n := parts(); n == 0 {
			return fmt.Errorf("the verified crop cycle has not reached the plan")
		}
		return nil
	})
	var crop string
	var farmers int
	if err := s.tani.DB.QueryRow(ctx, `
		SELECT c.crop, s.farmers FROM marketplace.demand_farmer_cells c JOIN marketplace.demand_cell_sums s USING (district, crop, category, month)
		WHERE c.farmer_id = $1 LIMIT 1`, s.farmer).Scan(&crop, &farmers); err != nil {
		t.Fatal(err)
	}
	if crop != "coffee" || farmers != 1 {
		t.Errorf("the farmer's part is of %s in a cell of %d farmers, want coffee in a cell of 1", crop, farmers)
	}
	var o marketplace.Outlook
	if code := s.d.call(t, s.tani, "GET", "/distributor/v1/demand", nil, &o); code != 200 {
		t.Fatalf("demand: %d", code)
	}
	for _, c := range o.Cells {
		if c.Farmers < marketplace.K {
			t.Errorf("published a cell of %d farmers: %+v", c.Farmers, c)
		}
	}
}
