package consent

import (
	_ "embed"
	"encoding/json"
)

//go:embed openapi.json
var openAPIFragment []byte

// OpenAPIFragment is this package's part of an organization API's
// OpenAPI 3 document (/bank/v1 or /distributor/v1, given as prefix): its
// paths, prefixed, and the component schemas they use. Error answers
// refer to the document's #/components/schemas/Error. The service that
// serves the document merges it in; TestOpenAPIFragments holds it to the
// routes.
func OpenAPIFragment(prefix string) (paths, schemas map[string]any) {
	var f struct {
		Paths   map[string]any `json:"paths"`
		Schemas map[string]any `json:"schemas"`
	}
	if err := json.Unmarshal(openAPIFragment, &f); err != nil {
		panic("consent: openapi.json: " + err.Error()) // embedded and tested: cannot happen
	}
	paths = make(map[string]any, len(f.Paths))
	for p, v := range f.Paths {
		paths[prefix+p] = v
	}
	return paths, f.Schemas
}
