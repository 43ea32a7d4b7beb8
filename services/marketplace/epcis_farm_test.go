package marketplace_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/services/marketplace"
)

// farmRecord stores a harvest or a sale as ingest and attest would: the
// fact, and attest's decision with its journal leaf.
func (e *env) farmRecord(t *testing.T, typ, farmer string, leaf int64, status string, fact func(id string) (string, []any)) string {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	q, args := fact(id)
	if _, err := e.pool.Exec(ctx, q, args...); err != nil {
		t.Fatal(err)
	}
	var leafArg any
	if status == "verified" {
		leafArg = leaf
	}
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO attest.records (record_id, type, farmer_id, agent_id, device_id, captured_at, sealed_record, signature_ref, status, leaf_index, decided_at)
		VALUES ($1, $2, $3, $4, $5, now() - interval '1 hour', '\x00', 'test', $6, $7, now())`, id, typ, farmer, uuid.NewString(), uuid.NewString(), status, leafArg); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) harvest(t *testing.T, farmer, plot string, kg float64, leaf int64, status string) string {
	return e.farmRecord(t, "harvest.recorded", farmer, leaf, status, func(id string) (string, []any) {
		return `INSERT INTO ingest.harvests (record_id, farmer_id, plot_id, crop, quantity_kg, quality_grade, harvested_on) VALUES ($1, $2, $3, 'rice', $4, 'A', current_date - 3)`,
			[]any{id, farmer, plot, kg}
	})
}

func (e *env) sale(t *testing.T, farmer string, kg float64, price int64, leaf int64, status string) string {
	return e.farmRecord(t, "sale.recorded", farmer, leaf, status, func(id string) (string, []any) {
		return `INSERT INTO ingest.sales (record_id, farmer_id, buyer, crop, quantity_kg, price_minor, currency, sold_on) VALUES ($1, $2, 'KUD Sri Rejeki', 'rice', $3, $4, 'IDR', current_date - 1)`,
			[]any{id, farmer, kg, price}
	})
}

// TestEPCIS_HarvestsAndSales exports a farmer's verified harvests as
// ObjectEvents and sales as TransactionEvents, validated against GS1's
// EPCIS 2.0 schema; each export is read through the consent gate with its
// own scope, leaves out records attest did not verify, pages by cursor,
// and is refused once the farmer was erased.
func TestEPCIS_HarvestsAndSales(t *testing.T) {
	sch := mustEPCISSchema(t)
	e := mustEnv(t, nil)
	ctx := context.Background()
	farmer, plot := uuid.NewString(), uuid.NewString()
	h1 := e.harvest(t, farmer, plot, 4200, 10, "verified")
	h2 := e.harvest(t, farmer, plot, 3900, 20, "verified")
	e.harvest(t, farmer, plot, 99000, 0, "flagged")
	s1 := e.sale(t, farmer, 4000, 2000000000, 30, "verified")
	e.sale(t, farmer, 1, 1, 0, "rejected")
	e.harvest(t, uuid.NewString(), uuid.NewString(), 1000, 40, "verified") // another farmer's

	validate := func(t *testing.T, doc marketplace.EPCISDocument) []map[string]any {
		t.Helper()
		b, _ := json.Marshal(doc)
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(v); err != nil {
			t.Fatalf("the export does not validate against the EPCIS 2.0 schema: %v\n%s", err, b)
		}
		var out struct {
			Body struct {
				EventList []map[string]any `json:"eventList"`
			} `json:"epcisBody"`
		}
		json.Unmarshal(b, &out)
		return out.Body.EventList
	}

	t.Run("ErrNoConsent", func(t *testing.T) {
		for _, scope := range []consent.Scope{consent.Harvests, consent.Sales} {
			if _, _, err := e.svc.FarmEPCIS(ctx, e.a, "r0", farmer, scope, "", 0); !errors.Is(err, consent.Denied) {
				t.Errorf("%s without consent: %v, want the gate's denial", scope, err)
			}
		}
	})
	e.grant(t, farmer, e.a.OrganizationID, "harvests")
	t.Run("ErrSalesNotConsented", func(t *testing.T) {
		if _, _, err := e.svc.FarmEPCIS(ctx, e.a, "r1", farmer, consent.Sales, "", 0); !errors.Is(err, consent.Denied) {
			t.Errorf("sales with a harvests-only consent: %v, want the gate's denial", err)
		}
	})
	t.Run("ErrOtherDistributor", func(t *testing.T) {
		if _, _, err := e.svc.FarmEPCIS(ctx, e.b, "r2", farmer, consent.Harvests, "", 0); !errors.Is(err, consent.Denied) {
			t.Errorf("B read A's consenting farmer's harvests: %v", err)
		}
	})
	t.Run("OK_Harvests", func(t *testing.T) {
		doc, next, err := e.svc.FarmEPCIS(ctx, e.a, "r3", farmer, consent.Harvests, "", 0)
		if err != nil || next != "" {
			t.Fatalf("harvests: %v (next %q)", err, next)
		}
		ev := validate(t, doc)
		if len(ev) != 2 || ev[0]["eventID"] != "urn:uuid:"+h2 || ev[1]["eventID"] != "urn:uuid:"+h1 {
			t.Fatalf("events = %v, want the two verified harvests, newest first", ev)
		}
		want := map[string]any{"type": "ObjectEvent", "action": "ADD", "bizStep": "creating_class_instance", "disposition": "active",
			"bizLocation": map[string]any{"id": "urn:tani:plot:" + plot}, "tani:journalLeaf": float64(20)}
		for k, v := range want {
			if got, _ := json.Marshal(ev[0][k]); string(got) != mustJSON(v) {
				t.Errorf("%s = %s, want %s", k, got, mustJSON(v))
			}
		}
		q := ev[0]["quantityList"].([]any)[0].(map[string]any)
		if q["epcClass"] != "urn:tani:crop:rice" || q["quantity"] != 3900.0 || q["uom"] != "KGM" {
			t.Errorf("quantity %v, want 3900 KGM of urn:tani:crop:rice", q)
		}
		if ilmd := ev[0]["ilmd"].(map[string]any); ilmd["tani:qualityGrade"] != "A" || ilmd["tani:harvestedOn"] != e.now.AddDate(0, 0, -3).Format(time.DateOnly) {
			t.Errorf("ilmd %v", ilmd)
		}
		first, next, err := e.svc.FarmEPCIS(ctx, e.a, "r4", farmer, consent.Harvests, "", 1)
		if err != nil || next == "" || len(first.Body.EventList) != 1 {
			t.Fatalf("page 1: %d events, next %q, %v", len(first.Body.EventList), next, err)
		}
		second, last, err := e.svc.FarmEPCIS(ctx, e.a, "r5", farmer, consent.Harvests, next, 1)
		if ev := validate(t, second); err != nil || last != "" || len(ev) != 1 || ev[0]["eventID"] != "urn:uuid:"+h1 {
			t.Errorf("page 2: %v, next %q, %v", ev, last, err)
		}
	})
	e.grant(t, farmer, e.a.OrganizationID, "sales")
	t.Run("OK_Sales", func(t *testing.T) {
		doc, _, err := e.svc.FarmEPCIS(ctx, e.a, "r6", farmer, consent.Sales, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		ev := validate(t, doc)
		if len(ev) != 1 || ev[0]["eventID"] != "urn:uuid:"+s1 {
			t.Fatalf("events = %v, want the verified sale", ev)
		}
		want := map[string]any{"type": "TransactionEvent", "action": "ADD", "bizStep": "shipping", "disposition": "in_transit",
			"bizTransactionList": []any{map[string]any{"bizTransaction": "urn:tani:sale:" + s1}},
			"sourceList":         []any{map[string]any{"type": "owning_party", "source": "urn:tani:farmer:" + farmer}},
			"tani:buyer":         "KUD Sri Rejeki", "tani:price": map[string]any{"amount": 2000000000, "currency": "IDR"}}
		for k, v := range want {
			if got, _ := json.Marshal(ev[0][k]); string(got) != mustJSON(v) {
				t.Errorf("%s = %s, want %s", k, got, mustJSON(v))
			}
		}
		t.Run("ErrDispositionOutsideCBV", func(t *testing.T) {
			b, _ := json.Marshal(doc)
			bad := strings.Replace(string(b), `"disposition":"in_transit"`, `"disposition":"sold_at_market"`, 1)
			v, _ := jsonschema.UnmarshalJSON(strings.NewReader(bad))
			if err := sch.Validate(v); err == nil {
				t.Error("a disposition outside the CBV validated: the schema check cannot fail")
			}
		})
	})
	t.Run("ErrBadCursor", func(t *testing.T) {
		if _, _, err := e.svc.FarmEPCIS(ctx, e.a, "r7", farmer, consent.Harvests, "!!", 0); err == nil || !strings.Contains(fieldsOf(err), "cursor") {
			t.Errorf("bad cursor: %v", err)
		}
	})
	t.Run("ErrErasedFarmer", func(t *testing.T) {
		if _, err := e.pool.Exec(ctx, `INSERT INTO marketplace.erasures (erasure_id, farmer_id) VALUES ($1, $2)`, uuid.NewString(), farmer); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.FarmEPCIS(ctx, e.a, "r8", farmer, consent.Harvests, "", 0); err == nil || !strings.Contains(err.Error(), "asked to be forgotten") {
			t.Errorf("harvests of an erased farmer: %v, want refused", err)
		}
	})
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
