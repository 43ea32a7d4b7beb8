package record_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/record"
)

func TestSigningInputOf(t *testing.T) {
	lat, lon := -7.25, 110.4
	env := record.Envelope{
		ID: "0d9c3a4e-5b7f-4c1e-9a2b-3c4d5e6f7a8b", Type: "sale.recorded", CapturedAt: "2026-01-02T03:04:05Z",
		DeviceID: "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: 4.5},
		Payload: json.RawMessage(`{"b":1e21,"a":[0.1,-0,"x"],"z":"é😀<&>\u0001\"\\/","€":null,"😀":1,"\ud7ff":2}`),
	}
	_, key, _ := ed25519.GenerateKey(nil)
	_, signed, err := record.Sign(key, env)
	if err != nil {
		t.Fatal(err)
	}
	// Members a device might add beside the envelope: odd keys must sort
	// and escape exactly as RFC 8785 says.
	var obj map[string]any
	if err := json.Unmarshal(signed, &obj); err != nil {
		t.Fatal(err)
	}
	obj["\u0007bell"], obj["\U0001F600emoji"], obj["\uffefhigh"], obj["quote\"d"] = 1, 2, 3, 4
	extra, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}

	for name, raw := range map[string][]byte{"Signed": signed, "ExtraMembers": extra} {
		t.Run("OK_SameAsSigningInput_"+name, func(t *testing.T) {
			want, err := record.SigningInput(raw)
			if err != nil {
				t.Fatal(err)
			}
			canonical, err := record.Canonical(raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := record.SigningInputOf(canonical)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("SigningInputOf =\n%s\nwant\n%s", got, want)
			}
		})
	}

	canonical, err := record.Canonical(signed)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK_VerifyCanonical", func(t *testing.T) {
		if err := record.VerifyCanonical(key.Public().(ed25519.PublicKey), canonical, signatureOf(t, signed)); err != nil {
			t.Errorf("VerifyCanonical: %v", err)
		}
	})
	t.Run("ErrBadSignature_Tampered", func(t *testing.T) {
		tampered, err := record.Canonical([]byte(string(signed[:len(signed)-1]) + `,"extra":true}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := record.VerifyCanonical(key.Public().(ed25519.PublicKey), tampered, signatureOf(t, signed)); !errors.Is(err, record.ErrBadSignature) {
			t.Errorf("VerifyCanonical of a tampered record = %v, want ErrBadSignature", err)
		}
	})
	t.Run("ErrNotObject", func(t *testing.T) {
		if _, err := record.SigningInputOf([]byte(`[1,2]`)); err == nil {
			t.Error("SigningInputOf of an array succeeded, want an error")
		}
	})
}

func signatureOf(t testing.TB, raw []byte) string {
	t.Helper()
	var env record.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	return env.Signature
}

// BenchmarkVerify compares checking a signature from the raw record with
// checking it from the canonical form the server computes anyway.
func BenchmarkVerify(b *testing.B) {
	lat, lon := -7.25, 110.4
	_, key, _ := ed25519.GenerateKey(nil)
	_, raw, err := record.Sign(key, record.Envelope{
		ID: "0d9c3a4e-5b7f-4c1e-9a2b-3c4d5e6f7a8b", Type: "plot.mapped", CapturedAt: time.Now().UTC().Format(time.RFC3339),
		DeviceID: "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: 4},
		Payload: json.RawMessage(`{"farmer_id":"2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f","plot_id":"3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a",` +
			`"boundary":{"type":"Polygon","coordinates":[[[110.4,-7.25],[110.401,-7.25],[110.401,-7.251],[110.4,-7.251],[110.4,-7.25]]]},` +
			`"declared_area":{"value":1.2,"unit":"ha"},"tenure":"owned","gps_accuracy_m":3.5,"mock_location":false}`),
	})
	if err != nil {
		b.Fatal(err)
	}
	pub, sig := key.Public().(ed25519.PublicKey), signatureOf(b, raw)
	b.Run("Sign", func(b *testing.B) {
		var env record.Envelope
		if err := json.Unmarshal(raw, &env); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, _, err := record.Sign(key, env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CanonicalThenVerifyRaw", func(b *testing.B) { // what /sync and ingest did
		for b.Loop() {
			if _, err := record.Canonical(raw); err != nil {
				b.Fatal(err)
			}
			if err := record.Verify(pub, raw, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CanonicalThenVerifyCanonical", func(b *testing.B) {
		for b.Loop() {
			c, err := record.Canonical(raw)
			if err != nil {
				b.Fatal(err)
			}
			if err := record.VerifyCanonical(pub, c, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}
