package webhooks_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/services/ingest"
	"github.com/tani-platform/tani/services/webhooks"
)

// env is the webhooks module running on a real database and an in-process
// JetStream, its API on a real echo server behind identity's API-key
// authentication, with the outbox relay beside it.
type env struct {
	pool     *pgxpool.Pool
	js       jetstream.JetStream
	svc      *webhooks.Service
	dir      *identity.Directory
	api      *httptest.Server
	resolver *fixedResolver
	reg      *prometheus.Registry
	echo     *echo.Echo
}

type envOpts struct {
	cfg      webhooks.Config
	rootCAs  *x509.CertPool
	noRun    bool
	resolver bool // use the fixed resolver (names must be added to it)
}

// fastRetries are the settings tests use unless they say otherwise.
func fastRetries() webhooks.Config {
	return webhooks.Config{Development: true, RequestTimeout: 2 * time.Second, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		PollInterval: 50 * time.Millisecond, Lease: 30 * time.Second}
}

func mustEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	pool := pgtest.MustDB(t, identity.Migrations, ingest.Migrations, consent.Migrations, events.Migrations, webhooks.Migrations)
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	key := make([]byte, pii.KeySize)
	rand.Read(key)
	keys, err := pii.New(key)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	e := &env{pool: pool, js: js, reg: reg}
	deps := webhooks.Deps{Pool: pool, JS: js, Gate: consent.NewGate(pool), PII: keys, Logger: logger, Consumer: natsbus.NewMetrics(reg),
		Registry: reg, Retention: 7 * 24 * time.Hour, RootCAs: o.rootCAs}
	if o.resolver {
		e.resolver = &fixedResolver{names: map[string][]netip.Addr{}}
		deps.Resolver = e.resolver
	}
	e.svc, err = webhooks.New(o.cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.dir, err = identity.New(identity.Config{DefaultKeyTTL: 24 * time.Hour}, identity.Deps{Pool: pool, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httpserver.New(httpserver.Config{BodyLimit: "1M"}, logger, prometheus.NewRegistry())
	e.svc.Routes(httpserver.Router{
		Bank:        srv.Echo.Group("/bank/v1", e.dir.Require(identity.Bank)),
		Distributor: srv.Echo.Group("/distributor/v1", e.dir.Require(identity.Distributor)),
		Admin:       srv.Echo.Group("/admin/v1"),
	})
	e.echo = srv.Echo
	e.api = httptest.NewServer(srv.Echo)
	t.Cleanup(e.api.Close)
	if o.noRun {
		return e
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	relay, err := events.NewRelay(events.Config{Interval: 20 * time.Millisecond}, events.Deps{Pool: pool, JS: js, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = relay.Run(ctx) })
	wg.Go(func() {
		if err := e.svc.Run(ctx); err != nil {
			t.Errorf("webhooks run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return e
}

// fixedResolver answers from a table, as a DNS server the test controls
// (and may make rebind).
type fixedResolver struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
}

func (r *fixedResolver) set(name string, ips ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.Addr
	for _, ip := range ips {
		out = append(out, netip.MustParseAddr(ip))
	}
	r.names[name] = out
}

func (r *fixedResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ips, ok := r.names[host]
	if !ok {
		return nil, &netDNSError{host}
	}
	return ips, nil
}

type netDNSError struct{ host string }

func (e *netDNSError) Error() string { return "no such host " + e.host }

// org creates an organization of kind k and an API key for it; scopes
// empty is every scope.
func (e *env) org(t testing.TB, k identity.Kind, scopes ...string) (id, token string) {
	t.Helper()
	id = uuid.NewString()
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO identity.organizations (id, name, kind) VALUES ($1, $2, $3)`, id, "org "+id[:8], string(k)); err != nil {
		t.Fatal(err)
	}
	_, token, err := e.dir.CreateAPIKey(context.Background(), identity.NewAPIKey{OrganizationID: id, Name: "test", Scopes: scopes, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return id, token
}

// do calls Tani's API and returns the status and body.
func (e *env) do(t testing.TB, method, path, token, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.api.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// mustJSON decodes b into v.
func mustJSON[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// subscribe registers an endpoint and returns it with its secret.
func (e *env) subscribe(t testing.TB, prefix, token, url string, types ...events.Type) webhooks.Endpoint {
	t.Helper()
	ts, _ := json.Marshal(types)
	code, b := e.do(t, http.MethodPost, prefix+"/webhooks", token, `{"url":`+quote(url)+`,"event_types":`+string(ts)+`}`)
	if code != http.StatusCreated {
		t.Fatalf("subscribe: %d %s", code, b)
	}
	return mustJSON[webhooks.Endpoint](t, b)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// emit records events as a producer does, in a transaction.
func (e *env) emit(t testing.TB, evs ...events.Event) {
	t.Helper()
	if err := pgx.BeginFunc(context.Background(), e.pool, func(tx pgx.Tx) error { return events.RecordAll(context.Background(), tx, evs) }); err != nil {
		t.Fatal(err)
	}
}

// grant stores a consent as ingest does; revoke revokes it.
func (e *env) grant(t testing.TB, farmer, org string, scopes ...string) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := e.pool.Exec(context.Background(), `
		INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at)
		VALUES ($1, $2, $3, $4, now() + interval '30 days', $5, now())`, id, farmer, org, scopes, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) revoke(t testing.TB, consentID string) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), `UPDATE ingest.consents SET revoked_at = now() WHERE consent_id = $1`, consentID); err != nil {
		t.Fatal(err)
	}
}

// toOrg is an event addressed to org.
func toOrg(org string, typ events.Type, data map[string]any) events.Event {
	return events.Event{ID: uuid.NewString(), Type: typ, OrganizationID: org, OccurredAt: time.Now(), Data: data}
}

// aboutFarmer is an event for the organizations the farmer consented to.
func aboutFarmer(farmer string, scope consent.Scope) events.Event {
	return events.Event{ID: uuid.NewString(), Type: events.EvidenceAttested, FarmerID: farmer, Scope: scope, OccurredAt: time.Now(),
		Data: map[string]any{"record_id": uuid.NewString(), "farmer_id": farmer, "scope": string(scope)}}
}
