package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/vouchers"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// Gate is how a route under /bank/v1 or /distributor/v1 keeps one
// organization from another's data; the isolation matrix holds every
// route to its gate.
type Gate int

const (
	// FarmerData reads a farmer's data through the consent gate: only the
	// own organization, with a live consent covering Scope, is allowed;
	// every other caller gets 403 and the gate's denied access-log row.
	FarmerData Gate = iota + 1
	// OwnResource names (in its path) a thing of the own organization:
	// another organization of the same kind gets 404 (its existence must
	// not leak), and nothing is written.
	OwnResource
	// OwnCollection lists or creates within the caller's own
	// organization: another organization's call succeeds but never
	// shows or touches the own organization's things.
	OwnCollection
	// OrgAdmin is OwnCollection or OwnResource (Admin.Resource) for a
	// signed-in admin only: an API key or a staff user gets 403.
	OrgAdmin
	// Public is a document served under the prefix without a credential
	// (the OpenAPI document): anyone, signed in or not, of either kind,
	// gets 200, and it names no farmer and no organization.
	Public
)

// Target is what a call is about, from the fixture: a farmer of the
// scenario and the own organization's things.
type Target struct {
	Farmer string
	// Records are journaled records of Farmer by scope (identity: the
	// registration; plots: the plot mapping).
	Records map[consent.Scope]string
	// Consent is a consent granted to the own organization.
	Consent string
	// User is a fresh staff user of the own organization; Key a fresh API
	// key of it (routes that deactivate, revoke or rotate them).
	User, Key string
	// Own is the own organization's things by name, made by the fixture
	// through the public APIs (see mustThings): "product", "loan",
	// "order", "webhook"…
	Own map[string]string
}

// Route is one row of the table: how to call the route, and its gate.
type Route struct {
	Gate  Gate
	Scope consent.Scope // FarmerData: the scope the route reads
	// Resource is set for an OrgAdmin route naming a thing (404 for other
	// organizations) rather than a collection.
	Resource bool
	// OK is the own organization's status when it is not the method's
	// usual one (GET 200, POST 201): PATCH 200, DELETE 204, a replay 202;
	// 409 where the fixture's thing is not in the state the action needs
	// (a loan the farmer has not accepted cannot be disbursed): the own
	// organization reaches its thing, where any other gets 404.
	OK int
	// Foreign is the status another organization of the route's kind gets
	// when the body names a thing of the own organization that the
	// handler looks up before anything else (a product: 400 "is not one of
	// your products"; no access-log row, nothing written). 0: the gate's.
	Foreign int
	// ForeignSays is what that refusal says, and the own organization's
	// answer does not (where both are 400, it tells them apart).
	ForeignSays string
	// ItsOwn: the other organization has such a thing of its own (bank B a
	// product: the fixture makes one) and is also called naming it: a
	// farmer read is then refused at the gate (403 and the denied row), a
	// collection serves it within its own organization.
	ItsOwn bool
	// OwnReads is how many farmers the own organization's call reads
	// through the gate (allowed access-log rows) on a route that is not
	// FarmerData: re-scoring reads every farmer of the bank's book.
	OwnReads int
	// Call returns the request path (with query) and body (nil: none).
	Call func(t Target) (path string, body any)
}

// orgRoutes is every route mounted under /bank/v1 and /distributor/v1
// (keyed "METHOD /path/:param" as echo registers it), plus the other
// routes that serve organizations (the journal's payloads). A route the
// process serves that is not here fails TestIsolationMatrix: whoever adds
// a route under these prefixes declares its gate here.
var orgRoutes = func() map[string]Route {
	routes := map[string]Route{
		// The journal's payloads: a record's history, through the gate
		// with the record's scope (a registration is identity).
		"GET /ledger/v1/records/:id/history": {Gate: FarmerData, Scope: consent.Identity, Call: func(t Target) (string, any) {
			return "/ledger/v1/records/" + t.Records[consent.Identity] + "/history", nil
		}},
	}
	for _, k := range []string{"bank", "distributor"} {
		p := "/" + k + "/v1"
		for key, r := range map[string]Route{
			"POST /consent-requests": {Gate: OwnCollection, Call: func(t Target) (string, any) {
				return p + "/consent-requests", map[string]any{"farmer_id": t.Farmer, "scopes": []string{"plots"}, "duration_days": 30, "purpose": "matrix"}
			}},
			"GET /consents":     {Gate: OwnCollection, Call: func(t Target) (string, any) { return p + "/consents", nil }},
			"GET /consents/:id": {Gate: OwnResource, Call: func(t Target) (string, any) { return p + "/consents/" + t.Consent, nil }},
			"GET /users":        {Gate: OrgAdmin, Call: func(t Target) (string, any) { return p + "/users", nil }},
			"POST /users": {Gate: OrgAdmin, Call: func(t Target) (string, any) {
				return p + "/users", map[string]any{"username": "m" + strings.ReplaceAll(uuid.NewString()[:13], "-", ""), "name": "Teller", "password": "correct horse battery"}
			}},
			"POST /users/:user/deactivate": {Gate: OrgAdmin, Resource: true, Call: func(t Target) (string, any) { return p + "/users/" + t.User + "/deactivate", nil }},
			"GET /api-keys":                {Gate: OrgAdmin, Call: func(t Target) (string, any) { return p + "/api-keys", nil }},
			"POST /api-keys":               {Gate: OrgAdmin, Call: func(t Target) (string, any) { return p + "/api-keys", map[string]any{"name": "matrix"} }},
			"POST /api-keys/:key/revoke":   {Gate: OrgAdmin, Resource: true, Call: func(t Target) (string, any) { return p + "/api-keys/" + t.Key + "/revoke", nil }},
			"POST /api-keys/:key/rotate": {Gate: OrgAdmin, Resource: true, Call: func(t Target) (string, any) {
				return p + "/api-keys/" + t.Key + "/rotate", map[string]any{"overlap_seconds": 60}
			}},

			// Webhooks (services/webhooks): the organization's endpoints
			// and its events feed. An API key may manage them, a staff
			// user may not (its own test).
			"GET /webhooks/openapi.json": {Gate: OwnCollection, Call: func(t Target) (string, any) { return p + "/webhooks/openapi.json", nil }},
			"GET /webhooks/event-types":  {Gate: OwnCollection, Call: func(t Target) (string, any) { return p + "/webhooks/event-types", nil }},
			"POST /webhooks": {Gate: OwnCollection, Call: func(t Target) (string, any) {
				return p + "/webhooks", map[string]any{"url": matrixHookURL, "event_types": []string{"consent.revoked"}}
			}},
			"GET /webhooks":     {Gate: OwnCollection, Call: func(t Target) (string, any) { return p + "/webhooks", nil }},
			"GET /webhooks/:id": {Gate: OwnResource, Call: func(t Target) (string, any) { return p + "/webhooks/" + t.Own["webhook"], nil }},
			"PATCH /webhooks/:id": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) {
				return p + "/webhooks/" + t.Own["webhook"], map[string]any{"description": "matrix"}
			}},
			// A spare endpoint: the others' routes still find "webhook".
			"DELETE /webhooks/:id":             {Gate: OwnResource, OK: 204, Call: func(t Target) (string, any) { return p + "/webhooks/" + t.Own["spare_webhook"], nil }},
			"POST /webhooks/:id/rotate-secret": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) { return p + "/webhooks/" + t.Own["webhook"] + "/rotate-secret", nil }},
			"POST /webhooks/:id/replay": {Gate: OwnResource, OK: 202, Call: func(t Target) (string, any) {
				return p + "/webhooks/" + t.Own["webhook"] + "/replay?since=" + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), nil
			}},
			"GET /webhooks/:id/deliveries": {Gate: OwnResource, Call: func(t Target) (string, any) { return p + "/webhooks/" + t.Own["webhook"] + "/deliveries", nil }},
			"GET /webhooks/:id/deliveries/:delivery": {Gate: OwnResource, Call: func(t Target) (string, any) {
				return p + "/webhooks/" + t.Own["webhook"] + "/deliveries/" + t.Own["webhook_delivery"], nil
			}},
			"GET /events": {Gate: OwnCollection, Call: func(t Target) (string, any) { return p + "/events", nil }},
		} {
			method, path, _ := strings.Cut(key, " ")
			routes[method+" "+p+path] = r
		}
	}

	// Lending (services/lending), the banks' book. A score, an
	// application and a re-scoring name one of the bank's products, which
	// is looked up first: another bank is refused there (Foreign).
	bank := func(path string) string { return "/bank/v1" + path }
	// The banks' OpenAPI document (lending's, with identity's, consent's
	// and the webhooks' merged in) and the distributors' (the
	// marketplace's, likewise) are served without a credential.
	routes["GET /bank/v1/openapi.json"] = Route{Gate: Public, Call: func(t Target) (string, any) { return bank("/openapi.json"), nil }}
	routes["GET /distributor/v1/openapi.json"] = Route{Gate: Public, Call: func(t Target) (string, any) { return "/distributor/v1/openapi.json", nil }}
	loan := func(t Target, action string) string { return bank("/loans/" + t.Own["loan"] + action) }
	for key, r := range map[string]Route{
		"POST /bank/v1/products":            {Gate: OwnCollection, Call: func(t Target) (string, any) { return bank("/products"), lendingProduct() }},
		"GET /bank/v1/products":             {Gate: OwnCollection, Call: func(t Target) (string, any) { return bank("/products"), nil }},
		"GET /bank/v1/products/:id":         {Gate: OwnResource, Call: func(t Target) (string, any) { return bank("/products/" + t.Own["product"]), nil }},
		"POST /bank/v1/products/:id/retire": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) { return bank("/products/" + t.Own["spare_product"] + "/retire"), nil }},
		"GET /bank/v1/farmers/:id/profile":  {Gate: FarmerData, Scope: consent.Plots, Call: func(t Target) (string, any) { return bank("/farmers/" + t.Farmer + "/profile"), nil }},
		"GET /bank/v1/farmers/:id/evidence-bundle": {Gate: FarmerData, Scope: consent.Plots, Call: func(t Target) (string, any) {
			return bank("/farmers/" + t.Farmer + "/evidence-bundle"), nil
		}},
		"POST /bank/v1/farmers/:id/score": {Gate: FarmerData, Scope: consent.Plots, OK: 200, Foreign: 400, ForeignSays: "is not one of your products", ItsOwn: true, Call: func(t Target) (string, any) {
			return bank("/farmers/" + t.Farmer + "/score"), map[string]any{"product_id": t.Own["product"]}
		}},
		"POST /bank/v1/loans": {Gate: FarmerData, Scope: consent.Plots, Foreign: 400, ForeignSays: "is not one of your products", ItsOwn: true, Call: func(t Target) (string, any) {
			return bank("/loans"), loanApplication(t.Farmer, t.Own["product"])
		}},
		// The book holds the live farmer's loans out (disbursed): one
		// gated read.
		"POST /bank/v1/rescore": {Gate: OwnCollection, OK: 200, OwnReads: 1, Foreign: 400, ForeignSays: "is not one of your products", ItsOwn: true, Call: func(t Target) (string, any) {
			return bank("/rescore"), map[string]any{"product_id": t.Own["product"]}
		}},
		"GET /bank/v1/loans":                    {Gate: OwnCollection, Call: func(t Target) (string, any) { return bank("/loans"), nil }},
		"GET /bank/v1/loans/:id":                {Gate: OwnResource, Call: func(t Target) (string, any) { return loan(t, ""), nil }},
		"GET /bank/v1/loans/:id/repayments":     {Gate: OwnResource, Call: func(t Target) (string, any) { return loan(t, "/repayments"), nil }},
		"GET /bank/v1/loans/:id/events":         {Gate: OwnResource, Call: func(t Target) (string, any) { return loan(t, "/events"), nil }},
		"GET /bank/v1/loans/:id/restructurings": {Gate: OwnResource, Call: func(t Target) (string, any) { return loan(t, "/restructurings"), nil }},
		// The fixture's loans: "loan" is applied, then declined (the
		// decision route); "accepted_loan" the farmer accepted on the
		// phone (its agreement; the disbursement route pays it out);
		// "disbursed_loan" was paid out as a voucher (the repayment, then
		// the write-off route). The own bank succeeds on each; another
		// bank gets 404.
		"GET /bank/v1/loans/:id/agreement": {Gate: OwnResource, Call: func(t Target) (string, any) {
			return bank("/loans/" + t.Own["accepted_loan"] + "/agreement"), nil
		}},
		"POST /bank/v1/loans/:id/decision": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) {
			return loan(t, "/decision"), map[string]any{"decision": "decline", "reason": "matrix"}
		}},
		"POST /bank/v1/loans/:id/disbursement": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) {
			return bank("/loans/" + t.Own["accepted_loan"] + "/disbursement"), map[string]any{"method": "cash", "reference": "TRF-MATRIX"}
		}},
		"POST /bank/v1/loans/:id/repayments": {Gate: OwnResource, Call: func(t Target) (string, any) {
			return bank("/loans/" + t.Own["disbursed_loan"] + "/repayments"), map[string]any{"payer_reference": "MATRIX",
				"amount": map[string]any{"amount": 1000, "currency": "IDR"}, "paid_on": time.Now().Format(time.DateOnly)}
		}},
		"POST /bank/v1/loans/:id/write-off": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) {
			return bank("/loans/" + t.Own["disbursed_loan"] + "/write-off"), map[string]any{"reason": "matrix"}
		}},
		"POST /bank/v1/loans/:id/restructurings/:rid/decision": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) {
			return loan(t, "/restructurings/"+t.Own["restructuring"]+"/decision"), map[string]any{"decision": "decline", "reason": "matrix"}
		}},
		// A batch answers each line; none applied is 400: the own bank's
		// line is refused for the loan's state, another bank's as "not a
		// loan of yours".
		"POST /bank/v1/repayments": {Gate: OwnCollection, OK: 400, Foreign: 400, ForeignSays: "is not a loan of yours", Call: func(t Target) (string, any) {
			return bank("/repayments"), map[string]any{"repayments": []map[string]any{{"loan_id": t.Own["loan"], "payer_reference": "MATRIX-B",
				"amount": map[string]any{"amount": 1000, "currency": "IDR"}, "paid_on": time.Now().Format(time.DateOnly)}}}
		}},
		// A past score (the fixture scored the live farmer).
		"GET /bank/v1/scores/:id": {Gate: OwnResource, Call: func(t Target) (string, any) { return bank("/scores/" + t.Own["score"]), nil }},
		// Vouchers on the chain: the bank's list (its own only), and the
		// settlement of the disbursed loan's voucher, which a distributor
		// redeemed (another bank's is 404, as unknown).
		"GET /bank/v1/vouchers": {Gate: OwnCollection, Call: func(t Target) (string, any) { return bank("/vouchers?status=redeemed"), nil }},
		"POST /bank/v1/vouchers/:id/settlement": {Gate: OwnResource, Call: func(t Target) (string, any) {
			return bank("/vouchers/" + t.Own["voucher"] + "/settlement"), map[string]any{"payment_reference": "PAY-MATRIX",
				"amount": map[string]any{"amount": 25_000_000, "currency": "IDR"}}
		}},
		"GET /bank/v1/portfolio":     {Gate: OwnCollection, Call: func(t Target) (string, any) { return bank("/portfolio"), nil }},
		"GET /bank/v1/portfolio.csv": {Gate: OwnCollection, Call: func(t Target) (string, any) { return bank("/portfolio.csv"), nil }},
	} {
		routes[key] = r
	}

	// The marketplace (services/marketplace), the distributors' catalogue
	// and orders. Placing an order and a farmer's basket read the farmer
	// through the gate (orders; plots and crops).
	dist := func(path string) string { return "/distributor/v1" + path }
	order := func(t Target, name, action string) string { return dist("/orders/" + t.Own[name] + action) }
	for key, r := range map[string]Route{
		"GET /distributor/v1/products":     {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/products"), nil }},
		"POST /distributor/v1/products":    {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/products"), marketProduct() }},
		"GET /distributor/v1/products/:id": {Gate: OwnResource, Call: func(t Target) (string, any) { return dist("/products/" + t.Own["product"]), nil }},
		"PATCH /distributor/v1/products/:id": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) {
			return dist("/products/" + t.Own["product"]), map[string]any{"name": "Urea 50 kg"}
		}},
		"GET /distributor/v1/orders": {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/orders"), nil }},
		"POST /distributor/v1/orders": {Gate: FarmerData, Scope: consent.Orders, Call: func(t Target) (string, any) {
			return dist("/orders"), marketOrder(t.Farmer, t.Own["product"])
		}},
		"GET /distributor/v1/orders/:id":          {Gate: OwnResource, Call: func(t Target) (string, any) { return order(t, "order", ""), nil }},
		"GET /distributor/v1/orders/:id/receipts": {Gate: OwnResource, Call: func(t Target) (string, any) { return order(t, "order", "/receipts"), nil }},
		"POST /distributor/v1/orders/:id/accept":  {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) { return order(t, "order", "/accept"), nil }},
		"POST /distributor/v1/orders/:id/reject": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) {
			return order(t, "order_to_reject", "/reject"), map[string]any{"reason": "out of stock"}
		}},
		"POST /distributor/v1/orders/:id/ship": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) { return order(t, "accepted_order", "/ship"), nil }},
		"POST /distributor/v1/orders/:id/cancel": {Gate: OwnResource, OK: 200, Call: func(t Target) (string, any) {
			return order(t, "order_to_cancel", "/cancel"), map[string]any{"reason": "the farmer changed their mind"}
		}},
		"GET /distributor/v1/deliveries":     {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/deliveries"), nil }},
		"GET /distributor/v1/deliveries/:id": {Gate: OwnResource, Call: func(t Target) (string, any) { return dist("/deliveries/" + t.Own["delivery"]), nil }},
		"GET /distributor/v1/vouchers":       {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/vouchers"), nil }},
		"GET /distributor/v1/settlements":    {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/settlements"), nil }},
		"GET /distributor/v1/epcis/events":   {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/epcis/events"), nil }},
		"GET /distributor/v1/farmers/:id/epcis/harvests": {Gate: FarmerData, Scope: consent.Harvests, Call: func(t Target) (string, any) {
			return dist("/farmers/" + t.Farmer + "/epcis/harvests"), nil
		}},
		"GET /distributor/v1/farmers/:id/epcis/sales": {Gate: FarmerData, Scope: consent.Sales, Call: func(t Target) (string, any) {
			return dist("/farmers/" + t.Farmer + "/epcis/sales"), nil
		}},
		"GET /distributor/v1/farmers/:id/basket": {Gate: FarmerData, Scope: consent.Plots, Call: func(t Target) (string, any) {
			return dist("/farmers/" + t.Farmer + "/basket"), nil
		}},
		// Reference data and the regional outlook (aggregates over every
		// verified plot, no farmer or organization named): the same for
		// every distributor.
		"GET /distributor/v1/rates":           {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/rates"), nil }},
		"GET /distributor/v1/demand":          {Gate: OwnCollection, Call: func(t Target) (string, any) { return dist("/demand"), nil }},
		"POST /distributor/v1/demand/refresh": {Gate: OwnCollection, OK: 200, Call: func(t Target) (string, any) { return dist("/demand/refresh"), nil }},
	} {
		routes[key] = r
	}
	return routes
}()

// matrixHookURL is a webhook endpoint's URL: a public address literal, so
// that creating it resolves no name. The fixture's endpoints subscribe to
// consent.revoked only, which no call of the matrix causes.
const matrixHookURL = "https://93.184.216.34/tani-matrix"

func lendingProduct() map[string]any {
	return map[string]any{"name": "Kredit matrix " + uuid.NewString()[:8], "crops": []string{"rice"}, "currency": "IDR", "min_amount": 100_000_00, "max_amount": 20_000_000_00,
		"fee_bps": 100, "interest_bps": 1800, "tenor_days": 240, "grace_days": 30, "repayment_style": "bullet", "ltv_bps": 5000, "offer_valid_days": 14,
		"voucher_categories": []string{"seed", "fertilizer"}}
}

func loanApplication(farmer, product string) map[string]any {
	return map[string]any{"farmer_id": farmer, "product_id": product, "amount": map[string]any{"amount": 5_000_000_00, "currency": "IDR"}, "purpose": "seed and fertilizer"}
}

func marketProduct() map[string]any {
	return map[string]any{"sku": uuid.NewString()[:10], "name": "Urea", "category": "fertilizer", "crop": "rice", "pack_size": 50, "pack_unit": "kg",
		"unit_price": map[string]any{"amount": 250_000_00, "currency": "IDR"}, "regions": []string{"Central Java"}, "stock": 1000}
}

func marketOrder(farmer, product string) map[string]any {
	return map[string]any{"farmer_id": farmer, "currency": "IDR", "payment": "cash", "items": []map[string]any{{"product_id": product, "quantity": 1}}}
}

// party is one organization of the fixture with its credentials.
type party struct {
	id, kind, name string
	key            string // a live API key
	revokedKey     string
	admin          session // a signed-in admin
	expired        session // an admin's session past its expiry
	staffSession   session
}

type session struct {
	cookie *http.Cookie
	csrf   string
}

// caller is who makes a call: a bearer token or a session.
type caller struct {
	bearer string
	s      *session
}

type matrix struct {
	tani  *apptest.Running
	agent *clienttest.Agent
	// orgs by role: own bank A, bank B, distributor A, distributor B.
	bankA, bankB, distA, distB *party
	// farmers by consent state (for both bankA and distA).
	live, none, expired, revoked, onlyIdentity, onlyPlots string
	records                                               map[string]map[consent.Scope]string
	consentOf                                             map[string]string            // org id → a consent granted to it (live farmer)
	things                                                map[string]map[string]string // org id → its things (mustThings)
}

func (m *matrix) do(t *testing.T, method, path string, c caller, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, m.tani.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.s != nil {
		req.AddCookie(c.s.cookie)
		if c.s.csrf != "" {
			req.Header.Set("X-CSRF-Token", c.s.csrf)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (m *matrix) mustParty(t *testing.T, kind string) *party {
	t.Helper()
	p := &party{kind: kind, name: kind + " " + uuid.NewString()[:8]}
	var out struct{ ID, Token, Username string }
	code, body := m.do(t, "POST", "/admin/v1/organizations", caller{bearer: m.tani.OperatorToken}, map[string]string{"name": p.name, "kind": kind})
	mustDecode(t, code, body, 201, &out)
	p.id = out.ID
	key := func() string {
		code, body := m.do(t, "POST", "/admin/v1/organizations/"+p.id+"/api-keys", caller{bearer: m.tani.OperatorToken}, map[string]string{"name": "k"})
		mustDecode(t, code, body, 201, &out)
		return out.Token
	}
	p.key, p.revokedKey = key(), key()
	var keys struct {
		APIKeys []struct{ ID string } `json:"api_keys"`
	}
	code, body = m.do(t, "GET", "/admin/v1/organizations/"+p.id+"/api-keys", caller{bearer: m.tani.OperatorToken}, nil)
	mustDecode(t, code, body, 200, &keys)
	if code, body := m.do(t, "POST", "/admin/v1/organizations/"+p.id+"/api-keys/"+keys.APIKeys[1].ID+"/revoke", caller{bearer: m.tani.OperatorToken}, nil); code != 204 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	user := func(role string) string {
		name := role + strings.ReplaceAll(uuid.NewString()[:13], "-", "")
		code, body := m.do(t, "POST", "/admin/v1/organizations/"+p.id+"/users", caller{bearer: m.tani.OperatorToken},
			map[string]string{"username": name, "name": "X", "role": role, "password": "correct horse battery"})
		mustDecode(t, code, body, 201, nil)
		return name
	}
	admin := user("admin")
	p.admin, p.expired, p.staffSession = m.signIn(t, admin), m.signIn(t, admin), m.signIn(t, user("staff"))
	if _, err := m.tani.DB.Exec(context.Background(), `UPDATE identity.sessions SET expires_at = now() - interval '1 second' WHERE id_hash = sha256(convert_to($1, 'UTF8'))`,
		p.expired.cookie.Value); err != nil {
		t.Fatal(err)
	}
	return p
}

func (m *matrix) signIn(t *testing.T, username string) session {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"username": username, "password": "correct horse battery"})
	resp, err := http.Post(m.tani.URL+"/portal/sign-in", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		CSRF string `json:"csrf_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	mustDecode(t, resp.StatusCode, body, 200, &out)
	for _, c := range resp.Cookies() {
		if c.Name == "tani_session" {
			return session{cookie: c, csrf: out.CSRF}
		}
	}
	t.Fatal("no session cookie")
	return session{}
}

func mustDecode(t *testing.T, code int, body []byte, want int, v any) {
	t.Helper()
	if code != want {
		t.Fatalf("got %d %s, want %d", code, body, want)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
	}
}

// mustFarmer registers a farmer with the agent and waits for both records
// (registration, plot) to be journaled.
func (m *matrix) mustFarmer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	farmer := uuid.NewString()
	p := clienttest.Payloads(farmer, uuid.NewString(), time.Now())
	// Farmers of their own: another phone, another plot (no duplicate or
	// overlap for attest to flag).
	n := len(m.records)
	p["farmer.registered"]["phone"] = fmt.Sprintf("+62812%07d", 1000000+n)
	lon := 110.4 + 0.01*float64(n)
	p["plot.mapped"]["boundary"] = clienttest.Square(lon, -7.25, 0.001)
	loc := client.Location{Lat: -7.2505, Lon: lon + 0.0005, AccuracyM: 4}
	reg, regID, err := m.agent.Record(record.TypeFarmerRegistered, time.Now().Add(-time.Hour), loc, p["farmer.registered"])
	if err != nil {
		t.Fatal(err)
	}
	plot, plotID, err := m.agent.Record(record.TypePlotMapped, time.Now().Add(-time.Hour), loc, p["plot.mapped"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.agent.Sync(ctx, []json.RawMessage{reg, plot}); err != nil {
		t.Fatal(err)
	}
	m.records[farmer] = map[consent.Scope]string{consent.Identity: regID, consent.Plots: plotID}
	return farmer
}

// grant stores a consent as ingest does from a signed consent.granted
// (the gate's own tests and the consent lifecycle test use the real
// phone flow).
func (m *matrix) grant(t *testing.T, farmer, org string, scopes []string, expires time.Time, revoked bool) string {
	t.Helper()
	id := uuid.NewString()
	var rev any
	if revoked {
		rev = time.Now().Add(-time.Minute)
	}
	if _, err := m.tani.DB.Exec(context.Background(), `
		INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, now() - interval '1 hour', $7)`, id, farmer, org, scopes, expires, uuid.NewString(), rev); err != nil {
		t.Fatal(err)
	}
	return id
}

// snapshot fingerprints every table but the access log, so that a denied
// call can be shown to have written nothing.
func (m *matrix) snapshot(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := m.tani.DB.Query(ctx, `
		SELECT table_schema || '.' || table_name FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema', 'public', 'deployment')
		  AND (table_schema, table_name) NOT IN (('consent', 'access_log'), ('ledger', 'checkpoints'))
		  AND table_name NOT LIKE '%anchor%'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	out := map[string]string{}
	for _, tbl := range tables {
		var sum string
		rowText := "t::text"
		if tbl == "identity.sessions" { // a session's use moves last_seen_at: not a write of anyone's data
			rowText = "(t.id_hash, t.user_id, t.expires_at, t.ended_at)::text"
		}
		if err := m.tani.DB.QueryRow(ctx, `SELECT md5(coalesce(string_agg(`+rowText+`, '|' ORDER BY `+rowText+`), '')) FROM `+tbl+` t`).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		out[tbl] = sum
	}
	return out
}

func (m *matrix) accessLog(t *testing.T) (allowed, denied int) {
	t.Helper()
	if err := m.tani.DB.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE allowed), count(*) FILTER (WHERE NOT allowed) FROM consent.access_log`).Scan(&allowed, &denied); err != nil {
		t.Fatal(err)
	}
	return allowed, denied
}

// TestIsolationMatrix calls every organization-scoped route as its own
// organization and as everyone who must not get through — another bank,
// another distributor, the own organization without a consent, with an
// expired, a revoked or a wrongly scoped one, with a revoked key, with an
// expired session — and holds each answer to the route's gate: only the
// first is allowed; every denial is 403 (404 where existence must not
// leak; 401 for a credential that no longer authenticates) and writes
// nothing but the gate's denied access-log row.
func TestIsolationMatrix(t *testing.T) {
	// No background sweep between a refused call's before and after.
	// Info logs: the development SMS sender's loan codes are read from them.
	tani := apptest.MustStart(t, "-log.level=info", "-consent.sweep-interval=1h", "-mobile.access-digest-interval=0", "-attest.sweep-interval=1h",
		"-lending.servicing-interval=1h", "-marketplace.sweep-interval=1h", "-marketplace.demand-interval=0")
	m := &matrix{tani: tani, agent: clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java"),
		records: map[string]map[consent.Scope]string{}, consentOf: map[string]string{}, things: map[string]map[string]string{}}
	ctx := context.Background()

	// Every route served under the organizations' prefixes is declared.
	param := regexp.MustCompile(`:\w+`)
	var undeclared []string
	served := map[string]bool{}
	for _, r := range tani.App.Routes() {
		if !(strings.HasPrefix(r.Path, "/bank/v1/") || strings.HasPrefix(r.Path, "/distributor/v1/")) || r.Method == "echo_route_not_found" || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		key := r.Method + " " + r.Path
		served[key] = true
		if _, ok := orgRoutes[key]; !ok {
			undeclared = append(undeclared, key)
		}
	}
	sort.Strings(undeclared)
	if len(undeclared) > 0 {
		t.Errorf("routes without a declared gate (add them to orgRoutes): %v", undeclared)
	}
	for key := range orgRoutes {
		if !served[key] && !strings.HasPrefix(key, "GET /ledger/") {
			t.Errorf("orgRoutes declares %s, which the process does not serve", key)
		}
		_ = param
	}

	m.bankA, m.bankB, m.distA, m.distB = m.mustParty(t, "bank"), m.mustParty(t, "bank"), m.mustParty(t, "distributor"), m.mustParty(t, "distributor")
	m.live, m.none, m.expired, m.revoked, m.onlyIdentity, m.onlyPlots = m.mustFarmer(t), m.mustFarmer(t), m.mustFarmer(t), m.mustFarmer(t), m.mustFarmer(t), m.mustFarmer(t)
	polltest.Eventually(t, 60*time.Second, func() error {
		var n int
		if err := tani.DB.QueryRow(ctx, `SELECT count(*) FROM attest.records WHERE status = 'verified' AND leaf_index IS NOT NULL`).Scan(&n); err != nil {
			return err
		}
		if n < 12 {
			return fmt.Errorf("%d of 12 records journaled", n)
		}
		return nil
	})
	all := validScopes()
	for _, p := range []*party{m.bankA, m.distA} {
		m.consentOf[p.id] = m.grant(t, m.live, p.id, all, time.Now().Add(24*time.Hour), false)
		m.grant(t, m.expired, p.id, all, time.Now().Add(-time.Minute), false)
		m.grant(t, m.revoked, p.id, all, time.Now().Add(24*time.Hour), true)
		m.grant(t, m.onlyIdentity, p.id, []string{"identity"}, time.Now().Add(24*time.Hour), false)
		m.grant(t, m.onlyPlots, p.id, []string{"plots"}, time.Now().Add(24*time.Hour), false)
	}
	m.things[m.bankA.id], m.things[m.distA.id] = m.mustThings(t, m.bankA), m.mustThings(t, m.distA)
	// Bank B's own product (it names it where bank A's is refused).
	var productB struct{ ID string }
	code, body := m.do(t, "POST", "/bank/v1/products", caller{bearer: m.bankB.key}, lendingProduct())
	mustDecode(t, code, body, 201, &productB)
	m.things[m.bankB.id] = map[string]string{"product": productB.ID}
	m.settle(t)

	keys := make([]string, 0, len(orgRoutes))
	for k := range orgRoutes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		route := orgRoutes[key]
		method, _, _ := strings.Cut(key, " ")
		t.Run(strings.ReplaceAll(key, "/", "_"), func(t *testing.T) {
			own, sameKind, otherKind := m.bankA, m.bankB, m.distA
			if strings.Contains(key, "/distributor/v1/") {
				own, sameKind, otherKind = m.distA, m.distB, m.bankA
			}
			wrongScopeFarmer := m.onlyIdentity
			if route.Scope == consent.Identity {
				wrongScopeFarmer = m.onlyPlots
			}
			target := func(farmer string) Target {
				tg := Target{Farmer: farmer, Records: m.records[farmer], Consent: m.consentOf[own.id], Own: m.things[own.id]}
				if route.Gate == OrgAdmin && route.Resource {
					tg.User, tg.Key = m.freshUser(t, own), m.freshKeyID(t, own)
				}
				return tg
			}
			ownCaller := caller{bearer: own.key}
			if route.Gate == OrgAdmin {
				ownCaller = caller{s: &own.admin}
			}
			asOther := func(p *party) caller {
				if route.Gate == OrgAdmin {
					return caller{s: &p.admin}
				}
				return caller{bearer: p.key}
			}

			type scenario struct {
				name   string
				c      caller
				farmer string
				// want is the status; denied whether the gate logs a denied row.
				want     int
				deniedAt bool
				// otherOrg is a same-kind organization acting within its own.
				otherOrg bool
				// thingsOf is whose things the call names (nil: the own
				// organization's).
				thingsOf *party
			}
			var scenarios []scenario
			add := func(s scenario) { scenarios = append(scenarios, s) }
			okStatus := map[string]int{http.MethodGet: 200, http.MethodPost: 201}[method]
			if route.OK != 0 {
				okStatus = route.OK
			}
			switch route.Gate {
			case FarmerData:
				add(scenario{name: "Own", c: ownCaller, farmer: m.live, want: okStatus})
				// Another organization of the route's kind reaches the
				// gate and is denied there; one of the other kind is
				// refused by the group before (no access-log row), unless
				// the route serves both kinds (the journal).
				both := !strings.Contains(key, " /bank/v1/") && !strings.Contains(key, " /distributor/v1/")
				add(scenario{name: "AnotherBank", c: caller{bearer: m.bankB.key}, farmer: m.live, want: 403, deniedAt: both || own.kind == "bank"})
				add(scenario{name: "AnotherDistributor", c: caller{bearer: m.distB.key}, farmer: m.live, want: 403, deniedAt: both || own.kind == "distributor"})
				add(scenario{name: "NoConsent", c: ownCaller, farmer: m.none, want: 403, deniedAt: true})
				add(scenario{name: "Expired", c: ownCaller, farmer: m.expired, want: 403, deniedAt: true})
				add(scenario{name: "Revoked", c: ownCaller, farmer: m.revoked, want: 403, deniedAt: true})
				add(scenario{name: "WrongScope", c: ownCaller, farmer: wrongScopeFarmer, want: 403, deniedAt: true})
				if route.Foreign != 0 {
					// Refused at the own organization's thing, before the gate.
					sc := &scenarios[1]
					if own.kind == "distributor" {
						sc = &scenarios[2]
					}
					sc.want, sc.deniedAt = route.Foreign, false
				}
				if route.ItsOwn {
					add(scenario{name: "SameKindItsOwn", c: asOther(sameKind), farmer: m.live, want: 403, deniedAt: true, thingsOf: sameKind})
				}
			case OwnResource:
				add(scenario{name: "Own", c: ownCaller, farmer: m.live, want: okStatus})
				add(scenario{name: "SameKind", c: asOther(sameKind), farmer: m.live, want: 404})
				add(scenario{name: "OtherKind", c: asOther(otherKind), farmer: m.live, want: 403})
			case OwnCollection, OrgAdmin:
				if route.Gate == OrgAdmin && route.Resource {
					add(scenario{name: "Own", c: ownCaller, farmer: m.live, want: map[bool]int{true: 201, false: 200}[strings.HasSuffix(key, "/rotate")]})
					if strings.HasSuffix(key, "/revoke") {
						scenarios[len(scenarios)-1].want = 204
					}
					add(scenario{name: "SameKind", c: asOther(sameKind), farmer: m.live, want: 404})
				} else {
					add(scenario{name: "Own", c: ownCaller, farmer: m.live, want: okStatus})
					if route.Foreign != 0 {
						add(scenario{name: "SameKind", c: asOther(sameKind), farmer: m.live, want: route.Foreign})
						if route.ItsOwn {
							add(scenario{name: "SameKindItsOwn", c: asOther(sameKind), farmer: m.live, want: okStatus, otherOrg: true, thingsOf: sameKind})
						}
					} else {
						add(scenario{name: "SameKind", c: asOther(sameKind), farmer: m.live, want: okStatus, otherOrg: true})
					}
				}
				add(scenario{name: "OtherKind", c: asOther(otherKind), farmer: m.live, want: 403})
				if route.Gate == OrgAdmin {
					add(scenario{name: "APIKey", c: caller{bearer: own.key}, farmer: m.live, want: 403})
					add(scenario{name: "Staff", c: caller{s: &own.staffSession}, farmer: m.live, want: 403})
				}
			case Public:
				add(scenario{name: "Anonymous", c: caller{}, farmer: m.live, want: 200})
				add(scenario{name: "Own", c: ownCaller, farmer: m.live, want: 200})
				add(scenario{name: "OtherKind", c: asOther(otherKind), farmer: m.live, want: 200})
			}
			if route.Gate != Public {
				add(scenario{name: "RevokedKey", c: caller{bearer: own.revokedKey}, farmer: m.live, want: 401})
				add(scenario{name: "ExpiredSession", c: caller{s: &own.expired}, farmer: m.live, want: 401})
				add(scenario{name: "MalformedKey", c: caller{bearer: "tani_" + strings.Repeat("z", 97)}, farmer: m.live, want: 401})
			}
			if method != http.MethodGet && !strings.HasPrefix(key, "GET /ledger/") {
				s := own.admin
				s.csrf = ""
				add(scenario{name: "MissingCSRF", c: caller{s: &s}, farmer: m.live, want: 403})
			}

			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					tg := target(sc.farmer)
					if sc.thingsOf != nil {
						tg.Own = m.things[sc.thingsOf.id]
					}
					path, body := route.Call(tg)
					before := m.snapshot(t)
					allowedBefore, deniedBefore := m.accessLog(t)
					code, resp := m.do(t, method, path, sc.c, body)
					if code != sc.want {
						t.Fatalf("got %d %s, want %d", code, resp, sc.want)
					}
					allowedAfter, deniedAfter := m.accessLog(t)
					allowed := sc.want < 300 && !sc.otherOrg
					switch {
					case route.Gate == FarmerData && allowed:
						if allowedAfter != allowedBefore+1 || deniedAfter != deniedBefore {
							t.Errorf("access log +%d allowed +%d denied, want +1 allowed", allowedAfter-allowedBefore, deniedAfter-deniedBefore)
						}
					case route.OwnReads > 0 && sc.name == "Own":
						if allowedAfter != allowedBefore+route.OwnReads || deniedAfter != deniedBefore {
							t.Errorf("access log +%d allowed +%d denied, want +%d allowed", allowedAfter-allowedBefore, deniedAfter-deniedBefore, route.OwnReads)
						}
					case sc.deniedAt:
						if allowedAfter != allowedBefore || deniedAfter != deniedBefore+1 {
							t.Errorf("access log +%d allowed +%d denied, want +1 denied", allowedAfter-allowedBefore, deniedAfter-deniedBefore)
						}
					default:
						if allowedAfter != allowedBefore || deniedAfter != deniedBefore {
							t.Errorf("access log +%d allowed +%d denied, want no row", allowedAfter-allowedBefore, deniedAfter-deniedBefore)
						}
					}
					if sc.want >= 300 {
						after := m.snapshot(t)
						for tbl, sum := range before {
							if after[tbl] != sum {
								t.Errorf("a refused call changed %s", tbl)
							}
						}
					}
					if says := route.ForeignSays; says != "" {
						switch {
						case sc.name == "Own" && strings.Contains(string(resp), says):
							t.Errorf("the own organization's answer says %q: %s", says, resp)
						case sc.name != "Own" && sc.want == route.Foreign && !strings.Contains(string(resp), says):
							t.Errorf("another organization refused at the own organization's thing: %s, want it to say %q", resp, says)
						}
					}
					if sc.want < 300 && method != http.MethodGet {
						m.settle(t) // what the call set going (journal, events) lands before the next one's snapshot
					}
					if route.Gate == Public {
						// A document for anyone names no one.
						for _, id := range append([]string{m.bankA.id, m.bankB.id, m.distA.id, m.distB.id}, m.live, m.none, m.expired, m.revoked) {
							if strings.Contains(string(resp), id) {
								t.Errorf("the public document names %s", id)
							}
						}
					}
					if sc.otherOrg {
						// Another organization acting within its own: it
						// sees and touches none of the own organization's.
						for _, own := range []string{own.id, m.consentOf[own.id]} {
							if strings.Contains(string(resp), own) {
								t.Errorf("another organization's answer names the own organization's %s: %s", own, resp)
							}
						}
					}
				})
			}
		})
	}
}

// freshUser is a new staff user of p (a route deactivates it).
func (m *matrix) freshUser(t *testing.T, p *party) string {
	t.Helper()
	var u struct{ ID string }
	code, body := m.do(t, "POST", "/admin/v1/organizations/"+p.id+"/users", caller{bearer: m.tani.OperatorToken},
		map[string]string{"username": "f" + strings.ReplaceAll(uuid.NewString()[:13], "-", ""), "name": "X", "role": "staff", "password": "correct horse battery"})
	mustDecode(t, code, body, 201, &u)
	return u.ID
}

// freshKeyID is the id of a new API key of p (a route revokes or rotates it).
func (m *matrix) freshKeyID(t *testing.T, p *party) string {
	t.Helper()
	var k struct{ ID string }
	code, body := m.do(t, "POST", "/admin/v1/organizations/"+p.id+"/api-keys", caller{bearer: m.tani.OperatorToken}, map[string]string{"name": "spare"})
	mustDecode(t, code, body, 201, &k)
	return k.ID
}

func validScopes() []string {
	return slices.Clone([]string{"identity", "plots", "crops", "inputs", "harvests", "sales", "credit", "orders"})
}

// mustThings makes p's things through the public APIs with p's key, as
// its clients would (a bank: a loan product, a spare one to retire, an
// application of the live farmer and a restructuring of it; a
// distributor: a catalogue product, orders placed, one accepted, and a
// delivery), and for both a webhook endpoint, a spare one to delete and
// one of its deliveries. What only a farmer's phone or the dispatcher
// makes (a restructuring proposal, a verified delivery, a delivery to an
// endpoint) is stored as its service stores it.
func (m *matrix) mustThings(t *testing.T, p *party) map[string]string {
	t.Helper()
	ctx := context.Background()
	c := caller{bearer: p.key}
	create := func(path string, body any, want int) string {
		t.Helper()
		var out struct{ ID string }
		code, resp := m.do(t, "POST", path, c, body)
		mustDecode(t, code, resp, want, &out)
		return out.ID
	}
	prefix := "/" + p.kind + "/v1"
	things := map[string]string{
		"webhook":       create(prefix+"/webhooks", map[string]any{"url": matrixHookURL, "event_types": []string{"consent.revoked"}}, 201),
		"spare_webhook": create(prefix+"/webhooks", map[string]any{"url": matrixHookURL, "event_types": []string{"consent.revoked"}}, 201),
	}
	var delivery int64
	// A delivery that failed for good: the dispatcher leaves it alone.
	if err := m.tani.DB.QueryRow(ctx, `INSERT INTO webhooks.deliveries (endpoint_id, event_id, event_type, organization_id, body, state)
		VALUES ($1, $2, 'consent.revoked', $3, '{}', 'failed') RETURNING id`, things["webhook"], uuid.NewString(), p.id).Scan(&delivery); err != nil {
		t.Fatal(err)
	}
	things["webhook_delivery"] = fmt.Sprint(delivery)
	switch p.kind {
	case "bank":
		things["product"] = create("/bank/v1/products", lendingProduct(), 201)
		things["spare_product"] = create("/bank/v1/products", lendingProduct(), 201)
		// No automatic policy: the application waits for the bank.
		things["loan"] = create("/bank/v1/loans", loanApplication(m.live, things["product"]), 201)
		var score struct{ ID string }
		code, resp := m.do(t, "POST", "/bank/v1/farmers/"+m.live+"/score", c, map[string]any{"product_id": things["product"]})
		mustDecode(t, code, resp, 200, &score)
		things["score"] = score.ID
		things["accepted_loan"] = m.acceptedLoan(t, p, things["product"])
		things["disbursed_loan"] = m.acceptedLoan(t, p, things["product"])
		var disbursed struct {
			Disbursement struct{ Voucher struct{ ID string } }
		}
		code, resp = m.do(t, "POST", "/bank/v1/loans/"+things["disbursed_loan"]+"/disbursement", c, map[string]any{"method": "voucher"})
		mustDecode(t, code, resp, 200, &disbursed)
		things["voucher"] = disbursed.Disbursement.Voucher.ID
		m.redeem(t, things["voucher"])
		things["restructuring"] = uuid.NewString()
		if _, err := m.tani.DB.Exec(ctx, `INSERT INTO lending.restructurings (id, loan_id, cause, evidence, detail, extension_days)
			VALUES ($1, $2, 'regional_shock', $3, 'matrix', 30)`, things["restructuring"], things["loan"], uuid.NewString()); err != nil {
			t.Fatal(err)
		}
	case "distributor":
		things["product"] = create("/distributor/v1/products", marketProduct(), 201)
		things["order"] = create("/distributor/v1/orders", marketOrder(m.live, things["product"]), 201)
		things["order_to_reject"] = create("/distributor/v1/orders", marketOrder(m.live, things["product"]), 201)
		things["order_to_cancel"] = create("/distributor/v1/orders", marketOrder(m.live, things["product"]), 201)
		things["accepted_order"] = create("/distributor/v1/orders", marketOrder(m.live, things["product"]), 201)
		if code, resp := m.do(t, "POST", "/distributor/v1/orders/"+things["accepted_order"]+"/accept", c, nil); code != 200 {
			t.Fatalf("accept: %d %s", code, resp)
		}
		things["delivery"] = uuid.NewString()
		if _, err := m.tani.DB.Exec(ctx, `INSERT INTO marketplace.deliveries (record_id, order_id, distributor_id, farmer_id, agent_id, items, value, currency,
			received_on, captured_at, lat, lon, photo_hash, leaf_index, receipt, receipt_sha256)
			VALUES ($1, $2, $3, $4, $5, $6, 25000000, 'IDR', current_date, now(), -7.25, 110.4, $7, 1000000, '{}', $7)`,
			things["delivery"], things["accepted_order"], p.id, m.live, uuid.NewString(), fmt.Sprintf(`[{"product_id": %q, "quantity": 1}]`, things["product"]),
			strings.Repeat("ab", 32)); err != nil {
			t.Fatal(err)
		}
	}
	return things
}

// acceptedLoan is a loan of p's for the live farmer, approved by p and
// accepted by the farmer on the agent's phone with the code sent to them
// (a signed loan.accepted record, attested), as in the field.
func (m *matrix) acceptedLoan(t *testing.T, p *party, product string) string {
	t.Helper()
	ctx := context.Background()
	c := caller{bearer: p.key}
	var l struct{ ID string }
	code, resp := m.do(t, "POST", "/bank/v1/loans", c, loanApplication(m.live, product))
	mustDecode(t, code, resp, 201, &l)
	code, resp = m.do(t, "POST", "/bank/v1/loans/"+l.ID+"/decision", c, map[string]any{"decision": "approve", "reason": "matrix"})
	mustDecode(t, code, resp, 200, nil)
	before := len(m.loanCodes())
	challenge, offer, err := m.agent.RequestLoanOTP(ctx, m.live, l.ID)
	if err != nil || offer.TermsSHA256 == nil {
		t.Fatalf("loan code: %v (offer %+v)", err, offer)
	}
	var otp string
	polltest.Eventually(t, 10*time.Second, func() error {
		if codes := m.loanCodes(); len(codes) > before {
			otp = codes[len(codes)-1]
			return nil
		}
		return fmt.Errorf("no loan code sent")
	})
	rec, _, err := m.agent.Record(record.TypeLoanAccepted, time.Now().Add(-time.Minute), client.Location{Lat: -7.2505, Lon: 110.4005, AccuracyM: 4},
		map[string]any{"farmer_id": m.live, "loan_id": l.ID, "terms_sha256": *offer.TermsSHA256, "otp_challenge_id": challenge, "otp_code": otp})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.agent.Sync(ctx, []json.RawMessage{rec}); err != nil {
		t.Fatalf("sync loan.accepted: %v", err)
	}
	polltest.Eventually(t, 60*time.Second, func() error {
		var got struct{ State string }
		code, resp := m.do(t, "GET", "/bank/v1/loans/"+l.ID, c, nil)
		if json.Unmarshal(resp, &got); code != 200 || got.State != "accepted" {
			return fmt.Errorf("loan %s: %d %s, want accepted", l.ID, code, got.State)
		}
		return nil
	})
	return l.ID
}

var loanCode = regexp.MustCompile(`code to accept is (\d{6})`)

// loanCodes are the loan acceptance codes the development SMS sender
// logged, oldest first.
func (m *matrix) loanCodes() []string {
	var out []string
	for _, line := range m.tani.Logs() {
		if c := loanCode.FindStringSubmatch(line); c != nil {
			out = append(out, c[1])
		}
	}
	return out
}

// redeem redeems a voucher on the chain for distributor A, as the
// marketplace does on a verified delivery: 25,000,000 of seed.
func (m *matrix) redeem(t *testing.T, voucher string) {
	t.Helper()
	ctx := context.Background()
	chain := m.tani.App.Vouchers()
	v, err := chain.Get(ctx, voucher)
	if err != nil {
		t.Fatalf("voucher %s: %v", voucher, err)
	}
	if _, err := chain.Redeem(ctx, "DistributorMSP", voucher, vouchers.RedeemRequest{DistributorOrg: m.distA.id, DeliveryID: uuid.NewString(), LeafIndex: 1,
		ReceiptHash: strings.Repeat("cd", 32), Region: v.Region, Goods: []vouchers.Goods{{Category: "seed", Amount: vouchers.Money{Minor: 25_000_000, Currency: "IDR"}}}}); err != nil {
		t.Fatalf("redeem voucher %s: %v", voucher, err)
	}
}

// settle waits until every event is published and no table has changed
// for half a second: what a call set going in the background (journal
// appends, attestation, projections, events: steps that each wait on the
// one before) has landed, so that the next refused call's before and
// after see only that call.
func (m *matrix) settle(t *testing.T) {
	t.Helper()
	var last map[string]string
	var since time.Time
	polltest.Eventually(t, 60*time.Second, func() error {
		now := m.snapshot(t)
		if last == nil || !maps.Equal(now, last) {
			last, since = now, time.Now()
			return fmt.Errorf("tables still changing")
		}
		var unpublished int
		if err := m.tani.DB.QueryRow(context.Background(), `SELECT count(*) FROM events.outbox WHERE published_at IS NULL`).Scan(&unpublished); err != nil {
			return err
		}
		if unpublished > 0 || time.Since(since) < 500*time.Millisecond {
			return fmt.Errorf("%d events unpublished, tables unchanged for %s", unpublished, time.Since(since))
		}
		return nil
	})
}
