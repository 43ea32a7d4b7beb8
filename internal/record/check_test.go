package record_test

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

var now = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func envelope(typ string, payload map[string]any) map[string]any {
	return map[string]any{
		"id": uuid.NewString(), "type": typ, "captured_at": now.Add(-time.Hour).Format(time.RFC3339),
		"device_id": uuid.NewString(),
		"location":  map[string]any{"lat": -7.25, "lon": 110.4, "accuracy_m": 4.5, "mock": false},
		"payload":   payload, "signature": strings.Repeat("A", 86) + "==",
	}
}

func square(lon, lat, d float64) map[string]any {
	return map[string]any{"type": "Polygon", "coordinates": [][][]float64{{{lon, lat}, {lon + d, lat}, {lon + d, lat - d}, {lon, lat - d}, {lon, lat}}}}
}

func validPayloads() map[string]map[string]any {
	farmer, plot := uuid.NewString(), uuid.NewString()
	return map[string]map[string]any{
		"farmer.registered": {"farmer_id": farmer, "name": "Siti Aminah", "national_id": "3374015505800001", "phone": "+6281234567890",
			"village": "Sukamaju", "gender": "female", "birth_year": 1980},
		"plot.mapped": {"farmer_id": farmer, "plot_id": plot, "boundary": square(110.4, -7.25, 0.001),
			"declared_area": map[string]any{"value": 1.7, "unit": "bau"}, "tenure": "owned", "gps_accuracy_m": 3.2, "mock_location": false},
		"crop.planted": {"farmer_id": farmer, "plot_id": plot, "crop": "rice", "variety": "IR64", "planted_on": "2026-10-01", "expected_harvest_on": "2027-01-20"},
		"input.applied": {"farmer_id": farmer, "plot_id": plot, "product": "Urea", "category": "fertilizer",
			"quantity": map[string]any{"value": 50, "unit": "kg"}, "applied_on": "2026-10-15"},
		"harvest.recorded": {"farmer_id": farmer, "plot_id": plot, "crop": "rice", "quantity": map[string]any{"value": 4.2, "unit": "t"},
			"quality_grade": "A", "harvested_on": "2026-11-20"},
		"sale.recorded": {"farmer_id": farmer, "buyer": "KUD Makmur", "crop": "rice", "quantity": map[string]any{"value": 40, "unit": "quintal"},
			"price": map[string]any{"amount": 2200000000, "currency": "IDR"}, "sold_on": "2026-11-21"},
		"consent.granted": {"farmer_id": farmer, "consent_id": uuid.NewString(), "grantee_organization_id": uuid.NewString(),
			"scopes": []string{"plots", "harvests"}, "expires_at": "2027-05-20T00:00:00Z", "otp_challenge_id": uuid.NewString(), "otp_code": "493021"},
		"consent.revoked": {"farmer_id": farmer, "consent_id": uuid.NewString(), "reason": "changed bank"},
		"consent.refused": {"farmer_id": farmer, "consent_id": uuid.NewString(), "grantee_organization_id": uuid.NewString(), "reason": "not now"},
		"loan.applied": {"farmer_id": farmer, "loan_id": uuid.NewString(), "product_id": uuid.NewString(),
			"amount": map[string]any{"amount": 500000000, "currency": "IDR"}, "purpose": "fertilizer for the wet season"},
		"loan.accepted": {"farmer_id": farmer, "loan_id": uuid.NewString(), "terms_sha256": strings.Repeat("ab", 32),
			"otp_challenge_id": uuid.NewString(), "otp_code": "493021"},
		"repayment.collected": {"farmer_id": farmer, "loan_id": uuid.NewString(), "amount": map[string]any{"amount": 100000000, "currency": "IDR"},
			"payer_reference": "RB-0042/17", "collected_on": "2026-11-20"},
	}
}

func check(t *testing.T, rec map[string]any) []string {
	t.Helper()
	raw, _ := json.Marshal(rec)
	_, problems := record.Check(validate.New(), raw, now)
	var fields []string
	for _, p := range problems {
		fields = append(fields, p.Field+": "+p.Message)
	}
	return fields
}

func TestCheck(t *testing.T) {
	for typ, payload := range validPayloads() {
		t.Run("OK_"+typ, func(t *testing.T) {
			if got := check(t, envelope(typ, payload)); len(got) > 0 {
				t.Errorf("valid %s refused: %v", typ, got)
			}
		})
	}
	p := validPayloads()
	mutate := func(typ string, f func(map[string]any)) map[string]any {
		rec := envelope(typ, p[typ])
		cp := map[string]any{}
		for k, v := range p[typ] {
			cp[k] = v
		}
		rec["payload"] = cp
		f(rec)
		return rec
	}
	open := map[string]any{"type": "Polygon", "coordinates": [][][]float64{{{110, -7}, {110.001, -7}, {110.001, -7.001}, {110, -7.001}}}}
	open2 := map[string]any{"type": "Polygon", "coordinates": [][][]float64{{{110, -7}, {110.001, -7}, {110.001, -7.001}, {110, -7.001}, {110, -7.0005}}}}
	bowtie := map[string]any{"type": "Polygon", "coordinates": [][][]float64{{{110, -7}, {110.001, -7.001}, {110.001, -7}, {110, -7.001}, {110, -7}}}}
	outOfRange := map[string]any{"type": "Polygon", "coordinates": [][][]float64{{{190, -7}, {110.001, -7}, {110.001, -7.001}, {190, -7}}}}
	tests := []struct {
		name string
		rec  map[string]any
		want string // a field error containing this
	}{
		{"ErrUnknownType", mutate("sale.recorded", func(r map[string]any) { r["type"] = "weather.observed" }), "type: must be one of"},
		{"ErrCapturedInFuture", mutate("sale.recorded", func(r map[string]any) { r["captured_at"] = now.Add(time.Hour).Format(time.RFC3339) }), "captured_at: is in the future"},
		{"ErrCapturedNotRFC3339", mutate("sale.recorded", func(r map[string]any) { r["captured_at"] = "yesterday" }), "captured_at: must be an RFC 3339 time"},
		{"ErrMissingSignature", mutate("sale.recorded", func(r map[string]any) { delete(r, "signature") }), "signature: is required"},
		{"ErrMissingLocation", mutate("sale.recorded", func(r map[string]any) { delete(r, "location") }), "location: is required"},
		{"ErrLatitudeOutOfRange", mutate("sale.recorded", func(r map[string]any) { r["location"] = map[string]any{"lat": 95.0, "lon": 110.0} }), "location.lat: must be a latitude"},
		{"ErrMissingPayloadField", mutate("harvest.recorded", func(r map[string]any) { delete(r["payload"].(map[string]any), "plot_id") }), "payload.plot_id: is required"},
		{"ErrUnknownPayloadField", mutate("harvest.recorded", func(r map[string]any) { r["payload"].(map[string]any)["moisture"] = 14 }), "payload.moisture: unknown field"},
		{"ErrWrongPayloadType", mutate("harvest.recorded", func(r map[string]any) { r["payload"].(map[string]any)["quality_grade"] = 1 }), "payload.quality_grade: must be a string"},
		{"ErrHarvestNotMass", mutate("harvest.recorded", func(r map[string]any) {
			r["payload"].(map[string]any)["quantity"] = map[string]any{"value": 2, "unit": "ha"}
		}), "payload.quantity.unit: must be a mass"},
		{"ErrOpenPolygon", mutate("plot.mapped", func(r map[string]any) { r["payload"].(map[string]any)["boundary"] = open2 }), "ring is open"},
		{"ErrTooFewPositions", mutate("plot.mapped", func(r map[string]any) { r["payload"].(map[string]any)["boundary"] = open }), "payload.boundary.coordinates[0]"},
		{"ErrSelfIntersecting", mutate("plot.mapped", func(r map[string]any) { r["payload"].(map[string]any)["boundary"] = bowtie }), "self-intersecting"},
		{"ErrCoordinatesOutOfRange", mutate("plot.mapped", func(r map[string]any) { r["payload"].(map[string]any)["boundary"] = outOfRange }), "out of range"},
		{"ErrHarvestBeforePlanting", mutate("crop.planted", func(r map[string]any) { r["payload"].(map[string]any)["expected_harvest_on"] = "2026-09-01" }), "payload.expected_harvest_on: must be after planted_on"},
		{"ErrUnknownCrop", mutate("crop.planted", func(r map[string]any) { r["payload"].(map[string]any)["crop"] = "tulips" }), "payload.crop: must be one of"},
		{"ErrBadPhone", mutate("farmer.registered", func(r map[string]any) { r["payload"].(map[string]any)["phone"] = "0812-345" }), "payload.phone: must be a phone number"},
		{"ErrBadCurrency", mutate("sale.recorded", func(r map[string]any) {
			r["payload"].(map[string]any)["price"] = map[string]any{"amount": 10, "currency": "XYZ"}
		}), "payload.price.currency: must be an ISO 4217"},
		{"ErrNoScopes", mutate("consent.granted", func(r map[string]any) { r["payload"].(map[string]any)["scopes"] = []string{} }), "payload.scopes"},
		{"ErrLoanZeroAmount", mutate("loan.applied", func(r map[string]any) {
			r["payload"].(map[string]any)["amount"] = map[string]any{"amount": 0, "currency": "IDR"}
		}), "payload.amount.amount: must be > 0"},
		{"ErrLoanNegativeAmount", mutate("repayment.collected", func(r map[string]any) {
			r["payload"].(map[string]any)["amount"] = map[string]any{"amount": -5, "currency": "IDR"}
		}), "payload.amount.amount: must be > 0"},
		{"ErrLoanUppercaseID", mutate("loan.applied", func(r map[string]any) { r["payload"].(map[string]any)["loan_id"] = strings.ToUpper(uuid.NewString()) }), "payload.loan_id"},
		{"ErrLoanNoPurpose", mutate("loan.applied", func(r map[string]any) { r["payload"].(map[string]any)["purpose"] = "" }), "payload.purpose"},
		{"ErrAcceptBadTermsHash", mutate("loan.accepted", func(r map[string]any) { r["payload"].(map[string]any)["terms_sha256"] = "abc" }), "payload.terms_sha256"},
		{"ErrAcceptShortCode", mutate("loan.accepted", func(r map[string]any) { r["payload"].(map[string]any)["otp_code"] = "12345" }), "payload.otp_code"},
		{"ErrRepaymentInFuture", mutate("repayment.collected", func(r map[string]any) { r["payload"].(map[string]any)["collected_on"] = "2027-06-01" }), "payload.collected_on: is in the future"},
		{"ErrRepaymentNoReference", mutate("repayment.collected", func(r map[string]any) { r["payload"].(map[string]any)["payer_reference"] = "" }), "payload.payer_reference"},
		{"ErrRepaymentReferenceNotASCII", mutate("repayment.collected", func(r map[string]any) { r["payload"].(map[string]any)["payer_reference"] = "reçu 1" }), "payload.payer_reference"},
		{"ErrBadScope", mutate("consent.granted", func(r map[string]any) { r["payload"].(map[string]any)["scopes"] = []string{"everything"} }), "payload.scopes[0]: must be one of"},
		// captured 2026-11-23T09:00Z: 180 days later is 2027-05-22T09:00Z.
		{"ErrConsentOver180Days", mutate("consent.granted", func(r map[string]any) { r["payload"].(map[string]any)["expires_at"] = "2027-05-22T09:00:01Z" }), "payload.expires_at: must be at most 180 days after captured_at"},
		{"ErrConsentExpiredAtCapture", mutate("consent.granted", func(r map[string]any) { r["payload"].(map[string]any)["expires_at"] = "2026-11-23T09:00:00Z" }), "payload.expires_at: must be after captured_at"},
		{"ErrRefusalWithoutGrantee", mutate("consent.refused", func(r map[string]any) { delete(r["payload"].(map[string]any), "grantee_organization_id") }), "payload.grantee_organization_id: is required"},
		{"ErrRefusalReasonTooLong", mutate("consent.refused", func(r map[string]any) { r["payload"].(map[string]any)["reason"] = strings.Repeat("x", 501) }), "payload.reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(t, tt.rec)
			if !strings.Contains(strings.Join(got, "\n"), tt.want) {
				t.Errorf("problems = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestSignature(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	lat, lon := -7.25, 110.4
	env := record.Envelope{ID: uuid.NewString(), Type: "consent.revoked", CapturedAt: now.Format(time.RFC3339), DeviceID: uuid.NewString(),
		Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: 5}, Payload: json.RawMessage(`{"farmer_id":"` + uuid.NewString() + `","consent_id":"` + uuid.NewString() + `"}`)}
	signed, raw, err := record.Sign(key, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		if err := record.Verify(pub, raw, signed.Signature); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OK_ReserializedStillVerifies", func(t *testing.T) {
		var m map[string]any
		json.Unmarshal(raw, &m)
		pretty, _ := json.MarshalIndent(m, "", "    ")
		if err := record.Verify(pub, pretty, signed.Signature); err != nil {
			t.Errorf("whitespace and member order changed the signing input: %v", err)
		}
	})
	t.Run("ErrTamperedPayload", func(t *testing.T) {
		tampered := strings.Replace(string(raw), `"accuracy_m":5`, `"accuracy_m":50`, 1)
		if err := record.Verify(pub, []byte(tampered), signed.Signature); err == nil {
			t.Error("tampered record verified")
		}
	})
	t.Run("ErrAddedMember", func(t *testing.T) {
		added := strings.Replace(string(raw), `{"id"`, `{"extra":1,"id"`, 1)
		if err := record.Verify(pub, []byte(added), signed.Signature); err == nil {
			t.Error("record with an added member verified")
		}
	})
	t.Run("ErrOtherKey", func(t *testing.T) {
		other, _, _ := ed25519.GenerateKey(nil)
		if err := record.Verify(other, raw, signed.Signature); err == nil {
			t.Error("verified under another device's key")
		}
	})
}
