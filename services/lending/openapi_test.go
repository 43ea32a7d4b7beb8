package lending_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/services/lending"
)

// TestOpenAPI_MatchesRoutes holds the banks' document to every route the
// whole process serves under /bank/v1 — lending's and any other module's
// (consent requests, webhooks…) — in both directions, so that a route
// added to the banks' API by anyone must be documented here.
func TestOpenAPI_MatchesRoutes(t *testing.T) {
	tani := apptest.MustStart(t)
	// The document the process serves (no key needed): lending's with the
	// other modules' parts merged in.
	resp := tani.Get(t, "/bank/v1/openapi.json")
	served, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /bank/v1/openapi.json = %d", resp.StatusCode)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(served, &doc); err != nil {
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
	var routes []string
	for _, r := range tani.App.Routes() {
		if !strings.HasPrefix(r.Path, "/bank/v1/") || r.Method == "echo_route_not_found" {
			continue
		}
		key := r.Method + " " + param.ReplaceAllString(r.Path, "{$1}")
		if !seen[key] {
			seen[key] = true
			routes = append(routes, key)
		}
	}
	sort.Strings(documented)
	sort.Strings(routes)
	if diff := cmp.Diff(documented, routes); diff != "" {
		t.Errorf("documented (-) vs served (+) routes under /bank/v1:\n%s", diff)
	}
	// Every $ref resolves.
	var whole map[string]any
	json.Unmarshal(served, &whole)
	schemas := whole["components"].(map[string]any)["schemas"].(map[string]any)
	responses := whole["components"].(map[string]any)["responses"].(map[string]any)
	for _, m := range regexp.MustCompile(`"\$ref":\s*"#/components/(schemas|responses)/(\w+)"`).FindAllStringSubmatch(string(served), -1) {
		if _, ok := map[string]map[string]any{"schemas": schemas, "responses": responses}[m[1]][m[2]]; !ok {
			t.Errorf("unresolved $ref %s/%s", m[1], m[2])
		}
	}
	if !strings.HasPrefix(string(lending.OpenAPI()), "{") || !json.Valid(lending.OpenAPI()) {
		t.Error("lending's own document is not JSON")
	}
}
