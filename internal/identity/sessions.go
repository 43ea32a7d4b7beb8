package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
)

// Sessions: a portal user's browser holds the session id in a cookie; an
// operator's client holds it as a bearer token. Either way only its
// SHA-256 is stored (identity.sessions).
const (
	// SessionCookie is the portal's session cookie: HttpOnly, SameSite=Lax,
	// Secure unless the request came over plain http to a loopback
	// address (development), path /.
	SessionCookie = "tani_session"
	// CSRFField and CSRFHeader carry the session's synchronizer token
	// (CSRFToken) on every unsafe request of a cookie session.
	CSRFField  = "csrf_token"
	CSRFHeader = "X-CSRF-Token"
	// SignInPath is where RequireSession sends a browser that has no
	// session (with ?next=<the page asked for>).
	SignInPath = "/portal/sign-in"
	// PortalHome is where a signed-in browser goes when the sign-in form
	// named no page.
	PortalHome = "/portal/"

	// signInCookie holds the sign-in form's own CSRF token (double
	// submit), so that another site cannot sign a browser in to an
	// account of its choosing.
	signInCookie = "tani_sign_in"
	// sessionTokenPrefix starts every session id, telling it apart from
	// API keys (tani_<hex>_<hex>) and the bootstrap operator token.
	sessionTokenPrefix = "tani_s_"
	// touchEvery is how stale last_seen_at may get before a request
	// writes it again: idle expiry to the minute without a write per
	// request.
	touchEvery = time.Minute

	transportCookie = "cookie"
	transportBearer = "bearer"

	csrfKey = "identity.csrf"
)

// Session is a started session: its id (the cookie value or bearer token,
// shown to its holder only), its CSRF token and when it ends at the latest.
type Session struct {
	Token     string
	CSRFToken string
	ExpiresAt time.Time
	User      User
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSession(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// StartSession opens a session for u over transport (cookie or bearer).
func (d *Directory) startSession(ctx context.Context, u User, transport string) (Session, error) {
	s := Session{Token: sessionTokenPrefix + randomToken(), CSRFToken: randomToken(), User: u}
	err := d.pool.QueryRow(ctx, `
		INSERT INTO identity.sessions (id_hash, user_id, transport, csrf_token, idle_timeout, expires_at)
		VALUES ($1, $2, $3, $4, $5 * interval '1 microsecond', now() + $6 * interval '1 microsecond') RETURNING expires_at`,
		hashSession(s.Token), u.ID, transport, s.CSRFToken, d.cfg.SessionIdle.Microseconds(), d.cfg.SessionMax.Microseconds()).Scan(&s.ExpiresAt)
	if err != nil {
		return Session{}, fmt.Errorf("start session of %s: %w", u.ID, err)
	}
	return s, nil
}

// session returns the principal of a live session and its CSRF token.
// Every failure is the same Unauthorized answer.
func (d *Directory) session(ctx context.Context, token, transport string) (Principal, string, error) {
	denied := apperr.Errorf(apperr.Unauthorized, "no session, or it expired or ended: sign in again")
	if !strings.HasPrefix(token, sessionTokenPrefix) || len(token) > 100 {
		return Principal{}, "", denied
	}
	var p Principal
	var csrf string
	var stale bool
	hash := hashSession(token)
	err := d.pool.QueryRow(ctx, `
		SELECT u.organization_id::text, o.kind, u.id::text, u.role, u.username, s.csrf_token, s.last_seen_at < now() - $3 * interval '1 microsecond'
		FROM identity.sessions s
		JOIN identity.users u ON u.id = s.user_id
		JOIN identity.organizations o ON o.id = u.organization_id
		WHERE s.id_hash = $1 AND s.transport = $2 AND s.ended_at IS NULL AND u.active
		  AND s.expires_at > now() AND s.last_seen_at + s.idle_timeout > now()`, hash, transport, touchEvery.Microseconds()).
		Scan(&p.OrganizationID, &p.Kind, &p.UserID, &p.Role, &p.Username, &csrf, &stale)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, "", denied
	}
	if err != nil {
		return Principal{}, "", fmt.Errorf("look up session: %w", err)
	}
	if stale {
		if _, err := d.pool.Exec(ctx, `UPDATE identity.sessions SET last_seen_at = now() WHERE id_hash = $1`, hash); err != nil {
			return Principal{}, "", fmt.Errorf("touch session: %w", err)
		}
	}
	return p, csrf, nil
}

// endSession ends the session with this id; an unknown or ended one is
// not an error (signing out twice is harmless).
func (d *Directory) endSession(ctx context.Context, token string) error {
	_, err := d.pool.Exec(ctx, `UPDATE identity.sessions SET ended_at = now() WHERE id_hash = $1 AND ended_at IS NULL`, hashSession(token))
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// CSRFToken is the synchronizer token of the request's cookie session,
// for pages to put in every form as the hidden field csrf_token (or for
// scripts to send as X-CSRF-Token). It is "" outside a cookie session.
func CSRFToken(c echo.Context) string {
	s, _ := c.Get(csrfKey).(string)
	return s
}

// safeMethod reports whether a request cannot change anything, and so
// needs no CSRF token.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// checkCSRF requires an unsafe request to carry want as the X-CSRF-Token
// header or the csrf_token form field.
func checkCSRF(c echo.Context, want string) error {
	if safeMethod(c.Request().Method) {
		return nil
	}
	got := c.Request().Header.Get(CSRFHeader)
	if got == "" && isForm(c) {
		got = c.FormValue(CSRFField)
	}
	if got == "" || want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return apperr.Errorf(apperr.Forbidden, "missing or wrong CSRF token: send the session's token as the %s form field or the %s header", CSRFField, CSRFHeader)
	}
	return nil
}

func isForm(c echo.Context) bool {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	return strings.HasPrefix(ct, echo.MIMEApplicationForm) || strings.HasPrefix(ct, echo.MIMEMultipartForm)
}

// cookieSession authenticates the request's session cookie, checks the
// CSRF token of an unsafe request, and records the principal and token.
func (d *Directory) cookieSession(c echo.Context) (Principal, error) {
	ck, err := c.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return Principal{}, apperr.Errorf(apperr.Unauthorized, "not signed in")
	}
	p, csrf, err := d.session(c.Request().Context(), ck.Value, transportCookie)
	if err != nil {
		return Principal{}, err
	}
	if err := checkCSRF(c, csrf); err != nil {
		return Principal{}, err
	}
	c.Set(csrfKey, csrf)
	return p, nil
}

// RequireSession guards a portal's pages: the caller must hold a live
// cookie session of a user of an organization of this kind, and every
// unsafe request must carry the session's CSRF token. A browser asking for
// a page without a session is sent to SignInPath (and back after signing
// in); any other request gets 401. It records the same Principal as
// Require, with UserID, Username and Role.
func (d *Directory) RequireSession(kind Kind) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, err := d.cookieSession(c)
			if apperr.Is(err, apperr.Unauthorized) {
				clearCookie(c, SessionCookie, "/")
				r := c.Request()
				if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get(echo.HeaderAccept), echo.MIMETextHTML) {
					return c.Redirect(http.StatusSeeOther, SignInPath+"?next="+url.QueryEscape(r.URL.RequestURI()))
				}
				return err
			}
			if err != nil {
				return err
			}
			if p.Kind != kind {
				return apperr.Errorf(apperr.Forbidden, "these pages are for %s organizations; you are signed in for a %s", kind, p.Kind)
			}
			WithPrincipal(c, p)
			return next(c)
		}
	}
}

// secureCookie reports whether a cookie must be Secure: always, except
// for a request that came over plain http to a loopback address (a
// developer's machine), where a Secure cookie would never come back.
// Behind a TLS-terminating proxy the scheme is https
// (X-Forwarded-Proto).
func secureCookie(c echo.Context) bool {
	if c.Scheme() == "https" {
		return true
	}
	host := c.Request().Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip == nil || !ip.IsLoopback()
}

func setCookie(c echo.Context, name, value, path string, sameSite http.SameSite) {
	c.SetCookie(&http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, Secure: secureCookie(c), SameSite: sameSite})
}

func clearCookie(c echo.Context, name, path string) {
	if _, err := c.Cookie(name); err != nil {
		return
	}
	c.SetCookie(&http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1, HttpOnly: true, Secure: secureCookie(c), SameSite: http.SameSiteLaxMode})
}

// safeNext is where to send a browser after signing in: a path of this
// site (never another site: an open redirect would lend Tani's name to
// phishing), else PortalHome.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if next == "" || err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(next, "/") ||
		strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return PortalHome
	}
	return next
}
