package marketplace_test

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/internal/app/apptest"
)

// TestOpenAPI_MatchesRoutes holds the document to every route the running
// process serves under /distributor/v1 (the marketplace's and identity's
// own-organization routes), in both directions, and serves it — to anyone,
// like the banks' document: the same bytes without a credential as with a
// distributor's key.
func TestOpenAPI_MatchesRoutes(t *testing.T) {
	// Target all: the document must cover every module's routes under
	// /distributor/v1 (consent requests, users, keys, webhooks…).
	tani := apptest.MustStart(t)
	d := mustDistributor(t, tani)
	var raw json.RawMessage
	if code := d.call(t, tani, "GET", "/distributor/v1/openapi.json", nil, &raw); code != 200 {
		t.Fatalf("GET /distributor/v1/openapi.json = %d", code)
	}
	for _, prefix := range []string{"/distributor/v1", "/bank/v1"} {
		resp := tani.Get(t, prefix+"/openapi.json")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !json.Valid(body) {
			t.Errorf("GET %s/openapi.json without a credential = %d, want 200 and the document", prefix, resp.StatusCode)
		}
		if prefix == "/distributor/v1" && !bytes.Equal(body, raw) {
			t.Errorf("the document served without a credential differs from the one served with a key")
		}
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	param := regexp.MustCompile(`:(\w+)`)
	seen := map[string]bool{}
	var served []string
	for _, r := range tani.App.Routes() {
		if !strings.HasPrefix(r.Path, "/distributor/v1/") || r.Method == "echo_route_not_found" {
			continue
		}
		key := r.Method + " " + param.ReplaceAllString(r.Path, "{$1}")
		if !seen[key] {
			seen[key] = true
			served = append(served, key)
		}
	}
	sort.Strings(documented)
	sort.Strings(served)
	if diff := cmp.Diff(documented, served); diff != "" {
		t.Errorf("documented (-) vs served (+) routes:\n%s", diff)
	}
}
