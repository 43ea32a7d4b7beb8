package record_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gowebpki/jcs"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

// signedRaw signs a record whose payload is given as raw JSON, keeping its
// bytes (and so its key order and duplicates) as a device would send them.
func signedRaw(t testing.TB, key ed25519.PrivateKey, id, typ string, captured time.Time, payload string) []byte {
	t.Helper()
	lat, lon := -7.25, 110.4
	_, raw, err := record.Sign(key, record.Envelope{ID: id, Type: typ, CapturedAt: captured.UTC().Format(time.RFC3339), DeviceID: deviceID,
		Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: 4}, Payload: json.RawMessage(payload)})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

const deviceID = "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b"

func fieldsText(problems []apperr.FieldError) string {
	var b strings.Builder
	for _, p := range problems {
		b.WriteString(p.Field + ": " + p.Message + "\n")
	}
	return b.String()
}

func TestDecode(t *testing.T) {
	v := validate.New()
	_, key, _ := ed25519.GenerateKey(nil)
	victim, own := uuid.NewString(), uuid.NewString()
	sale := func(farmer string) string {
		return `{"farmer_id":"` + farmer + `","buyer":"KUD Makmur","crop":"rice","quantity":{"value":40,"unit":"quintal"},` +
			`"price":{"amount":2200000000,"currency":"IDR"},"sold_on":"2026-11-21"}`
	}
	good := signedRaw(t, key, uuid.NewString(), "sale.recorded", now.Add(-time.Hour), sale(own))

	t.Run("OK_TypedViewIsTheCanonicalBytes", func(t *testing.T) {
		rec, problems := record.Check(v, good, now)
		if problems != nil {
			t.Fatalf("problems: %v", problems)
		}
		want, err := jcs.Transform(good)
		if err != nil {
			t.Fatal(err)
		}
		if string(rec.Canonical) != string(want) {
			t.Errorf("canonical =\n%s\nwant (gowebpki/jcs)\n%s", rec.Canonical, want)
		}
		again, problems := record.Check(v, rec.Canonical, now)
		if problems != nil || string(again.Canonical) != string(rec.Canonical) {
			t.Errorf("canonical form does not read back to itself: %v", problems)
		}
		if got := record.FarmerID(rec.Payload); got != own {
			t.Errorf("farmer = %s, want %s", got, own)
		}
		if err := rec.Verify(key.Public().(ed25519.PublicKey)); err != nil {
			t.Errorf("Verify: %v", err)
		}
		in, _ := record.SigningInput(good)
		if string(rec.SigningInput()) != string(in) {
			t.Errorf("signing input =\n%s\nwant\n%s", rec.SigningInput(), in)
		}
	})
	t.Run("ErrBadSignature", func(t *testing.T) {
		other, _, _ := ed25519.GenerateKey(nil)
		rec, _ := record.Decode(v, good, now)
		if err := rec.Verify(other); !errors.Is(err, record.ErrBadSignature) {
			t.Errorf("Verify under another key = %v, want ErrBadSignature", err)
		}
	})

	caseVariant := `{"farmer_id":"` + victim + `","buyer":"KUD Makmur","crop":"rice","quantity":{"value":40,"unit":"quintal"},` +
		`"price":{"amount":2200000000,"currency":"IDR"},"sold_on":"2026-11-21","FARMER_ID":"` + own + `"}`
	big := strings.Repeat("x", record.MaxRecordBytes)
	tests := []struct {
		name string
		raw  string
		want string // a field error containing this
	}{
		{"ErrCaseVariantKey", string(signedRaw(t, key, uuid.NewString(), "sale.recorded", now, caseVariant)), "payload.FARMER_ID: differs from the key \"farmer_id\" only in letter case"},
		{"ErrCaseVariantEnvelopeKey", strings.Replace(string(good), `{`, `{"ID":"`+uuid.NewString()+`",`, 1), "id: differs from the key \"ID\" only in letter case"},
		{"ErrDuplicateKey", strings.Replace(string(good), `"buyer":`, `"farmer_id":"`+victim+`","buyer":`, 1), "payload.farmer_id: appears twice"},
		{"ErrUnknownField", strings.Replace(string(good), `"buyer":`, `"moisture":14,"buyer":`, 1), "payload.moisture: unknown field"},
		{"ErrUnknownEnvelopeField", strings.Replace(string(good), `{`, `{"extra":1,`, 1), "extra: unknown field"},
		{"ErrNUL", strings.Replace(string(good), `KUD Makmur`, `KUD\u0000Makmur`, 1), "payload.buyer: must not contain control characters (found U+0000)"},
		{"ErrANSIEscape", strings.Replace(string(good), `KUD Makmur`, `\u001b[2J\u001b[31mKUD`, 1), "payload.buyer: must not contain control characters (found U+001B)"},
		{"ErrBidiOverride", strings.Replace(string(good), `KUD Makmur`, "KUD \u202eruk", 1), "payload.buyer: must not contain control characters (found U+202E)"},
		{"ErrRawNewline", strings.Replace(string(good), `KUD Makmur`, "KUD\nMakmur", 1), "payload.buyer: must not contain control characters (found U+000A)"},
		{"ErrLoneSurrogate", strings.Replace(string(good), `KUD Makmur`, `KUD \ud800`, 1), "payload.buyer: holds a lone UTF-16 surrogate"},
		{"ErrInvalidUTF8", strings.Replace(string(good), `KUD Makmur`, "KUD \xff", 1), "payload.buyer: is not valid UTF-8"},
		{"ErrIntegerBeyond2To53", strings.Replace(string(good), `2200000000`, `9007199254740993`, 1), "payload.price.amount: is a number of magnitude 2^53 or more"},
		{"ErrNumberOverflow", strings.Replace(string(good), `2200000000`, `1e400`, 1), "payload.price.amount: is a number out of range"},
		{"ErrNumberUnderflow", strings.Replace(string(good), `"value":40`, `"value":1e-400`, 1), "payload.quantity.value: is a number too small"},
		{"ErrTooDeep", strings.Replace(string(good), `"value":40`, `"value":`+strings.Repeat("[", 20)+strings.Repeat("]", 20), 1), "nests deeper than 16 levels"},
		{"ErrTrailingData", string(good) + `{}`, "body: unexpected data after the JSON object"},
		{"ErrNotObject", `[1,2]`, "body: must be a JSON object"},
		{"ErrMalformed", `{"id":`, "id: malformed JSON"},
		{"ErrTooLarge", `{"id":"` + big + `"}`, "body: is 1048585 bytes; a record may be at most 1048576"},
		{"ErrPayloadNotObject", `{"id":"` + uuid.NewString() + `","type":"sale.recorded","captured_at":"2026-11-23T09:00:00Z","device_id":"` + deviceID + `","location":{"lat":1,"lon":1,"accuracy_m":1,"mock":false},"payload":"x","signature":"AA=="}`, "payload: must be an object, not a string"},
		{"ErrWrongType", strings.Replace(string(good), `"crop":"rice"`, `"crop":1`, 1), "payload.crop: must be a string, not a number"},
		{"ErrNullString", strings.Replace(string(good), `"crop":"rice"`, `"crop":null`, 1), "payload.crop: must be a string, not null"},
		{"ErrFractionalInteger", strings.Replace(string(good), `2200000000`, `2200000000.5`, 1), "payload.price.amount: must be an integer, not 2200000000.5"},
		{"ErrUppercaseID", string(signedRaw(t, key, strings.ToUpper(uuid.NewString()), "sale.recorded", now, sale(own))), "id: must be a lowercase UUID"},
		{"ErrUppercaseFarmer", string(signedRaw(t, key, uuid.NewString(), "sale.recorded", now, sale(strings.ToUpper(own)))), "payload.farmer_id: must be a lowercase UUID"},
		{"ErrNilUUID", string(signedRaw(t, key, "00000000-0000-0000-0000-000000000000", "sale.recorded", now, sale(own))), "id: must be a lowercase UUID such as 0d9c3a4e-5b7f-4c1e-9a2b-3c4d5e6f7a8b, not the nil UUID"},
		{"ErrCapturedYear0001", string(signedRaw(t, key, uuid.NewString(), "sale.recorded", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), sale(own))), "captured_at: must not be before 2000-01-01T00:00:00Z"},
		{"ErrSoldYear0000", strings.Replace(string(good), `2026-11-21`, `0000-01-01`, 1), "payload.sold_on: must not be before 1900-01-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, problems := record.Check(v, []byte(tt.raw), now)
			if got := fieldsText(problems); !strings.Contains(got, tt.want) {
				t.Errorf("problems =\n%s\nwant one containing %q", got, tt.want)
			}
		})
	}
}
