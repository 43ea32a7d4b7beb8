package webhooks_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
)

// TestErasure: a farmer's erasure removes their events from the outbox
// and EVENTS and their deliveries, pending ones included; an event about
// them recorded afterwards (a producer racing the erasure) is delivered to
// no one and never polled; other farmers are untouched.
func TestErasure(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, false, func(r *http.Request, _ int64) int {
		if failing.Load() && r.URL.Path == "/down" {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	e := mustEnv(t, envOpts{cfg: fastRetries()})
	bank, token := e.org(t, identity.Bank)
	e.subscribe(t, "/bank/v1", token, rc.srv.URL+"/up", events.EvidenceAttested, events.ConsentRevoked)
	e.subscribe(t, "/bank/v1", token, rc.srv.URL+"/down", events.EvidenceAttested)
	gone, kept := uuid.NewString(), uuid.NewString()
	e.grant(t, gone, bank, "harvests")
	e.grant(t, kept, bank, "harvests")
	a, b := aboutFarmer(gone, consent.Harvests), aboutFarmer(kept, consent.Harvests)
	told := events.Event{ID: uuid.NewString(), Type: events.ConsentRevoked, OrganizationID: bank, FarmerID: gone, OccurredAt: time.Now(), Data: map[string]any{"farmer_id": gone}}
	e.emit(t, a, b, told)
	rc.waitDelivered(t, 10*time.Second, a.ID, b.ID, told.ID)
	ctx := context.Background()
	count := func(q string, args ...any) int {
		var n int
		if err := e.pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	polltest.Eventually(t, 10*time.Second, func() error {
		if n := count(`SELECT count(*) FROM webhooks.deliveries WHERE farmer_id = $1 AND state = 'pending'`, gone); n != 1 {
			return fmt.Errorf("%d pending deliveries about the farmer before the erasure, want 1 (to the failing endpoint)", n)
		}
		return nil
	})

	erasureID := uuid.NewString()
	if err := forget.Publish(ctx, e.js, forget.Request{ErasureID: erasureID, FarmerID: gone, RequestedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var erased []byte
	polltest.Eventually(t, 20*time.Second, func() error {
		err := e.pool.QueryRow(ctx, `SELECT erased FROM webhooks.erasure_progress WHERE erasure_id = $1 AND completed_at IS NOT NULL`, erasureID).Scan(&erased)
		if err != nil {
			return fmt.Errorf("erasure not complete: %v", err)
		}
		return nil
	})
	if want := `{"events": 2, "messages": 2, "deliveries": 3}`; string(erased) != want {
		t.Errorf("erased %s, want %s", erased, want)
	}
	if n := count(`SELECT count(*) FROM events.outbox WHERE farmer_id = $1`, gone) + count(`SELECT count(*) FROM webhooks.deliveries WHERE farmer_id = $1`, gone); n != 0 {
		t.Errorf("%d rows about the erased farmer remain", n)
	}
	if n := count(`SELECT count(*) FROM events.outbox WHERE farmer_id = $1`, kept) + count(`SELECT count(*) FROM webhooks.deliveries WHERE farmer_id = $1`, kept); n != 3 {
		t.Errorf("%d rows about the other farmer, want 3 (its event, two deliveries)", n)
	}
	if n := natstest.Count(t, e.js, natsbus.StreamEvents, ""); n != 1 {
		t.Errorf("EVENTS holds %d messages, want only the other farmer's", n)
	}

	late := aboutFarmer(gone, consent.Harvests)
	e.emit(t, late)
	marker := aboutFarmer(kept, consent.Harvests)
	e.emit(t, marker)
	rc.waitDelivered(t, 10*time.Second, marker.ID)
	polltest.Eventually(t, 10*time.Second, func() error {
		if n := natstest.Count(t, e.js, natsbus.StreamEvents, ""); n < 3 {
			return fmt.Errorf("%d on EVENTS", n)
		}
		return nil
	})
	failing.Store(false)
	if n := len(rc.requests(late.ID)); n != 0 {
		t.Errorf("an event about the erased farmer was delivered")
	}
	if n := count(`SELECT count(*) FROM webhooks.deliveries WHERE farmer_id = $1`, gone); n != 0 {
		t.Errorf("%d deliveries created about the erased farmer", n)
	}
	ids, _ := e.pollAll(t, "/bank/v1", token, "")
	for _, id := range ids {
		if id == late.ID || id == a.ID {
			t.Errorf("polling shows an event about the erased farmer")
		}
	}
}
