package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/services/webhooks"
)

// TestDelivery_StandardWebhooks: deliveries over TLS verify with the
// Standard Webhooks reference library, carry the event id as webhook-id
// and the {type, timestamp, data} body, and a rotated secret signs beside
// the old one for the overlap, then alone.
func TestDelivery_StandardWebhooks(t *testing.T) {
	rc := newReceiver(t, true, nil)
	e := mustEnv(t, envOpts{cfg: fastRetries(), rootCAs: rc.roots()})
	bank, token := e.org(t, identity.Bank)
	ep := e.subscribe(t, "/bank/v1", token, rc.srv.URL+"/hooks/tani", events.ConsentRevoked, events.EvidenceAttested)
	if !strings.HasPrefix(ep.Secret, webhooks.SecretPrefix) || len(ep.Secret) < 40 {
		t.Fatalf("secret %q", ep.Secret)
	}
	rc.trust(ep.Secret)
	farmer := uuid.NewString()
	e.grant(t, farmer, bank, "harvests")
	revoked := toOrg(bank, events.ConsentRevoked, map[string]any{"consent_id": "c-1", "farmer_id": farmer})
	attested := aboutFarmer(farmer, consent.Harvests)
	e.emit(t, revoked, attested)
	rc.waitDelivered(t, 20*time.Second, revoked.ID, attested.ID)
	if bad := rc.failures(); len(bad) > 0 {
		t.Fatalf("signatures do not verify with the reference library: %v", bad)
	}
	for _, ev := range []events.Event{revoked, attested} {
		reqs := rc.requests(ev.ID)
		if len(reqs) != 1 {
			t.Fatalf("%s: %d requests, want 1", ev.Type, len(reqs))
		}
		r := reqs[0]
		ts, err := strconv.ParseInt(r.header.Get("webhook-timestamp"), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("webhook-timestamp %q", r.header.Get("webhook-timestamp"))
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type %q", ct)
		}
		var body map[string]json.RawMessage
		if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 3 {
			t.Fatalf("body %s: want exactly type, timestamp, data", r.body)
		}
		var typ string
		var when time.Time
		var data map[string]any
		json.Unmarshal(body["type"], &typ)
		json.Unmarshal(body["timestamp"], &when)
		json.Unmarshal(body["data"], &data)
		if typ != string(ev.Type) || when.Sub(ev.OccurredAt).Abs() > time.Millisecond || data["farmer_id"] != farmer {
			t.Errorf("body %s for event %+v", r.body, ev)
		}
	}

	t.Run("OK_RotationSignsWithBothDuringTheOverlap", func(t *testing.T) {
		old := ep.Secret
		code, b := e.do(t, http.MethodPost, "/bank/v1/webhooks/"+ep.ID+"/rotate-secret", token, `{"overlap_seconds":3600}`)
		if code != http.StatusOK {
			t.Fatalf("rotate: %d %s", code, b)
		}
		rotated := mustJSON[webhooks.Endpoint](t, b)
		if rotated.Secret == old || !strings.HasPrefix(rotated.Secret, webhooks.SecretPrefix) || rotated.PreviousSecretExpires == nil {
			t.Fatalf("rotated endpoint %+v", rotated)
		}
		for _, holder := range []string{old, rotated.Secret} {
			rc.trust(holder)
			ev := toOrg(bank, events.ConsentRevoked, nil)
			e.emit(t, ev)
			rc.waitDelivered(t, 20*time.Second, ev.ID)
			if sigs := strings.Fields(rc.requests(ev.ID)[0].header.Get("webhook-signature")); len(sigs) != 2 {
				t.Errorf("%d signatures during the overlap, want 2", len(sigs))
			}
		}
		if bad := rc.failures(); len(bad) > 0 {
			t.Fatalf("a receiver holding either secret fails to verify: %v", bad)
		}
		code, b = e.do(t, http.MethodPost, "/bank/v1/webhooks/"+ep.ID+"/rotate-secret", token, `{"overlap_seconds":0}`)
		if code != http.StatusOK {
			t.Fatalf("rotate: %d %s", code, b)
		}
		newest := mustJSON[webhooks.Endpoint](t, b).Secret
		rc.trust(newest)
		ev := toOrg(bank, events.ConsentRevoked, nil)
		e.emit(t, ev)
		rc.waitDelivered(t, 20*time.Second, ev.ID)
		r := rc.requests(ev.ID)[0]
		if sigs := strings.Fields(r.header.Get("webhook-signature")); len(sigs) != 1 {
			t.Errorf("%d signatures without an overlap, want 1", len(sigs))
		}
		wh, _ := standardwebhooks.NewWebhook(rotated.Secret)
		if err := wh.Verify(r.body, r.header); err == nil {
			t.Error("the rotated-out secret still verifies after an overlap of 0")
		}
		code, b = e.do(t, http.MethodGet, "/bank/v1/webhooks/"+ep.ID, token, "")
		if code != http.StatusOK || strings.Contains(string(b), "whsec_") {
			t.Errorf("GET shows a secret: %d %s", code, b)
		}
	})
}

// TestDelivery_RetriedUntilDelivered: an endpoint failing the first
// attempts gets the event again with the same webhook-id and body, and
// the audit shows every attempt.
func TestDelivery_RetriedUntilDelivered(t *testing.T) {
	var calls atomic.Int64
	rc := newReceiver(t, false, func(r *http.Request, n int64) int {
		if calls.Add(1) <= 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := mustEnv(t, envOpts{cfg: fastRetries()})
	bank, token := e.org(t, identity.Bank)
	ep := e.subscribe(t, "/bank/v1", token, rc.srv.URL, events.LoanDisbursed)
	rc.trust(ep.Secret)
	ev := toOrg(bank, events.LoanDisbursed, map[string]any{"loan_id": uuid.NewString()})
	e.emit(t, ev)
	rc.waitDelivered(t, 20*time.Second, ev.ID)
	reqs := rc.requests(ev.ID)
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4 (3 failures, then success)", len(reqs))
	}
	for _, r := range reqs[1:] {
		if string(r.body) != string(reqs[0].body) {
			t.Errorf("retry body %s differs from %s", r.body, reqs[0].body)
		}
	}
	if bad := rc.failures(); len(bad) > 0 {
		t.Fatal(bad)
	}
	var d webhooks.Delivery
	polltest.Eventually(t, 10*time.Second, func() error {
		code, b := e.do(t, http.MethodGet, "/bank/v1/webhooks/"+ep.ID+"/deliveries", token, "")
		if code != http.StatusOK {
			return fmt.Errorf("%d %s", code, b)
		}
		ds := mustJSON[struct{ Deliveries []webhooks.Delivery }](t, b).Deliveries
		if len(ds) != 1 || ds[0].State != "delivered" {
			return fmt.Errorf("deliveries %s", b)
		}
		d = ds[0]
		return nil
	})
	if d.EventID != ev.ID || d.Attempts != 4 || d.ResponseStatus == nil || *d.ResponseStatus != 200 || d.LatencyMS == nil || d.DeliveredAt == nil {
		t.Errorf("delivery %+v", d)
	}
	code, b := e.do(t, http.MethodGet, fmt.Sprintf("/bank/v1/webhooks/%s/deliveries/%d", ep.ID, d.ID), token, "")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, b)
	}
	one := mustJSON[webhooks.Delivery](t, b)
	if len(one.AttemptLog) != 4 || *one.AttemptLog[0].ResponseStatus != 503 || !strings.Contains(*one.AttemptLog[0].Error, "HTTP 503") || *one.AttemptLog[3].ResponseStatus != 200 {
		t.Errorf("attempt log %s", b)
	}
	for i := 1; i < 4; i++ {
		if !one.AttemptLog[i].At.After(one.AttemptLog[i-1].At) {
			t.Errorf("attempt %d not after %d", i, i-1)
		}
	}
	code, b = e.do(t, http.MethodGet, "/bank/v1/webhooks/"+ep.ID, token, "")
	if got := mustJSON[webhooks.Endpoint](t, b); code != http.StatusOK || got.FailingSince != nil || got.LastSuccessAt == nil {
		t.Errorf("endpoint after success: %s", b)
	}
}

// TestDelivery_GiveUpDisablesTheEndpoint: an endpoint failing for the
// whole retry window is disabled, its organization sees why, operators
// find it on their list, and re-enabling it clears the failure.
func TestDelivery_GiveUpDisablesTheEndpoint(t *testing.T) {
	rc := newReceiver(t, false, func(*http.Request, int64) int { return http.StatusInternalServerError })
	cfg := fastRetries()
	cfg.RetryWindow = 1500 * time.Millisecond
	e := mustEnv(t, envOpts{cfg: cfg})
	dist, token := e.org(t, identity.Distributor)
	ep := e.subscribe(t, "/distributor/v1", token, rc.srv.URL, events.OrderPlaced)
	healthy := newReceiver(t, false, nil)
	other := e.subscribe(t, "/distributor/v1", token, healthy.srv.URL, events.OrderPlaced)
	ev := toOrg(dist, events.OrderPlaced, map[string]any{"order_id": uuid.NewString()})
	e.emit(t, ev)
	healthy.waitDelivered(t, 10*time.Second, ev.ID)
	var got webhooks.Endpoint
	polltest.Eventually(t, 20*time.Second, func() error {
		_, b := e.do(t, http.MethodGet, "/distributor/v1/webhooks/"+ep.ID, token, "")
		got = mustJSON[webhooks.Endpoint](t, b)
		if got.Enabled {
			return fmt.Errorf("still enabled: %s", b)
		}
		return nil
	})
	if got.DisabledReason == nil || *got.DisabledReason != "failing" || got.FailingSince == nil || got.DisabledAt == nil {
		t.Errorf("disabled endpoint %+v", got)
	}
	if n := len(rc.requests(ev.ID)); n < 3 {
		t.Errorf("%d attempts in the window, want several", n)
	}
	_, b := e.do(t, http.MethodGet, "/distributor/v1/webhooks/"+ep.ID+"/deliveries?state=failed", token, "")
	if ds := mustJSON[struct{ Deliveries []webhooks.Delivery }](t, b).Deliveries; len(ds) != 1 || ds[0].EventID != ev.ID {
		t.Errorf("failed deliveries: %s", b)
	}
	code, b := e.do(t, http.MethodGet, "/admin/v1/webhooks/failing", "", "")
	list := mustJSON[struct{ Endpoints []webhooks.FailingEndpoint }](t, b).Endpoints
	if code != http.StatusOK || len(list) != 1 || list[0].ID != ep.ID || list[0].OrganizationID != dist || list[0].LastError == nil {
		t.Errorf("operators' list: %d %s", code, b)
	}
	_, b = e.do(t, http.MethodGet, "/distributor/v1/webhooks/"+other.ID, token, "")
	if g := mustJSON[webhooks.Endpoint](t, b); !g.Enabled || g.FailingSince != nil {
		t.Errorf("the healthy endpoint was touched: %s", b)
	}
	code, b = e.do(t, http.MethodPatch, "/distributor/v1/webhooks/"+ep.ID, token, `{"enabled":true}`)
	if g := mustJSON[webhooks.Endpoint](t, b); code != http.StatusOK || !g.Enabled || g.DisabledReason != nil || g.FailingSince != nil {
		t.Errorf("re-enabled: %d %s", code, b)
	}
}

// TestDelivery_ConsentRecheckedAtDelivery: an event about a farmer goes
// only to organizations whose live consent covers its scope, and a
// revocation stops the deliveries still being retried at once.
func TestDelivery_ConsentRecheckedAtDelivery(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, false, func(*http.Request, int64) int {
		if failing.Load() {
			return http.StatusBadGateway
		}
		return 0
	})
	cfg := fastRetries()
	cfg.RetryBase, cfg.RetryMax = 200*time.Millisecond, 200*time.Millisecond
	e := mustEnv(t, envOpts{cfg: cfg})
	bankA, tokenA := e.org(t, identity.Bank)
	bankB, tokenB := e.org(t, identity.Bank)
	epA := e.subscribe(t, "/bank/v1", tokenA, rc.srv.URL+"/a", events.EvidenceAttested)
	rcB := newReceiver(t, false, nil)
	e.subscribe(t, "/bank/v1", tokenB, rcB.srv.URL+"/b", events.EvidenceAttested)
	farmer := uuid.NewString()
	cA := e.grant(t, farmer, bankA, "harvests", "plots")
	e.grant(t, farmer, bankB, "plots") // not harvests
	ev := aboutFarmer(farmer, consent.Harvests)
	e.emit(t, ev)
	polltest.Eventually(t, 10*time.Second, func() error {
		if n := len(rc.requests(ev.ID)); n < 2 {
			return fmt.Errorf("%d attempts", n)
		}
		return nil
	})
	e.revoke(t, cA)
	revokedAt := time.Now()
	var d webhooks.Delivery
	polltest.Eventually(t, 10*time.Second, func() error {
		_, b := e.do(t, http.MethodGet, "/bank/v1/webhooks/"+epA.ID+"/deliveries", tokenA, "")
		ds := mustJSON[struct{ Deliveries []webhooks.Delivery }](t, b).Deliveries
		if len(ds) != 1 || ds[0].State != "withheld" {
			return fmt.Errorf("deliveries %s", b)
		}
		d = ds[0]
		return nil
	})
	failing.Store(false)
	for _, r := range rc.requests(ev.ID) {
		if r.at.After(revokedAt.Add(time.Second)) {
			t.Errorf("attempt at %s, after the revocation at %s", r.at, revokedAt)
		}
	}
	if d.LastError == nil || !strings.Contains(*d.LastError, "consent") {
		t.Errorf("withheld delivery %+v", d)
	}
	// After the revocation nothing more about the farmer reaches A; B
	// never got the harvest, and gets what its consent covers.
	plots := aboutFarmer(farmer, consent.Plots)
	e.emit(t, plots)
	rcB.waitDelivered(t, 10*time.Second, plots.ID)
	if n := len(rc.requests(plots.ID)); n != 0 {
		t.Errorf("bank A got an event after its consent was revoked")
	}
	if n := len(rcB.requests(ev.ID)); n != 0 {
		t.Errorf("bank B got a harvest event its consent does not cover")
	}
	var rows int
	e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhooks.deliveries WHERE event_id = $1`, plots.ID).Scan(&rows)
	if rows != 1 {
		t.Errorf("%d deliveries of the plots event, want 1 (B's)", rows)
	}
}

// TestDelivery_SlowEndpointHoldsUpNoOther: one endpoint that answers
// only after a long wait does not delay another's deliveries.
func TestDelivery_SlowEndpointHoldsUpNoOther(t *testing.T) {
	release := make(chan struct{})
	slow := newReceiver(t, false, func(r *http.Request, _ int64) int {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 0
	})
	t.Cleanup(func() { close(release) })
	fast := newReceiver(t, false, nil)
	cfg := fastRetries()
	cfg.EndpointConcurrency, cfg.RequestTimeout = 4, 10*time.Second
	e := mustEnv(t, envOpts{cfg: cfg})
	bank, token := e.org(t, identity.Bank)
	e.subscribe(t, "/bank/v1", token, slow.srv.URL, events.LoanApplied)
	e.subscribe(t, "/bank/v1", token, fast.srv.URL, events.LoanApplied)
	var ids []string
	var evs []events.Event
	for range 200 {
		ev := toOrg(bank, events.LoanApplied, nil)
		ids, evs = append(ids, ev.ID), append(evs, ev)
	}
	start := time.Now()
	e.emit(t, evs...)
	fast.waitDelivered(t, 8*time.Second, ids...)
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("the fast endpoint took %s", took)
	}
	if n := slow.count(); n > int64(cfg.EndpointConcurrency) {
		t.Errorf("the slow endpoint has %d requests open, more than its limit %d", n, cfg.EndpointConcurrency)
	}
}
