package mobileapi_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/httpserver/openapitest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestOpenAPI_OutsideClient loads the served mobile document with
// kin-openapi, an OpenAPI 3 library we did not write, validates it as
// OpenAPI 3, and validates real requests and answers of the phone's
// representative routes against it: login (and its refusals, throttled
// included), sync, a record's status, sync-down, orders and consent
// requests page by page, and error bodies.
func TestOpenAPI_OutsideClient(t *testing.T) {
	w := mustPagedWorld(t)
	doc := openapitest.MustLoad(t, w.tani.URL, "/mobile/v1/openapi.json", "")
	agent := w.agent

	t.Run("Login", func(t *testing.T) {
		doc.Check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": agent.Username, "password": agent.Password}, http.StatusOK)
		doc.Check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": "nobody", "password": "wrong password"}, http.StatusUnauthorized)
		doc.CheckBad(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": "nobody"}, http.StatusBadRequest)
		for range 6 { // the name's allowance (5), and the failure that locks it
			doc.Check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": "locked", "password": "wrong password"}, http.StatusUnauthorized)
		}
		doc.Check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": "locked", "password": "wrong password"}, http.StatusTooManyRequests)
	})
	t.Run("SyncAndStatus", func(t *testing.T) {
		farmer := uuid.NewString()
		rec, id, err := agent.Record("farmer.registered", time.Now().Add(-time.Minute), client.Location{Lat: -7.25, Lon: 110.4, AccuracyM: 5},
			clienttest.Payloads(farmer, uuid.NewString(), time.Now())["farmer.registered"])
		if err != nil {
			t.Fatal(err)
		}
		doc.Check(t, "POST", "/mobile/v1/sync", w.token, map[string]any{"records": []json.RawMessage{rec}}, http.StatusOK)
		doc.Check(t, "GET", "/mobile/v1/records/"+id, w.token, nil, http.StatusOK)
		doc.Check(t, "GET", "/mobile/v1/records/"+uuid.NewString(), w.token, nil, http.StatusNotFound)
		doc.CheckBad(t, "POST", "/mobile/v1/sync", w.token, map[string]any{"records": []any{}}, http.StatusBadRequest)
		doc.Check(t, "GET", "/mobile/v1/farmers?limit=1", w.token, nil, http.StatusOK)
	})
	t.Run("Lists", func(t *testing.T) {
		var p page
		json.Unmarshal(doc.Check(t, "GET", "/mobile/v1/orders?limit=2", w.token, nil, http.StatusOK), &p)
		doc.Check(t, "GET", "/mobile/v1/orders?limit=2&cursor="+*p.Cursor, w.token, nil, http.StatusOK)
		doc.Check(t, "GET", "/mobile/v1/orders?farmer_id="+uuid.NewString(), w.token, nil, http.StatusOK)
		json.Unmarshal(doc.Check(t, "GET", "/mobile/v1/consent-requests?limit=2", w.token, nil, http.StatusOK), &p)
		doc.Check(t, "GET", "/mobile/v1/consent-requests?cursor="+*p.Cursor, w.token, nil, http.StatusOK)
		doc.CheckBad(t, "GET", "/mobile/v1/orders?limit=0", w.token, nil, http.StatusBadRequest)
		doc.CheckBad(t, "GET", "/mobile/v1/consent-requests?cursor=nope", w.token, nil, http.StatusBadRequest)
		doc.Check(t, "GET", "/mobile/v1/orders", "not-a-token", nil, http.StatusUnauthorized)
	})
}
