package webhooks_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/services/webhooks"
)

// waitPublished waits until the relay has published every event.
func (e *env) waitPublished(t *testing.T) {
	t.Helper()
	polltest.Eventually(t, 10*time.Second, func() error {
		var n int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM events.outbox WHERE pos IS NULL`).Scan(&n); err != nil || n > 0 {
			return fmt.Errorf("%d events unpublished (%v)", n, err)
		}
		return nil
	})
}

func TestReplay(t *testing.T) {
	rc := newReceiver(t, false, nil)
	e := mustEnv(t, envOpts{cfg: fastRetries()})
	bank, token := e.org(t, identity.Bank)
	other, _ := e.org(t, identity.Bank)
	ep := e.subscribe(t, "/bank/v1", token, rc.srv.URL, events.LoanApplied, events.EvidenceAttested)
	farmer, gone := uuid.NewString(), uuid.NewString()
	e.grant(t, farmer, bank, "harvests")
	cGone := e.grant(t, gone, bank, "harvests")
	before := time.Now().Add(-time.Second)
	var ids []string
	var evs []events.Event
	for range 5 {
		ev := toOrg(bank, events.LoanApplied, map[string]any{"loan_id": uuid.NewString()})
		ids, evs = append(ids, ev.ID), append(evs, ev)
	}
	consented, revokedLater := aboutFarmer(farmer, consent.Harvests), aboutFarmer(gone, consent.Harvests)
	notOurs := toOrg(other, events.LoanApplied, nil)
	ids = append(ids, consented.ID, revokedLater.ID)
	e.emit(t, append(evs, consented, revokedLater, notOurs)...)
	rc.waitDelivered(t, 10*time.Second, ids...)
	polltest.Eventually(t, 10*time.Second, func() error { // the results stored, not only received
		var n int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhooks.deliveries WHERE state = 'delivered'`).Scan(&n); err != nil || n != len(ids) {
			return fmt.Errorf("%d deliveries stored as delivered (%v), want %d", n, err, len(ids))
		}
		return nil
	})
	e.revoke(t, cGone)

	t.Run("OK_SentAgainWithTheSameIDAndBody", func(t *testing.T) {
		code, b := e.do(t, http.MethodPost, "/bank/v1/webhooks/"+ep.ID+"/replay?since="+before.UTC().Format(time.RFC3339), token, "")
		if code != http.StatusAccepted || mustJSON[struct{ Replayed int }](t, b).Replayed != 6 {
			t.Fatalf("replay: %d %s, want 202 replaying 6 (5 loans and the farmer whose consent is live)", code, b)
		}
		polltest.Eventually(t, 10*time.Second, func() error {
			got := rc.delivered()
			for _, id := range ids[:6] {
				if got[id] != 2 {
					return fmt.Errorf("event %s delivered %d times", id, got[id])
				}
			}
			return nil
		})
		for _, id := range ids[:6] {
			rs := rc.requests(id)
			if string(rs[0].body) != string(rs[1].body) || rs[1].header.Get("webhook-id") != id {
				t.Errorf("replay of %s: body %s, was %s", id, rs[1].body, rs[0].body)
			}
		}
		if n := len(rc.requests(revokedLater.ID)); n != 1 {
			t.Errorf("an event of a revoked consent replayed: %d requests", n)
		}
		if n := len(rc.requests(notOurs.ID)); n != 0 {
			t.Errorf("another bank's event replayed")
		}
		polltest.Eventually(t, 10*time.Second, func() error {
			_, b := e.do(t, http.MethodGet, "/bank/v1/webhooks/"+ep.ID+"/deliveries?event_type=loan.applied&limit=5", token, "")
			page := mustJSON[struct {
				Deliveries []webhooks.Delivery
				NextBefore int64 `json:"next_before"`
			}](t, b)
			if len(page.Deliveries) != 5 || page.NextBefore == 0 {
				return fmt.Errorf("deliveries page %s", b)
			}
			for _, d := range page.Deliveries {
				if d.Replays != 1 || d.Attempts != 2 || d.State != "delivered" {
					return fmt.Errorf("replayed delivery %+v", d)
				}
			}
			return nil
		})
	})
	now := time.Now().UTC()
	for name, q := range map[string]string{
		"ErrNoSince":          "",
		"ErrNotATime":         "?since=yesterday",
		"ErrNoZone":           "?since=2025-01-01T00:00:00",
		"ErrFuture":           "?since=" + now.Add(time.Hour).Format(time.RFC3339),
		"ErrBeyondRetention":  "?since=" + now.Add(-8*24*time.Hour).Format(time.RFC3339),
		"ErrLongBeforeEvents": "?since=1970-01-01T00:00:00Z",
	} {
		t.Run(name, func(t *testing.T) {
			var deliveries int
			e.pool.QueryRow(context.Background(), `SELECT sum(replays) FROM webhooks.deliveries`).Scan(&deliveries)
			code, b := e.do(t, http.MethodPost, "/bank/v1/webhooks/"+ep.ID+"/replay"+q, token, "")
			if code != http.StatusBadRequest || !slices.Contains(fieldsOf(t, b), "since") {
				t.Errorf("%d %s, want 400 naming since", code, b)
			}
			var after int
			e.pool.QueryRow(context.Background(), `SELECT sum(replays) FROM webhooks.deliveries`).Scan(&after)
			if after != deliveries {
				t.Errorf("a refused replay scheduled %d deliveries", after-deliveries)
			}
		})
	}
	t.Run("ErrConflict_Disabled", func(t *testing.T) {
		e.do(t, http.MethodPatch, "/bank/v1/webhooks/"+ep.ID, token, `{"enabled":false}`)
		code, b := e.do(t, http.MethodPost, "/bank/v1/webhooks/"+ep.ID+"/replay?since="+before.UTC().Format(time.RFC3339), token, "")
		if code != http.StatusConflict {
			t.Errorf("%d %s, want 409", code, b)
		}
	})
}

type poll struct {
	Events     []webhooks.PolledEvent
	NextCursor string `json:"next_cursor"`
	HasMore    bool   `json:"has_more"`
}

// pollAll pages through /events from cursor and returns the ids.
func (e *env) pollAll(t testing.TB, prefix, token, query string) ([]string, string) {
	t.Helper()
	var ids []string
	cursor := ""
	for range 100 {
		code, b := e.do(t, http.MethodGet, prefix+"/events?limit=2&cursor="+cursor+query, token, "")
		if code != http.StatusOK {
			t.Fatalf("poll: %d %s", code, b)
		}
		p := mustJSON[poll](t, b)
		for _, ev := range p.Events {
			ids = append(ids, ev.ID)
		}
		cursor = p.NextCursor
		if !p.HasMore {
			return ids, cursor
		}
	}
	t.Fatal("poll never ends")
	return nil, ""
}

// TestPollEvents: an organization polls exactly the events it would have
// been pushed, in order, page by page, whether or not it has endpoints.
func TestPollEvents(t *testing.T) {
	e := mustEnv(t, envOpts{cfg: fastRetries()})
	bankA, tokenA := e.org(t, identity.Bank)
	bankB, tokenB := e.org(t, identity.Bank)
	_, creditOnly, err := e.dir.CreateAPIKey(context.Background(), identity.NewAPIKey{OrganizationID: bankA, Name: "credit", Scopes: []string{"credit"}, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	dist, _ := e.org(t, identity.Distributor)
	farmer := uuid.NewString()
	cF := e.grant(t, farmer, bankA, "harvests")
	var wantA, wantB []string
	var evs []events.Event
	for i := range 3 {
		a := toOrg(bankA, events.LoanApplied, map[string]any{"n": i})
		b := toOrg(bankB, events.LoanApplied, map[string]any{"n": i})
		f := aboutFarmer(farmer, consent.Harvests)
		evs = append(evs, a, b, f)
		wantA, wantB = append(wantA, a.ID, f.ID), append(wantB, b.ID)
	}
	evs = append(evs, aboutFarmer(farmer, consent.Sales), toOrg(dist, events.OrderPlaced, nil))
	e.emit(t, evs...)
	e.waitPublished(t)

	var pos []string
	e.pool.QueryRow(context.Background(), `SELECT array_agg(id::text ORDER BY pos) FROM events.outbox WHERE id::text = ANY($1)`, wantA).Scan(&pos)
	got, end := e.pollAll(t, "/bank/v1", tokenA, "")
	if !slices.Equal(got, pos) {
		t.Errorf("bank A polled %v, want %v in publication order", got, pos)
	}
	if got, _ := e.pollAll(t, "/bank/v1", tokenB, ""); len(got) != 3 || !slices.Equal(sorted(got), sorted(wantB)) {
		t.Errorf("bank B polled %v, want its own %v", got, wantB)
	}
	code, b := e.do(t, http.MethodGet, "/bank/v1/events?cursor="+end, tokenA, "")
	if p := mustJSON[poll](t, b); code != http.StatusOK || len(p.Events) != 0 || p.HasMore || p.NextCursor != end {
		t.Errorf("poll at the end: %d %s", code, b)
	}
	t.Run("OK_TypesAndKeyScopes", func(t *testing.T) {
		if got, _ := e.pollAll(t, "/bank/v1", tokenA, "&types=evidence.attested"); len(got) != 3 {
			t.Errorf("evidence only: %d events, want 3", len(got))
		}
		got, _ := e.pollAll(t, "/bank/v1", creditOnly, "")
		if len(got) != 3 {
			t.Errorf("a key scoped to credit polled %d events, want the 3 loans and no harvest", len(got))
		}
	})
	t.Run("OK_RevokedConsentHidesTheFarmer", func(t *testing.T) {
		e.revoke(t, cF)
		if got, _ := e.pollAll(t, "/bank/v1", tokenA, ""); len(got) != 3 {
			t.Errorf("after revocation: %d events, want the 3 loans", len(got))
		}
	})
	for name, q := range map[string]string{
		"ErrCursor":       "?cursor=abc",
		"ErrNegative":     "?cursor=-1",
		"ErrLimit":        "?limit=0",
		"ErrLimitHigh":    "?limit=5000",
		"ErrUnknownType":  "?types=loan.eaten",
		"ErrNotForABank":  "?types=order.placed",
		"ErrEmptyInTypes": "?types=loan.applied,",
	} {
		t.Run(name, func(t *testing.T) {
			code, b := e.do(t, http.MethodGet, "/bank/v1/events"+q, tokenA, "")
			if code != http.StatusBadRequest || len(fieldsOf(t, b)) == 0 {
				t.Errorf("%d %s, want 400 with a field", code, b)
			}
		})
	}
	if code, _ := e.do(t, http.MethodGet, "/bank/v1/events", "", ""); code != http.StatusUnauthorized {
		t.Errorf("unauthenticated poll: %d", code)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestPrune: past the retention, finished deliveries and those waiting
// for a disabled endpoint go; one still being retried for an enabled
// endpoint stays, whatever its age.
func TestPrune(t *testing.T) {
	e := mustEnv(t, envOpts{cfg: fastRetries(), noRun: true})
	_, token := e.org(t, identity.Bank)
	on := e.subscribe(t, "/bank/v1", token, "http://127.0.0.1:9/on", events.LoanApplied)
	off := e.subscribe(t, "/bank/v1", token, "http://127.0.0.1:9/off", events.LoanApplied)
	e.do(t, http.MethodPatch, "/bank/v1/webhooks/"+off.ID, token, `{"enabled":false}`)
	ctx := context.Background()
	insert := func(endpoint, state string, age time.Duration) {
		if _, err := e.pool.Exec(ctx, `
			INSERT INTO webhooks.deliveries (endpoint_id, event_id, event_type, organization_id, body, state, created_at)
			SELECT $1, gen_random_uuid(), 'loan.applied', organization_id, '{}', $2, now() - make_interval(secs => $3) FROM webhooks.endpoints WHERE id = $1`,
			endpoint, state, age.Seconds()); err != nil {
			t.Fatal(err)
		}
	}
	old, recent := 8*24*time.Hour, time.Hour
	insert(on.ID, "delivered", old)
	insert(on.ID, "failed", old)
	insert(on.ID, "pending", old)
	insert(on.ID, "delivered", recent)
	insert(off.ID, "pending", old)
	insert(off.ID, "pending", recent)
	n, err := e.svc.Prune(ctx, time.Now())
	if err != nil || n != 3 {
		t.Fatalf("pruned %d (%v), want 3", n, err)
	}
	var left []string
	rows, _ := e.pool.Query(ctx, `SELECT CASE WHEN endpoint_id = $1 THEN 'on' ELSE 'off' END || ':' || state FROM webhooks.deliveries ORDER BY 1`, on.ID)
	for rows.Next() {
		var s string
		rows.Scan(&s)
		left = append(left, s)
	}
	if want := []string{"off:pending", "on:delivered", "on:pending"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}
