package marketplace_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/vouchers"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/services/attest"
	"github.com/tani-platform/tani/services/ingest"
	"github.com/tani-platform/tani/services/marketplace"
	"github.com/tani-platform/tani/services/webhooks"
)

// The portal's webhooks pages through HTTP on a real echo instance, with
// the real webhooks module (production rules: https only, no private
// address) on a fresh database. The session middleware is played by a
// stand-in that signs in the user the test names (the real one, with its
// CSRF check, is exercised by TestBrowser_Webhooks).

// publicResolver resolves the test's host names: one public, one private.
type publicResolver struct{}

func (publicResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	switch host {
	case "hooks.example.com":
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	case "intranet.example.com":
		return []netip.Addr{netip.MustParseAddr("10.1.2.3")}, nil
	}
	return nil, &net404{host}
}

type net404 struct{ host string }

func (e *net404) Error() string { return "no such host " + e.host }

type portalEnv struct {
	srv      *httptest.Server
	wh       *webhooks.Service
	org, two string
	count    func(t *testing.T) int
}

func mustPortalEnv(t *testing.T) *portalEnv {
	t.Helper()
	pool := pgtest.MustDB(t, ledger.Migrations, identity.Migrations, mobileapi.Migrations, ingest.Migrations, consent.Migrations,
		attest.Migrations, events.Migrations, vouchers.Migrations, webhooks.Migrations, marketplace.Migrations)
	key := make([]byte, pii.KeySize)
	rand.Read(key)
	keys, err := pii.New(key)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	wh, err := webhooks.New(webhooks.Config{}, webhooks.Deps{Pool: pool, Gate: consent.NewGate(pool), PII: keys, Logger: logger, Resolver: publicResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	env := &portalEnv{wh: wh, org: uuid.NewString(), two: uuid.NewString()}
	// Require signs in the user the request names: X-Test-Org, X-Test-Role.
	require := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			identity.WithPrincipal(c, identity.Principal{OrganizationID: c.Request().Header.Get("X-Test-Org"), Kind: identity.Distributor,
				UserID: uuid.NewString(), Role: c.Request().Header.Get("X-Test-Role")})
			return next(c)
		}
	}
	svc, err := marketplace.New(marketplace.Config{}, marketplace.Deps{Pool: pool, Gate: consent.NewGate(pool), Journal: ledgertest.MustJournal(t),
		Logger: logger, Webhooks: app.PortalWebhooks(wh),
		Portal: &marketplace.PortalAuth{Require: require, CSRFToken: func(echo.Context) string { return "test-csrf" }}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httpserver.New(httpserver.Config{BodyLimit: "1M"}, logger, prometheus.NewRegistry())
	svc.Routes(httpserver.Router{Portal: srv.Echo.Group(marketplace.PortalBase)})
	srv.Open()
	env.srv = httptest.NewServer(srv)
	t.Cleanup(env.srv.Close)
	env.count = func(t *testing.T) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM webhooks.endpoints`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return env
}

// do sends a request as a user of org with role; form (when not nil) is
// posted. It returns the status, the Location and the page.
func (e *portalEnv) do(t *testing.T, org, role, method, path string, form url.Values) (int, string, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, e.srv.URL+marketplace.PortalBase+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("X-Test-Org", org)
	req.Header.Set("X-Test-Role", role)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// add adds an endpoint as an admin of org and returns its id and secret.
func (e *portalEnv) add(t *testing.T, org, rawURL string) (string, string) {
	t.Helper()
	code, _, page := e.do(t, org, "admin", "POST", "/webhooks", url.Values{"url": {rawURL}, "event_types": {string(events.OrderPlaced)}, "description": {"ERP"}})
	if code != http.StatusCreated {
		t.Fatalf("add endpoint: %d %s", code, page)
	}
	eps, err := e.wh.Endpoints(context.Background(), identity.Principal{OrganizationID: org, Kind: identity.Distributor})
	if err != nil || len(eps) == 0 {
		t.Fatalf("endpoints after add: %v %v", eps, err)
	}
	return eps[len(eps)-1].ID, secretOn(t, page)
}

func secretOn(t *testing.T, page string) string {
	t.Helper()
	i := strings.Index(page, `id="webhook-secret">`)
	if i < 0 {
		t.Fatalf("no secret on the page: %s", page)
	}
	rest := page[i+len(`id="webhook-secret">`):]
	return rest[:strings.Index(rest, "<")]
}

func TestPortalWebhooks(t *testing.T) {
	e := mustPortalEnv(t)
	markup := `https://hooks.example.com/in?x=<script>alert(1)</script>`

	t.Run("OK_AddShowsSecretOnce", func(t *testing.T) {
		id, secret := e.add(t, e.org, markup)
		if !strings.HasPrefix(secret, "whsec_") {
			t.Fatalf("secret %q, want whsec_…", secret)
		}
		for _, path := range []string{"/webhooks", "/webhooks/" + id} {
			code, _, page := e.do(t, e.org, "admin", "GET", path, nil)
			if code != 200 || strings.Contains(page, secret) || strings.Contains(page, "<script>") || !strings.Contains(page, "hooks.example.com") {
				t.Errorf("GET %s: %d, secret shown %v, raw markup %v", path, code, strings.Contains(page, secret), strings.Contains(page, "<script>"))
			}
		}
	})

	for _, tc := range []struct {
		name  string
		form  url.Values
		field string
	}{
		{"ErrPrivateURL", url.Values{"url": {"https://intranet.example.com/hook"}, "event_types": {string(events.OrderPlaced)}}, "loopback, private"},
		{"ErrPlainHTTP", url.Values{"url": {"http://hooks.example.com/hook"}, "event_types": {string(events.OrderPlaced)}}, "must be an https URL"},
		{"ErrNoEventType", url.Values{"url": {"https://hooks.example.com/hook"}}, "must name at least one event type"},
		{"ErrBankEventType", url.Values{"url": {"https://hooks.example.com/hook"}, "event_types": {string(events.LoanApplied)}}, "is not sent to a distributor"},
		{"ErrLongDescription", url.Values{"url": {"https://hooks.example.com/hook"}, "event_types": {string(events.OrderPlaced)}, "description": {strings.Repeat("d", 201)}}, "at most 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.count(t)
			code, _, page := e.do(t, e.org, "admin", "POST", "/webhooks", tc.form)
			if code != http.StatusBadRequest || !strings.Contains(page, tc.field) || !strings.Contains(page, "the endpoint was not added") {
				t.Errorf("got %d, want 400 with %q: %s", code, tc.field, page)
			}
			if got := e.count(t); got != before {
				t.Errorf("%d endpoints after a refused form, want %d", got, before)
			}
			if tc.form.Get("url") != "" && !strings.Contains(page, `value="`+tc.form.Get("url")+`"`) {
				t.Errorf("the form lost the URL typed")
			}
		})
	}

	t.Run("ErrStaffCannotChange", func(t *testing.T) {
		id, _ := e.add(t, e.org, "https://hooks.example.com/staff")
		before := e.count(t)
		code, _, page := e.do(t, e.org, "staff", "GET", "/webhooks", nil)
		if code != 200 || strings.Contains(page, `id="add-webhook"`) || !strings.Contains(page, "Only an administrator") {
			t.Errorf("staff list: %d, add form shown %v", code, strings.Contains(page, `id="add-webhook"`))
		}
		if code, _, page := e.do(t, e.org, "staff", "GET", "/webhooks/"+id, nil); code != 200 || strings.Contains(page, `id="rotate"`) {
			t.Errorf("staff endpoint page: %d, rotate form shown %v", code, strings.Contains(page, `id="rotate"`))
		}
		for _, a := range []struct{ path string }{{"/webhooks"}, {"/webhooks/" + id + "/rotate"}, {"/webhooks/" + id + "/disable"}, {"/webhooks/" + id + "/delete"}, {"/webhooks/" + id + "/replay"}} {
			form := url.Values{"url": {"https://hooks.example.com/x"}, "event_types": {string(events.OrderPlaced)}, "since": {"2026-01-01T00:00"}}
			code, _, page := e.do(t, e.org, "staff", "POST", a.path, form)
			if code != http.StatusForbidden || !strings.Contains(page, "only an administrator") || strings.Contains(page, "whsec_") {
				t.Errorf("staff POST %s: %d, want 403 with the reason", a.path, code)
			}
		}
		ep, err := e.wh.Endpoint(context.Background(), identity.Principal{OrganizationID: e.org, Kind: identity.Distributor}, id)
		if got := e.count(t); got != before || err != nil || !ep.Enabled {
			t.Errorf("after staff's posts: %d endpoints (want %d), enabled %v, %v", got, before, ep.Enabled, err)
		}
	})

	t.Run("OK_Rotate", func(t *testing.T) {
		id, first := e.add(t, e.org, "https://hooks.example.com/rotate")
		code, _, page := e.do(t, e.org, "admin", "POST", "/webhooks/"+id+"/rotate", url.Values{"overlap": {"1h"}})
		if code != 200 {
			t.Fatalf("rotate: %d %s", code, page)
		}
		if second := secretOn(t, page); second == first || !strings.HasPrefix(second, "whsec_") {
			t.Errorf("rotated secret %q, first %q", second, first)
		}
		if _, _, page := e.do(t, e.org, "admin", "GET", "/webhooks/"+id, nil); !strings.Contains(page, "Old secret signs until") || strings.Contains(page, "whsec_") {
			t.Errorf("endpoint page after rotation: overlap shown %v, a secret shown %v", strings.Contains(page, "Old secret signs until"), strings.Contains(page, "whsec_"))
		}
	})

	t.Run("ErrRotateBadOverlap", func(t *testing.T) {
		id, _ := e.add(t, e.org, "https://hooks.example.com/overlap")
		code, _, page := e.do(t, e.org, "admin", "POST", "/webhooks/"+id+"/rotate", url.Values{"overlap": {"999h"}})
		if code != http.StatusBadRequest || !strings.Contains(page, "the secret was not rotated") || strings.Contains(page, "whsec_") {
			t.Errorf("bad overlap: %d %s", code, page)
		}
	})

	t.Run("OK_DisableEnable", func(t *testing.T) {
		id, _ := e.add(t, e.org, "https://hooks.example.com/toggle")
		p := identity.Principal{OrganizationID: e.org, Kind: identity.Distributor}
		for _, want := range []bool{false, true} {
			action := map[bool]string{false: "disable", true: "enable"}[want]
			code, loc, _ := e.do(t, e.org, "admin", "POST", "/webhooks/"+id+"/"+action, url.Values{})
			ep, err := e.wh.Endpoint(context.Background(), p, id)
			if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/portal/webhooks/"+id) || err != nil || ep.Enabled != want {
				t.Errorf("%s: %d %s, enabled %v, %v", action, code, loc, ep.Enabled, err)
			}
		}
	})

	t.Run("ReplaySince", func(t *testing.T) {
		id, _ := e.add(t, e.org, "https://hooks.example.com/replay")
		code, _, page := e.do(t, e.org, "admin", "POST", "/webhooks/"+id+"/replay", url.Values{"since": {"yesterday"}})
		if code != http.StatusBadRequest || !strings.Contains(page, "nothing was replayed") || !strings.Contains(page, "since: must be an RFC 3339 time") {
			t.Errorf("bad since: %d %s", code, page)
		}
		code, _, page = e.do(t, e.org, "admin", "POST", "/webhooks/"+id+"/replay", url.Values{"since": {"2099-01-01T00:00"}})
		if code != http.StatusBadRequest || !strings.Contains(page, "must not be in the future") {
			t.Errorf("future since: %d %s", code, page)
		}
		code, loc, _ := e.do(t, e.org, "admin", "POST", "/webhooks/"+id+"/replay", url.Values{"since": {"2026-11-30T10:00"}})
		if code != http.StatusSeeOther || !strings.Contains(loc, "Replaying") {
			t.Errorf("replay: %d %s", code, loc)
		}
	})

	t.Run("ErrOtherOrganization", func(t *testing.T) {
		id, _ := e.add(t, e.org, "https://hooks.example.com/mine")
		before := e.count(t)
		if code, _, _ := e.do(t, e.two, "admin", "GET", "/webhooks/"+id, nil); code != http.StatusNotFound {
			t.Errorf("another organization's endpoint page: %d, want 404", code)
		}
		if code, _, _ := e.do(t, e.two, "admin", "POST", "/webhooks/"+id+"/delete", url.Values{}); code != http.StatusNotFound {
			t.Errorf("deleting another organization's endpoint: %d, want 404", code)
		}
		if code, _, _ := e.do(t, e.org, "admin", "GET", "/webhooks/NOT-AN-ID", nil); code != http.StatusBadRequest {
			t.Errorf("a bad id: %d, want 400", code)
		}
		if got := e.count(t); got != before {
			t.Errorf("%d endpoints, want %d", got, before)
		}
	})

	t.Run("OK_Delete", func(t *testing.T) {
		id, _ := e.add(t, e.org, "https://hooks.example.com/delete")
		before := e.count(t)
		code, loc, _ := e.do(t, e.org, "admin", "POST", "/webhooks/"+id+"/delete", url.Values{})
		if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/portal/webhooks?done=") || e.count(t) != before-1 {
			t.Errorf("delete: %d %s, %d endpoints (want %d)", code, loc, e.count(t), before-1)
		}
	})
}
