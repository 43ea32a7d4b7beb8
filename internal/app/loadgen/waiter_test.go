package loadgen

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

// TestWaiterPoll follows 1,000 records through the two tables the waiter
// reads: while one of the newest is unsettled, the probe keeps every
// record remaining (even those settled); once the newest are settled, one
// poll drops every settled record and counts the refused ones once.
func TestWaiterPoll(t *testing.T) {
	ctx := context.Background()
	db := pgtest.MustDB(t)
	if _, err := db.Exec(ctx, `
		CREATE SCHEMA ingest;
		CREATE TABLE ingest.submissions (id uuid PRIMARY KEY);
		CREATE SCHEMA mobile;
		CREATE TABLE mobile.refusals (record_id uuid, subject text NOT NULL);`); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	store := func(ids ...string) {
		t.Helper()
		if _, err := db.Exec(ctx, `INSERT INTO ingest.submissions (id) SELECT unnest($1::uuid[])`, ids); err != nil {
			t.Fatal(err)
		}
	}
	refuse := func(subject string, ids ...string) {
		t.Helper()
		if _, err := db.Exec(ctx, `INSERT INTO mobile.refusals (record_id, subject) SELECT unnest($1::uuid[]), $2`, ids, subject); err != nil {
			t.Fatal(err)
		}
	}
	w := &waiter{db: db, remaining: append([]string(nil), ids...)}

	// All but the newest record and an old one settled: 10 refused, one
	// of those twice and one refused then stored. The old one was refused
	// by attest, which does not settle it for ingest.
	store(ids[10:100]...)
	store(ids[101:999]...)
	refuse("farm.submitted.harvest", ids[:10]...)
	refuse("farm.submitted.harvest", ids[0], ids[10])
	refuse("farm.ingested.harvest", ids[100])
	if err := w.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.remaining) != len(ids) || w.refused != 0 {
		t.Fatalf("after a poll with a newest record unsettled: %d remaining, %d refused; want all %d remaining, none counted", len(w.remaining), w.refused, len(ids))
	}

	store(ids[999])
	if err := w.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.remaining) != 1 || w.remaining[0] != ids[100] || w.refused != 10 {
		t.Fatalf("after the newest record settled: %d remaining, %d refused; want only %s, 10 refused", len(w.remaining), w.refused, ids[100])
	}

	store(ids[100])
	done, err := w.wait(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if done || len(w.remaining) != 0 {
		t.Fatalf("wait = %t with %d remaining; want false (records were refused) and none remaining", done, len(w.remaining))
	}
}
