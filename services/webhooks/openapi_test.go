package webhooks_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/services/webhooks"
)

// TestOpenAPI holds the published documents to the routes mounted and to
// the event catalogue, for both kinds of organization.
func TestOpenAPI(t *testing.T) {
	e := mustEnv(t, envOpts{cfg: fastRetries(), noRun: true})
	param := regexp.MustCompile(`:(\w+)`)
	for _, api := range []struct {
		prefix string
		kind   identity.Kind
	}{{webhooks.BankPrefix, identity.Bank}, {webhooks.DistributorPrefix, identity.Distributor}} {
		t.Run(string(api.kind), func(t *testing.T) {
			_, token := e.org(t, api.kind)
			code, b := e.do(t, http.MethodGet, api.prefix+"/webhooks/openapi.json", token, "")
			if code != http.StatusOK {
				t.Fatalf("GET openapi.json: %d %s", code, b)
			}
			var doc struct {
				OpenAPI    string                    `json:"openapi"`
				Paths      map[string]map[string]any `json:"paths"`
				Webhooks   map[string]map[string]any `json:"webhooks"`
				Components struct {
					Schemas map[string]any `json:"schemas"`
				} `json:"components"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.OpenAPI != "3.1.0" {
				t.Errorf("openapi %q", doc.OpenAPI)
			}
			var documented, served []string
			for path, ops := range doc.Paths {
				for method := range ops {
					if method != "parameters" {
						documented = append(documented, strings.ToUpper(method)+" "+path)
					}
				}
			}
			for _, r := range e.echo.Routes() {
				if strings.HasPrefix(r.Path, api.prefix+"/") && r.Method != "echo_route_not_found" {
					served = append(served, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
				}
			}
			sort.Strings(documented)
			sort.Strings(served)
			if diff := cmp.Diff(documented, served); diff != "" {
				t.Errorf("documented (-) vs served (+):\n%s", diff)
			}
			// The catalogue: one webhook per type this kind may receive,
			// its payload's data the catalogue's schema, and the same
			// types in the subscription's enum.
			var want []string
			for _, ty := range events.TypesFor(api.kind) {
				want = append(want, string(ty))
			}
			var hooks []string
			for name := range doc.Webhooks {
				hooks = append(hooks, name)
			}
			sort.Strings(hooks)
			if !slices.Equal(hooks, sorted(want)) {
				t.Errorf("webhooks section %v, want %v", hooks, want)
			}
			raw, _ := json.Marshal(doc.Components.Schemas["WebhookEndpointCreate"])
			var create struct {
				Properties struct {
					EventTypes struct {
						Items struct {
							Enum []string `json:"enum"`
						} `json:"items"`
					} `json:"event_types"`
				} `json:"properties"`
			}
			json.Unmarshal(raw, &create)
			if !slices.Equal(create.Properties.EventTypes.Items.Enum, want) {
				t.Errorf("event_types enum %v, want %v", create.Properties.EventTypes.Items.Enum, want)
			}
			for _, info := range events.Catalogue {
				if !info.For(api.kind) {
					continue
				}
				name := "WebhookPayload_" + strings.ReplaceAll(string(info.Type), ".", "_")
				var payload struct {
					Properties struct {
						Type struct{ Enum []string } `json:"type"`
						Data any                     `json:"data"`
					} `json:"properties"`
				}
				raw, _ := json.Marshal(doc.Components.Schemas[name])
				json.Unmarshal(raw, &payload)
				var wantData any
				rawData, _ := json.Marshal(info.Data)
				json.Unmarshal(rawData, &wantData)
				if !slices.Equal(payload.Properties.Type.Enum, []string{string(info.Type)}) || !reflect.DeepEqual(payload.Properties.Data, wantData) {
					t.Errorf("%s: payload schema %s", info.Type, raw)
				}
			}
			// Every $ref resolves.
			for _, r := range regexp.MustCompile(`"\$ref":"#/components/schemas/(\w+)"`).FindAllStringSubmatch(string(b), -1) {
				if _, ok := doc.Components.Schemas[r[1]]; !ok {
					t.Errorf("$ref to missing schema %s", r[1])
				}
			}
		})
	}
}

func TestMergeOpenAPI(t *testing.T) {
	lending := []byte(`{"openapi":"3.0.3","info":{"title":"Tani bank API","version":"1"},"paths":{"/bank/v1/loans":{"get":{}}},"components":{"schemas":{"Loan":{"type":"object"}}}}`)
	merged, err := webhooks.MergeOpenAPI(lending, webhooks.BankPrefix, identity.Bank)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths      map[string]any `json:"paths"`
		XWebhooks  map[string]any `json:"x-webhooks"`
		Components struct{ Schemas map[string]any }
	}
	json.Unmarshal(merged, &d)
	if d.Paths["/bank/v1/loans"] == nil || d.Paths["/bank/v1/webhooks"] == nil || d.XWebhooks["loan.repaid"] == nil || d.Components.Schemas["Loan"] == nil || d.Components.Schemas["WebhookEndpoint"] == nil {
		t.Errorf("merged document lost or lacks parts: %s", merged)
	}
	clash := []byte(`{"openapi":"3.1.0","paths":{"/bank/v1/webhooks":{}}}`)
	if _, err := webhooks.MergeOpenAPI(clash, webhooks.BankPrefix, identity.Bank); err == nil {
		t.Error("a path the document already has was overwritten")
	}
	if _, err := webhooks.MergeOpenAPI([]byte(`{`), webhooks.BankPrefix, identity.Bank); err == nil {
		t.Error("malformed document accepted")
	}
}
