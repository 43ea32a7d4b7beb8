package mobileapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// mobileDoc is the mobile API's document as the app's developers load it:
// served by the process, parsed and validated by kin-openapi (not by our
// code), with its router.
type mobileDoc struct {
	base   string
	router routers.Router
}

func mustMobileDoc(t *testing.T, tani *apptest.Running) mobileDoc {
	t.Helper()
	resp := tani.Get(t, "/mobile/v1/openapi.json")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mobile/v1/openapi.json: %d %s", resp.StatusCode, body)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(body)
	if err != nil {
		t.Fatalf("openapi.json does not load as OpenAPI: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("openapi.json: router: %v", err)
	}
	return mobileDoc{base: tani.URL, router: router}
}

// check makes a real call and has kin-openapi validate the request (when
// validRequest) and the answer against the document: the status
// declared, the body, content type and headers as documented. It returns
// the answer's body.
func (d mobileDoc) check(t *testing.T, method, path, token string, body any, want int, validRequest bool) []byte {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
	}
	req, err := http.NewRequest(method, d.base+path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: got %d %s, want %d", method, path, resp.StatusCode, got, want)
	}
	req.Body = io.NopCloser(bytes.NewReader(raw))
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: not in the document: %v", method, path, err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && validRequest {
		t.Errorf("%s %s: the request does not match the document: %v", method, path, err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(got)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s → %d: the answer does not match the document: %v\n%s", method, path, resp.StatusCode, err, got)
	}
	return got
}

// TestOpenAPI_OutsideClient loads the served mobile document with
// kin-openapi, an OpenAPI 3 library we did not write, validates it as
// OpenAPI 3, and validates real requests and answers of the phone's
// representative routes against it: login (and its refusals, throttled
// included), sync, a record's status, sync-down, orders and consent
// requests page by page, and error bodies.
func TestOpenAPI_OutsideClient(t *testing.T) {
	w := mustPagedWorld(t)
	doc := mustMobileDoc(t, w.tani)
	agent := w.agent

	t.Run("Login", func(t *testing.T) {
		doc.check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": agent.Username, "password": agent.Password}, http.StatusOK, true)
		doc.check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": "nobody", "password": "wrong password"}, http.StatusUnauthorized, true)
		doc.check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": "nobody"}, http.StatusBadRequest, false)
		for range 6 { // the name's allowance (5), and the failure that locks it
			doc.check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": "locked", "password": "wrong password"}, http.StatusUnauthorized, true)
		}
		doc.check(t, "POST", "/mobile/v1/auth/login", "", map[string]string{"username": "locked", "password": "wrong password"}, http.StatusTooManyRequests, true)
	})
	t.Run("SyncAndStatus", func(t *testing.T) {
		farmer := uuid.NewString()
		rec, id, err := agent.Record("farmer.registered", time.Now().Add(-time.Minute), client.Location{Lat: -7.25, Lon: 110.4, AccuracyM: 5},
			clienttest.Payloads(farmer, uuid.NewString(), time.Now())["farmer.registered"])
		if err != nil {
			t.Fatal(err)
		}
		doc.check(t, "POST", "/mobile/v1/sync", w.token, map[string]any{"records": []json.RawMessage{rec}}, http.StatusOK, true)
		doc.check(t, "GET", "/mobile/v1/records/"+id, w.token, nil, http.StatusOK, true)
		doc.check(t, "GET", "/mobile/v1/records/"+uuid.NewString(), w.token, nil, http.StatusNotFound, true)
		doc.check(t, "POST", "/mobile/v1/sync", w.token, map[string]any{"records": []any{}}, http.StatusBadRequest, false)
		doc.check(t, "GET", "/mobile/v1/farmers?limit=1", w.token, nil, http.StatusOK, true)
	})
	t.Run("Lists", func(t *testing.T) {
		var p page
		json.Unmarshal(doc.check(t, "GET", "/mobile/v1/orders?limit=2", w.token, nil, http.StatusOK, true), &p)
		doc.check(t, "GET", "/mobile/v1/orders?limit=2&cursor="+*p.Cursor, w.token, nil, http.StatusOK, true)
		doc.check(t, "GET", "/mobile/v1/orders?farmer_id="+uuid.NewString(), w.token, nil, http.StatusOK, true)
		json.Unmarshal(doc.check(t, "GET", "/mobile/v1/consent-requests?limit=2", w.token, nil, http.StatusOK, true), &p)
		doc.check(t, "GET", "/mobile/v1/consent-requests?cursor="+*p.Cursor, w.token, nil, http.StatusOK, true)
		doc.check(t, "GET", "/mobile/v1/orders?limit=0", w.token, nil, http.StatusBadRequest, false)
		doc.check(t, "GET", "/mobile/v1/consent-requests?cursor=nope", w.token, nil, http.StatusBadRequest, false)
		doc.check(t, "GET", "/mobile/v1/orders", "not-a-token", nil, http.StatusUnauthorized, true)
	})
}
