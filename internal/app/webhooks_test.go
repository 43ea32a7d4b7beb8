package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/porttest"
)

// flakyReceiver is an organization's endpoint that fails a share of
// requests at random and can be taken down (connections refused) and
// brought back on the same address. It checks every request with the
// Standard Webhooks reference library and keeps, per webhook-id, the
// bodies it acknowledged.
type flakyReceiver struct {
	addr     string
	failRate float64
	srv      *http.Server

	mu       sync.Mutex
	secret   *standardwebhooks.Webhook
	acked    map[string][][]byte
	requests int
	bad      []string
	ln       net.Listener
}

func newFlakyReceiver(t *testing.T, failRate float64) *flakyReceiver {
	r := &flakyReceiver{addr: porttest.Addr(t), failRate: failRate, acked: map[string][][]byte{}}
	r.srv = &http.Server{Handler: r}
	r.up(t)
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *flakyReceiver) up(t *testing.T) {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("receiver up: %v", err)
	}
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go r.srv.Serve(ln)
}

// down closes the listener and every open connection: new attempts are
// refused until up.
func (r *flakyReceiver) down() {
	r.mu.Lock()
	ln := r.ln
	r.mu.Unlock()
	ln.Close()
	r.srv.SetKeepAlivesEnabled(false)
	r.srv.SetKeepAlivesEnabled(true)
}

func (r *flakyReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if r.secret != nil {
		if err := r.secret.Verify(body, req.Header); err != nil && len(r.bad) < 10 {
			r.bad = append(r.bad, fmt.Sprintf("%s: %v", req.Header.Get("webhook-id"), err))
		}
	}
	if rand.Float64() < r.failRate {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	id := req.Header.Get("webhook-id")
	r.acked[id] = append(r.acked[id], body)
	w.WriteHeader(http.StatusOK)
}

func (r *flakyReceiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acked)
}

// adminPost calls the operators' API.
func adminPost(t *testing.T, tani *apptest.Running, path, body string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tani.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tani.OperatorToken)
	req.Header.Set("Content-Type", "application/json")
	orgPost(t, req, out)
}

func orgPost(t *testing.T, req *http.Request, out any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// TestWebhooks_ReliableDelivery sends 10,000 events to an endpoint that
// fails 30 % of requests at random and is down for a stretch, and kills
// the tani process delivering them half way, recording events all along
// (the new process relays what the dead one left in the outbox). Every
// event arrives at least once; every repeat carries the same webhook-id
// and the same signed body; the database ends with one delivered row per
// event.
func TestWebhooks_ReliableDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 deliveries and a restart")
	}
	dir, addr := t.TempDir(), porttest.Addr(t)
	natstest.MustServerOn(t, dir, addr)
	args := []string{"-target=webhooks", "-nats.url=nats://" + addr, "-webhooks.development",
		"-webhooks.retry-base=50ms", "-webhooks.retry-max=1s", "-webhooks.poll-interval=100ms", "-webhooks.lease=5s",
		"-webhooks.request-timeout=2s", "-events.relay-interval=50ms"}
	tani := apptest.MustStart(t, args...)
	rc := newFlakyReceiver(t, 0.30)

	var org struct{ ID string }
	adminPost(t, tani, "/admin/v1/organizations", `{"name":"Bank Rakyat Test","kind":"bank"}`, &org)
	var key struct{ Token string }
	adminPost(t, tani, "/admin/v1/organizations/"+org.ID+"/api-keys", `{"name":"webhooks"}`, &key)
	req, _ := http.NewRequest(http.MethodPost, tani.URL+"/bank/v1/webhooks", strings.NewReader(
		`{"url":"http://`+rc.addr+`/tani","event_types":["loan.applied","evidence.attested"]}`))
	req.Header.Set("Authorization", "Bearer "+key.Token)
	req.Header.Set("Content-Type", "application/json")
	var ep struct{ ID, Secret string }
	orgPost(t, req, &ep)
	wh, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	rc.secret = wh
	rc.mu.Unlock()
	ctx := context.Background()
	farmer := uuid.NewString()
	if _, err := tani.DB.Exec(ctx, `INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at)
		VALUES ($1, $2, $3, '{harvests}', now() + interval '30 days', $4, now())`, uuid.NewString(), farmer, org.ID, uuid.NewString()); err != nil {
		t.Fatal(err)
	}

	// Producers record 10,000 events over about ten seconds (the process
	// is killed while they still do), a tenth of them about a consented
	// farmer.
	const total = 10000
	ids := make([]string, 0, total)
	emitted := make(chan error, 1)
	go func() {
		var err error
		defer func() { emitted <- err }()
		for len(ids) < total {
			var batch []events.Event
			for range 100 {
				ev := events.Event{ID: uuid.NewString(), Type: events.LoanApplied, OrganizationID: org.ID, OccurredAt: time.Now(),
					Data: map[string]any{"loan_id": uuid.NewString(), "n": len(ids) + len(batch)}}
				if (len(ids)+len(batch))%10 == 0 {
					ev = events.Event{ID: uuid.NewString(), Type: events.EvidenceAttested, FarmerID: farmer, Scope: consent.Harvests, OccurredAt: time.Now(),
						Data: map[string]any{"record_id": uuid.NewString(), "farmer_id": farmer}}
				}
				batch = append(batch, ev)
			}
			if err = pgx.BeginFunc(ctx, tani.DB, func(tx pgx.Tx) error { return events.RecordAll(ctx, tx, batch) }); err != nil {
				return
			}
			for _, ev := range batch {
				ids = append(ids, ev.ID)
			}
			time.Sleep(100 * time.Millisecond) // producers' pace, not a wait for a result
		}
	}()

	progress := func(n int) func() error {
		return func() error {
			if d := rc.distinct(); d < n {
				return fmt.Errorf("%d distinct events acknowledged, waiting for %d", d, n)
			}
			return nil
		}
	}
	start := time.Now()
	polltest.Eventually(t, 60*time.Second, progress(2000))
	rc.down()
	downAt := time.Now()
	polltest.Eventually(t, 30*time.Second, func() error {
		if time.Since(downAt) < 3*time.Second {
			return errors.New("receiver down")
		}
		return nil
	})
	rc.up(t)
	polltest.Eventually(t, 60*time.Second, progress(5000))
	tani.Kill()
	killedAt := rc.distinct()
	var recordedAtKill int
	if err := tani.DB.QueryRow(ctx, `SELECT count(*) FROM events.outbox`).Scan(&recordedAtKill); err != nil {
		t.Fatal(err)
	}
	apptest.MustStart(t, append(args, "-database.url="+tani.DatabaseURL)...) // its DB field is a database of its own: assertions use tani.DB
	if err := <-emitted; err != nil {
		t.Fatalf("record events: %v", err)
	}
	polltest.Eventually(t, 3*time.Minute, progress(total))
	took := time.Since(start)

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Errorf("signatures that do not verify: %v", rc.bad)
	}
	dups := 0
	for _, id := range ids {
		bodies := rc.acked[id]
		if len(bodies) == 0 {
			t.Fatalf("event %s never arrived", id)
		}
		for _, b := range bodies[1:] {
			dups++
			if !bytes.Equal(b, bodies[0]) {
				t.Errorf("event %s arrived twice with different bodies", id)
			}
		}
	}
	if len(rc.acked) != total {
		t.Errorf("%d distinct webhook-ids acknowledged, want %d (an id not from the events)", len(rc.acked), total)
	}
	polltest.Eventually(t, 30*time.Second, func() error {
		var delivered, rows int
		if err := tani.DB.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'delivered'), count(*) FROM webhooks.deliveries`).Scan(&delivered, &rows); err != nil {
			return err
		}
		if rows != total || delivered != total {
			return fmt.Errorf("%d delivery rows, %d delivered, want %d", rows, delivered, total)
		}
		return nil
	})
	t.Logf("%d events delivered in %s: %d requests (30%% failed at random, a 3 s outage), %d duplicates after the kill at %d acknowledged (%d recorded by then)",
		total, took.Round(time.Millisecond), rc.requests, dups, killedAt, recordedAtKill)
}
