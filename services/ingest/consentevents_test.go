package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
	"github.com/tani-platform/tani/services/ingest"
)

// TestConsentEvents: storing consent records tells the grantee, in the
// same transaction, once per consent, whatever order the grant and its
// revocation arrive in; the expiry scan tells it a week ahead, once.
func TestConsentEvents(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	tani := apptest.MustStart(t, "-nats.url="+s.ClientURL())
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	hour := time.Now().Add(-time.Hour)
	bank, farmer := uuid.NewString(), uuid.NewString()

	grant := func(consentID string, expires time.Time) json.RawMessage {
		raw, _, err := agent.Client.RecordWithID(uuid.NewString(), record.TypeConsentGranted, hour, loc, map[string]any{
			"farmer_id": farmer, "consent_id": consentID, "grantee_organization_id": bank, "scopes": []string{"plots", "harvests"},
			"expires_at": expires.UTC().Format(time.RFC3339), "otp_challenge_id": uuid.NewString(), "otp_code": "123456"})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	revoke := func(consentID string, at time.Time) json.RawMessage {
		raw, _, err := agent.Client.RecordWithID(uuid.NewString(), record.TypeConsentRevoked, at, loc, map[string]any{
			"farmer_id": farmer, "consent_id": consentID, "reason": "changed bank"})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	send := func(raws ...json.RawMessage) {
		var ids []string
		for _, raw := range raws {
			var env struct{ ID string }
			json.Unmarshal(raw, &env)
			ids = append(ids, env.ID)
		}
		publish(t, js, ids, raws)
	}
	type told struct {
		n        int
		org      string
		occurred time.Time
		data     ingest.ConsentData
	}
	eventOf := func(typ events.Type, consentID string) told {
		var e told
		var data []byte
		err := tani.DB.QueryRow(ctx, `SELECT count(*) OVER (), organization_id::text, occurred_at, data FROM events.outbox
			WHERE type = $1 AND data->>'consent_id' = $2`, string(typ), consentID).Scan(&e.n, &e.org, &e.occurred, &data)
		if err == nil {
			if err := json.Unmarshal(data, &e.data); err != nil {
				t.Fatal(err)
			}
		}
		return e
	}
	waitTold := func(typ events.Type, consentID string) told {
		t.Helper()
		var e told
		polltest.Eventually(t, 30*time.Second, func() error {
			if e = eventOf(typ, consentID); e.n == 0 {
				return fmt.Errorf("no %s event for consent %s", typ, consentID)
			}
			return nil
		})
		return e
	}

	t.Run("OK_GrantedThenRevoked", func(t *testing.T) {
		c := uuid.NewString()
		send(grant(c, time.Now().AddDate(0, 5, 0)))
		a := waitTold(events.ConsentAuthorised, c)
		if a.n != 1 || a.org != bank || a.data.FarmerID != farmer || len(a.data.Scopes) != 2 || a.data.RevokedAt != nil || a.data.GrantedRecordID == "" {
			t.Errorf("authorised: %+v", a)
		}
		send(revoke(c, time.Now()), revoke(c, time.Now().Add(-time.Minute)))
		r := waitTold(events.ConsentRevoked, c)
		if r.n != 1 || r.org != bank || r.data.RevokedAt == nil || r.data.RevokedRecordID == "" {
			t.Errorf("revoked: %+v", r)
		}
	})
	t.Run("OK_RevocationSyncedBeforeItsGrant", func(t *testing.T) {
		c := uuid.NewString()
		rv := revoke(c, time.Now())
		send(rv)
		var env struct{ ID string }
		json.Unmarshal(rv, &env)
		waitFor(t, "revocation stored", func() bool { return stored1(t, tani, env.ID) })
		if e := eventOf(events.ConsentRevoked, c); e.n != 0 {
			t.Fatalf("revocation of an unknown consent told to %s", e.org)
		}
		send(grant(c, time.Now().AddDate(0, 5, 0)))
		waitTold(events.ConsentAuthorised, c)
		if r := waitTold(events.ConsentRevoked, c); r.n != 1 || r.org != bank {
			t.Errorf("revoked: %+v", r)
		}
	})
	t.Run("OK_ExpiringToldOnce", func(t *testing.T) {
		soon, later, gone := uuid.NewString(), uuid.NewString(), uuid.NewString()
		send(grant(soon, time.Now().Add(72*time.Hour)), grant(later, time.Now().Add(30*24*time.Hour)), grant(gone, time.Now().Add(48*time.Hour)), revoke(gone, time.Now()))
		waitTold(events.ConsentAuthorised, soon)
		waitTold(events.ConsentAuthorised, later)
		waitTold(events.ConsentRevoked, gone)
		now := time.Now()
		if _, err := ingest.ExpiringConsents(ctx, tani.DB, now); err != nil {
			t.Fatal(err)
		}
		if n, err := ingest.ExpiringConsents(ctx, tani.DB, now.Add(time.Minute)); err != nil || n != 0 {
			t.Errorf("second scan recorded %d (%v), want 0", n, err)
		}
		if e := eventOf(events.ConsentExpiring, soon); e.n != 1 || e.org != bank {
			t.Errorf("expiring: %+v", e)
		}
		for _, c := range []string{later, gone} {
			if e := eventOf(events.ConsentExpiring, c); e.n != 0 {
				t.Errorf("consent %s told expiring", c)
			}
		}
	})
}

func stored1(t *testing.T, tani *apptest.Running, id string) bool {
	var n int
	if err := tani.DB.QueryRow(context.Background(), `SELECT count(*) FROM ingest.submissions WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}
