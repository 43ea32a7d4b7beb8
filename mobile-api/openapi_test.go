package mobileapi_test

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
	mobileapi "github.com/tani-platform/tani/mobile-api"
)

// TestOpenAPI_MatchesRoutes holds the document to the routes the running
// process really serves under /mobile/v1, in both directions.
func TestOpenAPI_MatchesRoutes(t *testing.T) {
	tani := apptest.MustStart(t, "-target=mobile-api")
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(mobileapi.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	param := regexp.MustCompile(`:(\w+)`)
	seen := map[string]bool{}
	var served []string
	for _, r := range tani.App.Routes() {
		if !strings.HasPrefix(r.Path, "/mobile/v1/") || r.Method == "echo_route_not_found" {
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

	resp := tani.Get(t, "/mobile/v1/openapi.json")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !json.Valid(body) {
		t.Errorf("GET /mobile/v1/openapi.json = %d, valid JSON %v", resp.StatusCode, json.Valid(body))
	}
}
