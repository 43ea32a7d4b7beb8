package identity_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

const bootstrap = "bootstrap-operator-token-for-tests-0123456789"

// portal is a server with identity's routes mounted as the composition
// root mounts them, plus one distributor page and one review route.
type portal struct {
	url  string
	pool *pgxpool.Pool
	dir  *identity.Directory
}

func mustPortal(t *testing.T) *portal {
	t.Helper()
	return mustPortalOn(t, pgtest.MustDB(t, identity.Migrations), identity.Config{})
}

// mustPortalOn is mustPortal on pool (another process of the same
// deployment, when pool is another portal's) with cfg's sign-in settings.
func mustPortalOn(t *testing.T, pool *pgxpool.Pool, cfg identity.Config) *portal {
	t.Helper()
	cfg.DefaultKeyTTL, cfg.SessionIdle, cfg.SessionMax = time.Hour, 30*time.Minute, 12*time.Hour
	dir, err := identity.New(cfg, identity.Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s := httpserver.New(httpserver.Config{BodyLimit: "1M"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	admin := s.Echo.Group("/admin/v1", identity.RequireOperator(bootstrap, func() *identity.Directory { return dir }))
	bank := s.Echo.Group("/bank/v1", dir.Require(identity.Bank))
	distributor := s.Echo.Group("/distributor/v1", dir.Require(identity.Distributor))
	dir.Routes(httpserver.Router{Admin: admin, Bank: bank, Distributor: distributor})
	portalGroup := s.Echo.Group("/portal")
	dir.MountSignIn(portalGroup, nil)
	s.Echo.POST("/admin/v1/auth/login", dir.OperatorSignIn)
	// What the marketplace will mount: a page behind the session.
	pages := portalGroup.Group("", dir.RequireSession(identity.Distributor))
	pages.GET("/orders", func(c echo.Context) error {
		p, _ := identity.PrincipalOf(c)
		return c.JSON(http.StatusOK, map[string]string{"user": p.UserID, "role": p.Role, "csrf": identity.CSRFToken(c)})
	})
	pages.POST("/orders", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	// A reviewer's route and an operator-only one.
	admin.POST("/reviews/:id/approve", func(c echo.Context) error {
		p, _ := identity.PrincipalOf(c)
		return c.JSON(http.StatusOK, map[string]string{"user": p.UserID, "username": p.Username})
	})
	srv := httptest.NewServer(s.Echo)
	t.Cleanup(srv.Close)
	return &portal{url: srv.URL, pool: pool, dir: dir}
}

// call is one request: headers, cookies, body (JSON unless form).
type call struct {
	method, path string
	bearer       string
	cookies      []*http.Cookie
	csrf         string
	json         any
	form         url.Values
	accept       string
	header       map[string]string
}

type answer struct {
	code    int
	body    []byte
	cookies []*http.Cookie
	header  http.Header
}

func (p *portal) do(t *testing.T, c call) answer {
	t.Helper()
	var body io.Reader
	ct := ""
	switch {
	case c.form != nil:
		body, ct = strings.NewReader(c.form.Encode()), echo.MIMEApplicationForm
	case c.json != nil:
		b, _ := json.Marshal(c.json)
		body, ct = bytes.NewReader(b), echo.MIMEApplicationJSON
	}
	req, err := http.NewRequest(c.method, p.url+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set(echo.HeaderContentType, ct)
	}
	if c.bearer != "" {
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+c.bearer)
	}
	if c.csrf != "" {
		req.Header.Set(identity.CSRFHeader, c.csrf)
	}
	if c.accept != "" {
		req.Header.Set(echo.HeaderAccept, c.accept)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	for _, ck := range c.cookies {
		req.AddCookie(ck)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: b, cookies: resp.Cookies(), header: resp.Header}
}

func (a answer) cookie(name string) *http.Cookie {
	for _, c := range a.cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

// mustOrg creates an organization through the operators' API.
func (p *portal) mustOrg(t *testing.T, kind identity.Kind) string {
	t.Helper()
	a := p.do(t, call{method: "POST", path: "/admin/v1/organizations", bearer: bootstrap, json: map[string]string{"name": string(kind) + " " + uuid.NewString()[:8], "kind": string(kind)}})
	if a.code != http.StatusCreated {
		t.Fatalf("create organization: %d %s", a.code, a.body)
	}
	var o identity.Organization
	a.decode(t, &o)
	return o.ID
}

// mustUser has the operator create a user.
func (p *portal) mustUser(t *testing.T, org, role string) (username string) {
	t.Helper()
	username = "u" + strings.ReplaceAll(uuid.NewString()[:12], "-", "")
	a := p.do(t, call{method: "POST", path: "/admin/v1/organizations/" + org + "/users", bearer: bootstrap,
		json: map[string]string{"username": username, "name": "Test " + role, "role": role, "password": "correct horse battery"}})
	if a.code != http.StatusCreated {
		t.Fatalf("create %s user: %d %s", role, a.code, a.body)
	}
	return username
}

// signedIn is a browser's session.
type signedIn struct {
	cookie *http.Cookie
	csrf   string
	user   identity.User
}

func (p *portal) mustSignIn(t *testing.T, username string) signedIn {
	t.Helper()
	a := p.do(t, call{method: "POST", path: "/portal/sign-in", json: map[string]string{"username": username, "password": "correct horse battery"}})
	if a.code != http.StatusOK {
		t.Fatalf("sign in %s: %d %s", username, a.code, a.body)
	}
	var s identity.SignedIn
	a.decode(t, &s)
	ck := a.cookie(identity.SessionCookie)
	if ck == nil {
		t.Fatal("no session cookie")
	}
	return signedIn{cookie: ck, csrf: s.CSRFToken, user: s.User}
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	p := mustPortal(t)
	bankA, bankB, dist := p.mustOrg(t, identity.Bank), p.mustOrg(t, identity.Bank), p.mustOrg(t, identity.Distributor)
	adminA := p.mustUser(t, bankA, identity.RoleAdmin)

	t.Run("OKCookieAttributesAndHashedId", func(t *testing.T) {
		a := p.do(t, call{method: "POST", path: "/portal/sign-in", json: map[string]string{"username": strings.ToUpper(adminA), "password": "correct horse battery"}})
		ck := a.cookie(identity.SessionCookie)
		if a.code != http.StatusOK || ck == nil {
			t.Fatalf("got %d %s, want 200 and a cookie", a.code, a.body)
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Path != "/" {
			t.Errorf("got cookie %+v, want HttpOnly, SameSite=Lax, not Secure on loopback http, path /", ck)
		}
		var stored, clear int
		hash := sha256.Sum256([]byte(ck.Value))
		p.pool.QueryRow(ctx, `SELECT count(*) FROM identity.sessions WHERE id_hash = $1`, hash[:]).Scan(&stored)
		p.pool.QueryRow(ctx, `SELECT count(*) FROM identity.sessions s WHERE s::text LIKE '%' || $1 || '%'`, ck.Value[len("tani_s_"):]).Scan(&clear)
		if stored != 1 || clear != 0 {
			t.Errorf("got %d rows by hash and %d holding the id in clear, want 1 and 0", stored, clear)
		}
		// Behind a TLS proxy, and on any non-loopback host, the cookie is Secure.
		for name, h := range map[string]map[string]string{
			"proxy":  {echo.HeaderXForwardedProto: "https"},
			"public": {"Host": "portal.example.com"},
		} {
			req, _ := http.NewRequest("POST", p.url+"/portal/sign-in", strings.NewReader(`{"username":"`+adminA+`","password":"correct horse battery"}`))
			req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
			for k, v := range h {
				req.Header.Set(k, v)
			}
			if k, ok := h["Host"]; ok {
				req.Host = k
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var secure bool
			for _, c := range resp.Cookies() {
				if c.Name == identity.SessionCookie {
					secure = c.Secure
				}
			}
			if !secure {
				t.Errorf("%s: got a session cookie without Secure", name)
			}
		}
	})

	admin := p.mustSignIn(t, adminA)
	t.Run("OKAdminCreatesStaff", func(t *testing.T) {
		a := p.do(t, call{method: "POST", path: "/bank/v1/users", cookies: []*http.Cookie{admin.cookie}, csrf: admin.csrf,
			json: map[string]string{"username": "staff-" + uuid.NewString()[:8], "name": "Teller", "password": "correct horse battery"}})
		var u identity.User
		a.decode(t, &u)
		if a.code != http.StatusCreated || u.Role != identity.RoleStaff || u.OrganizationID != bankA || u.CreatedBy != "user:"+admin.user.ID {
			t.Errorf("got %d %+v, want a staff user of bank A created by %s", a.code, u, admin.user.ID)
		}
	})
	t.Run("ErrMissingCSRF", func(t *testing.T) {
		for name, c := range map[string]call{
			"none":  {method: "POST", path: "/bank/v1/users", cookies: []*http.Cookie{admin.cookie}, json: map[string]string{"username": "nocsrf1", "name": "X", "password": "correct horse battery"}},
			"wrong": {method: "POST", path: "/bank/v1/users", cookies: []*http.Cookie{admin.cookie}, csrf: "x" + admin.csrf, json: map[string]string{"username": "nocsrf2", "name": "X", "password": "correct horse battery"}},
			"form":  {method: "POST", path: "/bank/v1/api-keys/" + uuid.NewString() + "/revoke", cookies: []*http.Cookie{admin.cookie}, form: url.Values{"csrf_token": {"nope"}}},
		} {
			if a := p.do(t, c); a.code != http.StatusForbidden || !strings.Contains(string(a.body), "CSRF") {
				t.Errorf("%s: got %d %s, want 403 naming CSRF", name, a.code, a.body)
			}
		}
		var n int
		p.pool.QueryRow(ctx, `SELECT count(*) FROM identity.users WHERE username LIKE 'nocsrf%'`).Scan(&n)
		if n != 0 {
			t.Errorf("got %d users stored without a CSRF token, want 0", n)
		}
		// A safe method needs none.
		if a := p.do(t, call{method: "GET", path: "/bank/v1/users", cookies: []*http.Cookie{admin.cookie}}); a.code != http.StatusOK {
			t.Errorf("GET: got %d %s, want 200", a.code, a.body)
		}
	})
	t.Run("ErrStaffAndKeysCannotAdminister", func(t *testing.T) {
		staff := p.mustSignIn(t, p.mustUser(t, bankA, identity.RoleStaff))
		_, token, err := p.dir.CreateAPIKey(ctx, identity.NewAPIKey{OrganizationID: bankA, Name: "k", ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]call{
			"staffList":  {method: "GET", path: "/bank/v1/users", cookies: []*http.Cookie{staff.cookie}},
			"staffKey":   {method: "POST", path: "/bank/v1/api-keys", cookies: []*http.Cookie{staff.cookie}, csrf: staff.csrf, json: map[string]string{"name": "x"}},
			"apiKeyKeys": {method: "GET", path: "/bank/v1/api-keys", bearer: token},
			"apiKeyUser": {method: "POST", path: "/bank/v1/users", bearer: token, json: map[string]string{"username": "bykey", "name": "X", "password": "correct horse battery"}},
		} {
			if a := p.do(t, c); a.code != http.StatusForbidden {
				t.Errorf("%s: got %d %s, want 403", name, a.code, a.body)
			}
		}
	})
	t.Run("ErrBadUsers", func(t *testing.T) {
		operatorOrg := p.mustOrg(t, identity.Operator)
		field := p.mustOrg(t, identity.Field)
		cases := map[string]struct {
			org   string
			body  map[string]string
			code  int
			field string
		}{
			"ShortPassword":   {bankA, map[string]string{"username": "shortpw", "name": "X", "role": "staff", "password": "short"}, 400, "password"},
			"BadUsername":     {bankA, map[string]string{"username": "a b", "name": "X", "role": "staff", "password": "correct horse battery"}, 400, "username"},
			"NoName":          {bankA, map[string]string{"username": "noname", "name": " ", "role": "staff", "password": "correct horse battery"}, 400, "name"},
			"OperatorRole":    {bankA, map[string]string{"username": "bankop", "name": "X", "role": "operator", "password": "correct horse battery"}, 400, "role"},
			"StaffOfOperator": {operatorOrg, map[string]string{"username": "opstaff", "name": "X", "role": "staff", "password": "correct horse battery"}, 400, "role"},
			"FieldOrg":        {field, map[string]string{"username": "fielduser", "name": "X", "role": "staff", "password": "correct horse battery"}, 400, "organization_id"},
			"UnknownOrg":      {uuid.NewString(), map[string]string{"username": "nobody", "name": "X", "role": "admin", "password": "correct horse battery"}, 404, ""},
			"Taken":           {bankB, map[string]string{"username": adminA, "name": "X", "role": "admin", "password": "correct horse battery"}, 409, ""},
		}
		for name, tc := range cases {
			a := p.do(t, call{method: "POST", path: "/admin/v1/organizations/" + tc.org + "/users", bearer: bootstrap, json: tc.body})
			if a.code != tc.code || tc.field != "" && !strings.Contains(string(a.body), `"field":"`+tc.field+`"`) {
				t.Errorf("%s: got %d %s, want %d naming %q", name, a.code, a.body, tc.code, tc.field)
			}
		}
		if a := p.do(t, call{method: "POST", path: "/admin/v1/organizations/NOT-A-UUID/users", bearer: bootstrap, json: map[string]string{}}); a.code != 400 {
			t.Errorf("malformed org id: got %d, want 400", a.code)
		}
	})

	t.Run("RequireSession", func(t *testing.T) {
		distUser := p.mustSignIn(t, p.mustUser(t, dist, identity.RoleStaff))
		a := p.do(t, call{method: "GET", path: "/portal/orders?state=open", accept: "text/html,application/xhtml+xml"})
		if a.code != http.StatusSeeOther || a.header.Get("Location") != "/portal/sign-in?next="+url.QueryEscape("/portal/orders?state=open") {
			t.Errorf("browser without session: got %d Location %q, want 303 to the sign-in page", a.code, a.header.Get("Location"))
		}
		if a := p.do(t, call{method: "GET", path: "/portal/orders", accept: "application/json"}); a.code != http.StatusUnauthorized {
			t.Errorf("API without session: got %d, want 401", a.code)
		}
		if a := p.do(t, call{method: "GET", path: "/portal/orders", cookies: []*http.Cookie{admin.cookie}}); a.code != http.StatusForbidden {
			t.Errorf("a bank's session on distributor pages: got %d, want 403", a.code)
		}
		a = p.do(t, call{method: "GET", path: "/portal/orders", cookies: []*http.Cookie{distUser.cookie}})
		var got map[string]string
		a.decode(t, &got)
		if a.code != http.StatusOK || got["user"] != distUser.user.ID || got["role"] != identity.RoleStaff || got["csrf"] != distUser.csrf {
			t.Errorf("got %d %v, want the user's principal and CSRF token", a.code, got)
		}
		if a := p.do(t, call{method: "POST", path: "/portal/orders", cookies: []*http.Cookie{distUser.cookie}, form: url.Values{}}); a.code != http.StatusForbidden {
			t.Errorf("form post without csrf_token: got %d, want 403", a.code)
		}
		if a := p.do(t, call{method: "POST", path: "/portal/orders", cookies: []*http.Cookie{distUser.cookie}, form: url.Values{"csrf_token": {distUser.csrf}}}); a.code != http.StatusNoContent {
			t.Errorf("form post with csrf_token: got %d %s, want 204", a.code, a.body)
		}
		// The same session reaches the distributors' JSON API, never the banks'.
		if a := p.do(t, call{method: "GET", path: "/bank/v1/users", cookies: []*http.Cookie{distUser.cookie}}); a.code != http.StatusForbidden {
			t.Errorf("distributor session on /bank/v1: got %d, want 403", a.code)
		}
	})

	t.Run("FormSignIn", func(t *testing.T) {
		page := p.do(t, call{method: "GET", path: "/portal/sign-in?next=/portal/orders"})
		token := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindSubmatch(page.body)
		formCookie := page.cookie("tani_sign_in")
		if page.code != 200 || token == nil || formCookie == nil || formCookie.SameSite != http.SameSiteStrictMode {
			t.Fatalf("got %d %s (cookie %+v), want the form with a token", page.code, page.body, formCookie)
		}
		creds := url.Values{"username": {adminA}, "password": {"correct horse battery"}, "next": {"/portal/orders"}}
		if a := p.do(t, call{method: "POST", path: "/portal/sign-in", form: creds}); a.code != http.StatusForbidden || a.cookie(identity.SessionCookie) != nil {
			t.Errorf("without the form's token: got %d, want 403 and no session", a.code)
		}
		withToken := func(v url.Values) url.Values {
			out := url.Values{"csrf_token": {string(token[1])}}
			for k, x := range v {
				out[k] = x
			}
			return out
		}
		a := p.do(t, call{method: "POST", path: "/portal/sign-in", form: withToken(url.Values{"username": {adminA}, "password": {"wrong password!!"}}), cookies: []*http.Cookie{formCookie}})
		if a.code != http.StatusUnauthorized || !strings.Contains(string(a.body), "Wrong username or password") || a.cookie(identity.SessionCookie) != nil {
			t.Errorf("wrong password: got %d, want 401 with the form again", a.code)
		}
		a = p.do(t, call{method: "POST", path: "/portal/sign-in", form: withToken(creds), cookies: []*http.Cookie{formCookie}})
		if a.code != http.StatusSeeOther || a.header.Get("Location") != "/portal/orders" || a.cookie(identity.SessionCookie) == nil {
			t.Errorf("got %d to %q, want 303 to /portal/orders with a session", a.code, a.header.Get("Location"))
		}
		for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example"} {
			a = p.do(t, call{method: "POST", path: "/portal/sign-in", form: withToken(url.Values{"username": {adminA}, "password": {"correct horse battery"}, "next": {next}}), cookies: []*http.Cookie{formCookie}})
			if a.header.Get("Location") != identity.PortalHome {
				t.Errorf("next %q: got Location %q, want %s", next, a.header.Get("Location"), identity.PortalHome)
			}
		}
		// JSON without its content type is refused (another site's
		// simple request cannot sign a browser in).
		req, _ := http.NewRequest("POST", p.url+"/portal/sign-in", strings.NewReader(`{"username":"`+adminA+`","password":"correct horse battery"}`))
		req.Header.Set(echo.HeaderContentType, "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("text/plain sign-in: got %d, want 400", resp.StatusCode)
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		for name, update := range map[string]string{
			"Idle":     `UPDATE identity.sessions SET last_seen_at = now() - interval '31 minutes' WHERE id_hash = $1`,
			"Absolute": `UPDATE identity.sessions SET expires_at = now() - interval '1 second' WHERE id_hash = $1`,
		} {
			s := p.mustSignIn(t, adminA)
			hash := sha256.Sum256([]byte(s.cookie.Value))
			if a := p.do(t, call{method: "GET", path: "/bank/v1/users", cookies: []*http.Cookie{s.cookie}}); a.code != 200 {
				t.Fatalf("%s: live session got %d", name, a.code)
			}
			if _, err := p.pool.Exec(ctx, update, hash[:]); err != nil {
				t.Fatal(err)
			}
			if a := p.do(t, call{method: "GET", path: "/bank/v1/users", cookies: []*http.Cookie{s.cookie}}); a.code != http.StatusUnauthorized {
				t.Errorf("%s: got %d, want 401", name, a.code)
			}
		}
	})
	t.Run("SignOutAndFixation", func(t *testing.T) {
		s := p.mustSignIn(t, adminA)
		if a := p.do(t, call{method: "POST", path: "/portal/sign-out", cookies: []*http.Cookie{s.cookie}}); a.code != http.StatusForbidden {
			t.Errorf("sign-out without CSRF: got %d, want 403", a.code)
		}
		a := p.do(t, call{method: "POST", path: "/portal/sign-out", cookies: []*http.Cookie{s.cookie}, csrf: s.csrf})
		if a.code != http.StatusNoContent || a.cookie(identity.SessionCookie) == nil || a.cookie(identity.SessionCookie).MaxAge >= 0 {
			t.Errorf("got %d, want 204 clearing the cookie", a.code)
		}
		if a := p.do(t, call{method: "GET", path: "/bank/v1/users", cookies: []*http.Cookie{s.cookie}}); a.code != http.StatusUnauthorized {
			t.Errorf("after sign-out: got %d, want 401", a.code)
		}
		// Signing in again over a live session ends the old one.
		old := p.mustSignIn(t, adminA)
		a = p.do(t, call{method: "POST", path: "/portal/sign-in", cookies: []*http.Cookie{old.cookie}, json: map[string]string{"username": adminA, "password": "correct horse battery"}})
		if a.code != 200 || a.cookie(identity.SessionCookie).Value == old.cookie.Value {
			t.Fatalf("got %d, want a new session id", a.code)
		}
		if a := p.do(t, call{method: "GET", path: "/bank/v1/users", cookies: []*http.Cookie{old.cookie}}); a.code != http.StatusUnauthorized {
			t.Errorf("old session after a new sign-in: got %d, want 401", a.code)
		}
	})
	t.Run("DeactivationEndsSessions", func(t *testing.T) {
		name := p.mustUser(t, bankA, identity.RoleStaff)
		s := p.mustSignIn(t, name)
		a := p.do(t, call{method: "POST", path: "/bank/v1/users/" + s.user.ID + "/deactivate", cookies: []*http.Cookie{admin.cookie}, csrf: admin.csrf})
		if a.code != 200 {
			t.Fatalf("deactivate: %d %s", a.code, a.body)
		}
		if a := p.do(t, call{method: "GET", path: "/portal/orders", cookies: []*http.Cookie{s.cookie}}); a.code != http.StatusUnauthorized {
			t.Errorf("deactivated user's session: got %d, want 401", a.code)
		}
		if a := p.do(t, call{method: "POST", path: "/portal/sign-in", json: map[string]string{"username": name, "password": "correct horse battery"}}); a.code != http.StatusUnauthorized {
			t.Errorf("deactivated user's sign-in: got %d, want 401", a.code)
		}
	})
}

func TestOrganizationKeys(t *testing.T) {
	ctx := context.Background()
	p := mustPortal(t)
	bankA, bankB := p.mustOrg(t, identity.Bank), p.mustOrg(t, identity.Bank)
	a := p.mustSignIn(t, p.mustUser(t, bankA, identity.RoleAdmin))
	b := p.mustSignIn(t, p.mustUser(t, bankB, identity.RoleAdmin))
	as := func(s signedIn, method, path string, body any) answer {
		return p.do(t, call{method: method, path: path, cookies: []*http.Cookie{s.cookie}, csrf: s.csrf, json: body})
	}
	created := as(a, "POST", "/bank/v1/api-keys", map[string]any{"name": "scoring", "scopes": []string{"credit", "plots"}})
	var key identity.NewKey
	created.decode(t, &key)
	if created.code != 201 || key.OrganizationID != bankA || !strings.HasPrefix(key.Token, "tani_") {
		t.Fatalf("create: got %d %s", created.code, created.body)
	}
	works := func(token string) bool {
		r := p.do(t, call{method: "GET", path: "/bank/v1/nothing-here", bearer: token})
		return r.code == http.StatusNotFound
	}
	if !works(key.Token) {
		t.Fatal("new key does not authenticate")
	}

	t.Run("ErrBadKeyRequests", func(t *testing.T) {
		for name, body := range map[string]any{
			"NoName":       map[string]any{"scopes": []string{"credit"}},
			"UnknownScope": map[string]any{"name": "x", "scopes": []string{"salary"}},
			"PastExpiry":   map[string]any{"name": "x", "expires_at": time.Now().Add(-time.Hour)},
			"FarExpiry":    map[string]any{"name": "x", "expires_at": time.Now().Add(400 * 24 * time.Hour)},
			"UnknownField": map[string]any{"name": "x", "organization_id": bankB},
		} {
			if r := as(a, "POST", "/bank/v1/api-keys", body); r.code != 400 {
				t.Errorf("%s: got %d %s, want 400", name, r.code, r.body)
			}
		}
		if r := as(a, "POST", "/bank/v1/api-keys/"+key.ID+"/rotate", map[string]any{"overlap_seconds": -1}); r.code != 400 {
			t.Errorf("negative overlap: got %d, want 400", r.code)
		}
		if r := as(a, "POST", "/bank/v1/api-keys/NOT-A-UUID/revoke", nil); r.code != 400 {
			t.Errorf("malformed key id: got %d, want 400", r.code)
		}
	})
	t.Run("ErrOtherOrganizationsKeys", func(t *testing.T) {
		var list struct {
			APIKeys []identity.APIKey `json:"api_keys"`
		}
		as(b, "GET", "/bank/v1/api-keys", nil).decode(t, &list)
		if len(list.APIKeys) != 0 {
			t.Errorf("bank B sees %d keys, want none of bank A's", len(list.APIKeys))
		}
		for _, action := range []string{"revoke", "rotate"} {
			if r := as(b, "POST", "/bank/v1/api-keys/"+key.ID+"/"+action, nil); r.code != http.StatusNotFound {
				t.Errorf("bank B %ss bank A's key: got %d, want 404", action, r.code)
			}
		}
		if !works(key.Token) {
			t.Error("bank A's key stopped working after bank B's attempts")
		}
		var users struct{ Users []identity.User }
		as(b, "GET", "/bank/v1/users", nil).decode(t, &users)
		if len(users.Users) != 1 || users.Users[0].OrganizationID != bankB {
			t.Errorf("bank B lists %+v, want only its own admin", users.Users)
		}
		if r := as(b, "POST", "/bank/v1/users/"+a.user.ID+"/deactivate", nil); r.code != http.StatusNotFound {
			t.Errorf("bank B deactivates bank A's admin: got %d, want 404", r.code)
		}
	})
	t.Run("RotateWithOverlap", func(t *testing.T) {
		r := as(a, "POST", "/bank/v1/api-keys/"+key.ID+"/rotate", map[string]any{"overlap_seconds": 3600})
		var rot identity.Rotated
		r.decode(t, &rot)
		if r.code != 201 || rot.Replaces.ID != key.ID || rot.Name != "scoring" || len(rot.Scopes) != 2 || rot.Replaces.RevokedAt == nil {
			t.Fatalf("got %d %s", r.code, r.body)
		}
		if d := time.Until(*rot.Replaces.RevokedAt); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("old key revoked in %s, want about an hour", d)
		}
		if !works(key.Token) || !works(rot.Token) {
			t.Error("during the overlap both keys must work")
		}
		// The overlap ends: only the new key works.
		if _, err := p.pool.Exec(ctx, `UPDATE identity.api_keys SET revoked_at = now() - interval '1 second' WHERE id = $1`, key.ID); err != nil {
			t.Fatal(err)
		}
		if works(key.Token) || !works(rot.Token) {
			t.Error("after the overlap only the new key must work")
		}
		// Immediate rotation and revocation.
		r = as(a, "POST", "/bank/v1/api-keys/"+rot.ID+"/rotate", map[string]any{"overlap_seconds": 0})
		var rot2 identity.Rotated
		r.decode(t, &rot2)
		if r.code != 201 || works(rot.Token) || !works(rot2.Token) {
			t.Errorf("overlap 0: got %d, want the old key dead at once", r.code)
		}
		if r := as(a, "POST", "/bank/v1/api-keys/"+rot2.ID+"/revoke", nil); r.code != 204 || works(rot2.Token) {
			t.Errorf("revoke: got %d, want 204 and the key dead", r.code)
		}
		if r := as(a, "POST", "/bank/v1/api-keys/"+rot2.ID+"/rotate", nil); r.code != 404 {
			t.Errorf("rotating a revoked key: got %d, want 404", r.code)
		}
	})
}

func TestOperatorUsers(t *testing.T) {
	p := mustPortal(t)
	ops := p.mustOrg(t, identity.Operator)
	bank := p.mustOrg(t, identity.Bank)
	login := func(username string) (int, identity.OperatorToken) {
		a := p.do(t, call{method: "POST", path: "/admin/v1/auth/login", json: map[string]string{"username": username, "password": "correct horse battery"}})
		var tok identity.OperatorToken
		if a.code == 200 {
			a.decode(t, &tok)
		}
		return a.code, tok
	}
	operator, reviewer, banker := p.mustUser(t, ops, identity.RoleOperator), p.mustUser(t, ops, identity.RoleReviewer), p.mustUser(t, bank, identity.RoleAdmin)
	code, op := login(operator)
	if code != 200 || op.TokenType != "Bearer" {
		t.Fatalf("operator login: %d", code)
	}
	_, rev := login(reviewer)
	if code, _ := login(banker); code != http.StatusUnauthorized {
		t.Errorf("a bank's user at the operators' login: got %d, want 401", code)
	}
	if a := p.do(t, call{method: "POST", path: "/portal/sign-in", json: map[string]string{"username": operator, "password": "correct horse battery"}}); a.code != http.StatusUnauthorized {
		t.Errorf("an operator at the portal: got %d, want 401", a.code)
	}

	// An operator user administers, and is named in what it creates.
	a := p.do(t, call{method: "POST", path: "/admin/v1/organizations/" + bank + "/users", bearer: op.Token,
		json: map[string]string{"username": "second-admin", "name": "X", "role": "admin", "password": "correct horse battery"}})
	var u identity.User
	a.decode(t, &u)
	if a.code != 201 || u.CreatedBy != "user:"+op.User.ID {
		t.Errorf("got %d %s, want created by the operator user", a.code, a.body)
	}
	// A reviewer reviews, and nothing else.
	if a := p.do(t, call{method: "GET", path: "/admin/v1/organizations", bearer: rev.Token}); a.code != http.StatusForbidden {
		t.Errorf("reviewer lists organizations: got %d, want 403", a.code)
	}
	a = p.do(t, call{method: "POST", path: "/admin/v1/reviews/" + uuid.NewString() + "/approve", bearer: rev.Token})
	var who map[string]string
	a.decode(t, &who)
	if a.code != 200 || who["user"] != rev.User.ID || who["username"] != reviewer {
		t.Errorf("reviewer approves: got %d %v, want the reviewer's principal", a.code, who)
	}
	// The bootstrap token still works; a bank's cookie session id as a bearer does not.
	if a := p.do(t, call{method: "GET", path: "/admin/v1/organizations", bearer: bootstrap}); a.code != 200 {
		t.Errorf("bootstrap token: got %d", a.code)
	}
	bankSession := p.mustSignIn(t, banker)
	if a := p.do(t, call{method: "GET", path: "/admin/v1/organizations", bearer: bankSession.cookie.Value}); a.code != http.StatusUnauthorized {
		t.Errorf("a portal session as an operator bearer: got %d, want 401", a.code)
	}
	// Signing out kills the token.
	if a := p.do(t, call{method: "POST", path: "/admin/v1/auth/logout", bearer: op.Token}); a.code != 204 {
		t.Errorf("logout: got %d", a.code)
	}
	if a := p.do(t, call{method: "GET", path: "/admin/v1/organizations", bearer: op.Token}); a.code != http.StatusUnauthorized {
		t.Errorf("after logout: got %d, want 401", a.code)
	}
}
