package app

import (
	"encoding/json"
	"fmt"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/services/webhooks"
)

// organizationDocument is the OpenAPI document a bank or distributor reads
// at <prefix>/openapi.json: the serving module's own document (base) with
// every other module's routes under the same prefix merged in — identity's
// (users, API keys), consent's (consent requests, consents) and the
// webhooks' (endpoints, deliveries, events, and the event catalogue). A
// path or schema two parts both define is an error, never overwritten.
func organizationDocument(base []byte, prefix string, kind identity.Kind) ([]byte, error) {
	var d map[string]any
	if err := json.Unmarshal(base, &d); err != nil {
		return nil, fmt.Errorf("openapi document of %s: %w", prefix, err)
	}
	paths := section(d, "paths")
	components := section(d, "components")
	schemas := section(components, "schemas")
	for _, part := range []func(string) (map[string]any, map[string]any){identity.OpenAPIFragment, consent.OpenAPIFragment} {
		p, s := part(prefix)
		if err := addAll(paths, p, "path"); err != nil {
			return nil, err
		}
		if err := addAll(schemas, s, "schema"); err != nil {
			return nil, err
		}
	}
	doc, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return webhooks.MergeOpenAPI(doc, prefix, kind)
}

func section(d map[string]any, key string) map[string]any {
	s, _ := d[key].(map[string]any)
	if s == nil {
		s = map[string]any{}
		d[key] = s
	}
	return s
}

func addAll(into, what map[string]any, kind string) error {
	for name, v := range what {
		if _, ok := into[name]; ok {
			return fmt.Errorf("openapi: %s %q defined twice", kind, name)
		}
		into[name] = v
	}
	return nil
}
