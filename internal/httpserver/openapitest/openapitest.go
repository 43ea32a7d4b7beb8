// Package openapitest holds a served OpenAPI document to what an outside
// client sees: the document is fetched from the running process, loaded
// and validated as OpenAPI 3 by kin-openapi (a library Tani did not
// write), and real requests and answers are validated against it by the
// same library. For tests only; it must never check a document with Tani's
// own code.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Doc is a served document as kin-openapi loaded it, with its router,
// and the base URL of the process that served it.
type Doc struct {
	base   string
	router routers.Router
}

// MustLoad fetches base+path (with bearer, when not empty) and loads and
// validates it as an OpenAPI 3 document, or fails the test.
func MustLoad(tb testing.TB, base, path, bearer string) *Doc {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(body)
	if err != nil {
		tb.Fatalf("%s does not load as OpenAPI: %v", path, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		tb.Fatalf("%s is not valid OpenAPI 3: %v", path, err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatalf("%s: router: %v", path, err)
	}
	return &Doc{base: base, router: router}
}

// Check makes a real call (body: nil, raw bytes, or a value sent as JSON;
// bearer when not empty), wants the status want, and has kin-openapi
// validate the request and the answer against the document: the status
// declared, the body, content type and headers as documented. It returns
// the answer's body.
func (d *Doc) Check(tb testing.TB, method, path, bearer string, body any, want int) []byte {
	tb.Helper()
	return d.call(tb, method, path, bearer, body, want, true)
}

// CheckBad is Check for a request that is wrong on purpose: only the
// answer (an error body) is validated.
func (d *Doc) CheckBad(tb testing.TB, method, path, bearer string, body any, want int) []byte {
	tb.Helper()
	return d.call(tb, method, path, bearer, body, want, false)
}

func (d *Doc) call(tb testing.TB, method, path, bearer string, body any, want int, validRequest bool) []byte {
	tb.Helper()
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
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		tb.Fatalf("%s %s: got %d %s, want %d", method, path, resp.StatusCode, got, want)
	}
	// The request as the router and validator see it (its body read
	// again).
	req.Body = io.NopCloser(bytes.NewReader(raw))
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		tb.Fatalf("%s %s: not in the document: %v", method, path, err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && validRequest {
		tb.Errorf("%s %s: the request does not match the document: %v", method, path, err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(got)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		tb.Errorf("%s %s → %d: the answer does not match the document: %v\n%s", method, path, resp.StatusCode, err, got)
	}
	return got
}
