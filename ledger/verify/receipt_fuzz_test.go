package verify_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/gowebpki/jcs"

	"github.com/tani-platform/tani/ledger/verify"
)

// FuzzParseReceipt: parsing a receipt never panics, and a receipt is
// accepted only if it is exactly what its re-serialization says: the same
// members and values (up to whitespace and member order), so that two
// readers of one receipt cannot disagree about it.
func FuzzParseReceipt(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := verify.ParseReceipt(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("accepted receipt does not re-serialize: %v", err)
		}
		r2, err := verify.ParseReceipt(again)
		if err != nil {
			t.Fatalf("re-serialized receipt %s is refused: %v", again, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("receipt changed on a round trip:\n%+v\n%+v", r, r2)
		}
		sent, err := jcs.Transform(data)
		if err != nil {
			t.Fatalf("accepted %q, which is not canonicalizable JSON: %v", data, err)
		}
		if want, _ := jcs.Transform(again); string(sent) != string(want) {
			t.Fatalf("accepted %s, which re-serializes as %s", sent, want)
		}
	})
}
