package client_test

import (
	"crypto/ed25519"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client"
)

// canonical is the form the API requires of every id (docs/api.md).
var canonical = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestNewIDTimeOrdered checks that ids are version 7 UUIDs in the API's
// form, each greater than the one before, so that the indexes keyed by
// them grow at their right edge.
func TestNewIDTimeOrdered(t *testing.T) {
	prev := ""
	for i := range 2000 {
		id := client.NewID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || !canonical.MatchString(id) {
			t.Fatalf("id %d = %q (version %d, %v), want a lowercase version 7 UUID", i, id, u.Version(), err)
		}
		if id <= prev {
			t.Fatalf("id %d = %s, not after %s", i, id, prev)
		}
		prev = id
	}
}

// TestRecordNewID checks that Record gives a record such an id.
func TestRecordNewID(t *testing.T) {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New("http://127.0.0.1:1", nil)
	c.UseDevice("7d0b3f0e-6c1a-4d7e-9a41-0f2f9c1d5e11", key)
	before := client.NewID()
	raw, _, err := c.Record(record.TypeFarmerRegistered, time.Now(), client.Location{Lat: -1.29, Lon: 36.82, AccuracyM: 5},
		map[string]any{"farmer_id": client.NewID(), "name": "Wanjiru Kamau", "village": "Kiambu"})
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if u, err := uuid.Parse(rec.ID); err != nil || u.Version() != 7 || rec.ID <= before {
		t.Errorf("record id %q: want a version 7 UUID made after %s", rec.ID, before)
	}
}
