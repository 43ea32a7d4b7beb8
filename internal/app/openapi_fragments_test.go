package app_test

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
)

// TestOpenAPIFragments holds identity's and consent's parts of the banks'
// and distributors' OpenAPI documents to the routes those packages mount
// under /bank/v1 and /distributor/v1, both ways, and checks that every
// schema they refer to is theirs (or the document's Error).
func TestOpenAPIFragments(t *testing.T) {
	tani := apptest.MustStart(t, "-target=consents")
	param := regexp.MustCompile(`:(\w+)`)
	for _, prefix := range []string{"/bank/v1", "/distributor/v1"} {
		documented := map[string]bool{}
		schemas := map[string]any{}
		for _, f := range []func(string) (map[string]any, map[string]any){consent.OpenAPIFragment, identity.OpenAPIFragment} {
			paths, s := f(prefix)
			for p, ops := range paths {
				for m := range ops.(map[string]any) {
					documented[strings.ToUpper(m)+" "+p] = true
				}
			}
			for n, v := range s {
				schemas[n] = v
			}
			raw, _ := json.Marshal(paths)
			sch, _ := json.Marshal(s)
			for _, m := range regexp.MustCompile(`"\$ref":"#/components/(\w+)/(\w+)"`).FindAllStringSubmatch(string(raw)+string(sch), -1) {
				if _, ok := s[m[2]]; m[1] != "schemas" || !ok && m[2] != "Error" {
					t.Errorf("%s: $ref %s/%s is not in the fragment", prefix, m[1], m[2])
				}
			}
		}
		var served []string
		for _, r := range tani.App.Routes() {
			if !strings.HasPrefix(r.Path, prefix+"/") || r.Method == "echo_route_not_found" {
				continue
			}
			if !strings.Contains(r.Name, "/internal/consent.") && !strings.Contains(r.Name, "/internal/identity.") {
				continue // another module's route: its own document
			}
			served = append(served, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
		}
		var docs []string
		for k := range documented {
			docs = append(docs, k)
		}
		sort.Strings(served)
		sort.Strings(docs)
		if diff := cmp.Diff(docs, served); diff != "" {
			t.Errorf("%s: documented (-) vs served (+):\n%s", prefix, diff)
		}
	}
}
