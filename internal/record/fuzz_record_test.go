package record_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/gowebpki/jcs"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

// FuzzRecord: what mobile-api checked is what ingest stores. A record that
// checks reads back from its canonical bytes (what mobile-api publishes
// and ingest reads) to the same canonical bytes and the same typed record;
// the farmer mobile-api authorized is the farmer_id a plain JSON reader of
// those bytes sees (as Postgres's payload->>'farmer_id' does); and the
// canonical bytes are gowebpki/jcs's canonical form of what was sent.
func FuzzRecord(f *testing.F) {
	v := validate.New()
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, problems := record.Decode(v, data, now) // mobile-api: envelope, …
		if problems != nil {
			return
		}
		problems = rec.CheckPayload(v, now) // … then payload, from the tree Decode parsed
		// The payload read from Decode's tree is the payload read from
		// its canonical bytes: the same value or the same problems.
		reparsed := rec
		reparsed.Payload = nil
		if again := reparsed.CheckPayload(v, now); !reflect.DeepEqual(again, problems) || !reflect.DeepEqual(reparsed.Payload, rec.Payload) {
			t.Fatalf("the payload reads differently from Decode's tree (%v, %+v) and from its bytes (%v, %+v)", problems, rec.Payload, again, reparsed.Payload)
		}
		if problems != nil {
			return
		}
		stored, problems := record.Check(v, rec.Canonical, now) // ingest and attest
		if problems != nil {
			t.Fatalf("ingest refuses what mobile-api accepted: %v\n%s", problems, rec.Canonical)
		}
		if string(stored.Canonical) != string(rec.Canonical) {
			t.Fatalf("canonical form is not a fixed point:\n%s\n%s", rec.Canonical, stored.Canonical)
		}
		if !reflect.DeepEqual(stored.Env, rec.Env) || !reflect.DeepEqual(stored.Payload, rec.Payload) {
			t.Fatalf("ingest reads another record:\n%+v %+v\n%+v %+v", rec.Env, rec.Payload, stored.Env, stored.Payload)
		}
		var plain struct {
			Payload map[string]any `json:"payload"`
		}
		if err := json.Unmarshal(rec.Canonical, &plain); err != nil {
			t.Fatal(err)
		}
		if got := plain.Payload["farmer_id"]; got != rec.Payload.Farmer() {
			t.Fatalf("mobile-api checked farmer %s; the stored bytes name %v", rec.Payload.Farmer(), got)
		}
		want, err := jcs.Transform(data)
		if err != nil || string(want) != string(rec.Canonical) {
			t.Fatalf("canonical form differs from gowebpki/jcs's (%v):\n%s\n%s", err, rec.Canonical, want)
		}
	})
}
