package mobileapi

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/internal/record"
)

// TestRememberReceived_RaceLost remembers a batch of which one record a
// concurrent /sync remembered first (after classify looked): the batch's
// COPY fails on that id, and the batch is remembered anyway, the other
// /sync's row kept as it was.
func TestRememberReceived_RaceLost(t *testing.T) {
	ctx := context.Background()
	db := pgtest.MustDB(t, identity.Migrations, Migrations)
	agent, device := uuid.NewString(), uuid.NewString()
	pend := func(hash byte) pending {
		p := pending{env: record.Envelope{ID: uuid.NewString(), Type: record.TypeFarmerRegistered, DeviceID: device},
			payload: &record.FarmerRegistered{FarmerID: uuid.NewString()}}
		p.hash[0] = hash
		return p
	}
	remember := func(batch ...pending) error {
		return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return rememberReceived(ctx, tx, agent, batch) })
	}
	first, second, third := pend(1), pend(2), pend(3)
	if err := remember(second); err != nil {
		t.Fatalf("the other /sync: %v", err)
	}
	late := second
	late.hash[0] = 9
	if err := remember(first, late, third); err != nil {
		t.Fatalf("remember a batch with a record remembered first by another /sync: %v", err)
	}
	got := map[string]byte{}
	rows, err := db.Query(ctx, `SELECT id::text, content_hash FROM mobile.received WHERE agent_id = $1`, agent)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	var hash []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &hash}, func() error { got[id] = hash[0]; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]byte{first.env.ID: 1, second.env.ID: 2, third.env.ID: 3}
	if len(got) != len(want) {
		t.Fatalf("remembered %d records, want %d", len(got), len(want))
	}
	for id, h := range want {
		if got[id] != h {
			t.Errorf("record %s remembered with hash %d…, want %d…", id, got[id], h)
		}
	}
}
