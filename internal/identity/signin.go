package identity

import (
	"crypto/subtle"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
)

// SignInView is what a sign-in page shows. A page that renders it must
// post Username, Password, Next and CSRFToken (as the fields username,
// password, next and csrf_token) to Action.
type SignInView struct {
	Action    string
	Next      string
	CSRFToken string
	Username  string
	// Error says why the last attempt failed ("" on first display).
	Error string
}

// SignInRenderer draws the sign-in page with the given status; the
// service that owns the portal's look provides one. nil means
// DefaultSignInPage.
type SignInRenderer func(c echo.Context, status int, v SignInView) error

var signInTemplate = template.Must(template.New("sign-in").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Tani</title></head>
<body><main class="sign-in">
<h1>Sign in to Tani</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf_token" value="{{.CSRFToken}}">
<input type="hidden" name="next" value="{{.Next}}">
<label>Username <input name="username" autocomplete="username" required value="{{.Username}}"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form></main></body></html>
`))

// DefaultSignInPage is a minimal, unstyled sign-in form.
func DefaultSignInPage(c echo.Context, status int, v SignInView) error {
	var b strings.Builder
	if err := signInTemplate.Execute(&b, v); err != nil {
		return err
	}
	return c.HTML(status, b.String())
}

// MountSignIn mounts the portal's sign-in on g (the /portal group):
// GET /sign-in (the form), POST /sign-in, POST /sign-out.
func (d *Directory) MountSignIn(g *echo.Group, render SignInRenderer) {
	g.GET("/sign-in", d.SignInPage(render))
	g.POST("/sign-in", d.SignIn(render))
	g.POST("/sign-out", d.SignOut)
}

// SignInPage shows the sign-in form with a fresh sign-in CSRF token.
func (d *Directory) SignInPage(render SignInRenderer) echo.HandlerFunc {
	if render == nil {
		render = DefaultSignInPage
	}
	return func(c echo.Context) error {
		return render(c, http.StatusOK, newSignInView(c, c.QueryParam("next"), "", ""))
	}
}

// newSignInView sets a new sign-in CSRF cookie and returns the view
// carrying its token.
func newSignInView(c echo.Context, next, username, problem string) SignInView {
	token := randomToken()
	setCookie(c, signInCookie, token, SignInPath, http.SameSiteStrictMode)
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return SignInView{Action: SignInPath, Next: safeNext(next), CSRFToken: token, Username: username, Error: problem}
}

// signInJSON is the JSON body of a scripted sign-in.
type signInJSON struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// SignedIn is the answer to a JSON sign-in: the session cookie is set,
// and CSRFToken must accompany every unsafe request.
type SignedIn struct {
	User      User      `json:"user"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SignIn signs a bank's or distributor's user in with a session cookie.
// A form post (from SignInPage) must carry the form's CSRF token, which is
// also in a SameSite=Strict cookie (double submit: another site cannot
// sign a browser in to an account of its choosing); it answers 303 to
// next, or the form again with the error. A JSON post (Content-Type
// application/json, which another site cannot send without CORS, which
// Tani does not grant) answers SignedIn. A session cookie the browser
// already held is ended: every sign-in starts a new session id. Failed
// attempts are throttled per account and per client address (see
// Throttle): while locked, 429 with Retry-After, the same for every
// username.
func (d *Directory) SignIn(render SignInRenderer) echo.HandlerFunc {
	if render == nil {
		render = DefaultSignInPage
	}
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		form := isForm(c)
		var username, password, next string
		if form {
			username, password, next = c.FormValue("username"), c.FormValue("password"), c.FormValue("next")
			ck, err := c.Cookie(signInCookie)
			got := c.FormValue(CSRFField)
			if err != nil || got == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(got)) != 1 {
				return render(c, http.StatusForbidden, newSignInView(c, next, username, "This sign-in form has expired. Please try again."))
			}
		} else {
			if !strings.HasPrefix(c.Request().Header.Get(echo.HeaderContentType), echo.MIMEApplicationJSON) {
				return apperr.Fields("sign in with a form or JSON", apperr.FieldError{Field: "Content-Type", Message: "must be application/json or a form"})
			}
			var in signInJSON
			if err := httpserver.DecodeJSON(c, &in); err != nil {
				return err
			}
			username, password = in.Username, in.Password
		}
		// Operators sign in at /admin/v1/auth/login; the portal is for
		// banks' and distributors' people.
		u, err := d.signIn(ctx, username, password, d.ClientAddress(c.Request()), Bank, Distributor)
		if err != nil {
			if e, ok := apperr.As(err); ok && form {
				switch e.Code {
				case apperr.Unauthorized:
					return render(c, http.StatusUnauthorized, newSignInView(c, next, username, "Wrong username or password."))
				case apperr.TooMany:
					c.Response().Header().Set("Retry-After", httpserver.RetryAfterSeconds(e.RetryAfter))
					return render(c, http.StatusTooManyRequests, newSignInView(c, next, username,
						"Too many failed sign-ins. Please try again in "+e.RetryAfter.Round(time.Second).String()+"."))
				}
			}
			return err
		}
		if old, err := c.Cookie(SessionCookie); err == nil && old.Value != "" {
			if err := d.endSession(ctx, old.Value); err != nil {
				return err
			}
		}
		s, err := d.startSession(ctx, u, transportCookie)
		if err != nil {
			return err
		}
		setCookie(c, SessionCookie, s.Token, "/", http.SameSiteLaxMode)
		clearCookie(c, signInCookie, SignInPath)
		d.logger.InfoContext(ctx, "signed in", "user_id", u.ID, "organization_id", u.OrganizationID)
		if form {
			return c.Redirect(http.StatusSeeOther, safeNext(next))
		}
		return c.JSON(http.StatusOK, SignedIn{User: u, CSRFToken: s.CSRFToken, ExpiresAt: s.ExpiresAt})
	}
}

// SignOut ends the browser's session. Under a live session it needs the
// CSRF token like any unsafe request (another site cannot sign a user
// out); without one there is nothing to end. A form post is sent to the
// sign-in page, anything else gets 204.
func (d *Directory) SignOut(c echo.Context) error {
	ck, err := c.Cookie(SessionCookie)
	if err == nil && ck.Value != "" {
		_, csrf, err := d.session(c.Request().Context(), ck.Value, transportCookie)
		if err == nil {
			if err := checkCSRF(c, csrf); err != nil {
				return err
			}
			if err := d.endSession(c.Request().Context(), ck.Value); err != nil {
				return err
			}
		} else if !apperr.Is(err, apperr.Unauthorized) {
			return err
		}
		clearCookie(c, SessionCookie, "/")
	}
	if isForm(c) {
		return c.Redirect(http.StatusSeeOther, SignInPath)
	}
	return c.NoContent(http.StatusNoContent)
}

// OperatorToken is the answer to an operator's sign-in.
type OperatorToken struct {
	Token     string    `json:"token"`
	TokenType string    `json:"token_type"`
	ExpiresAt time.Time `json:"expires_at"`
	User      User      `json:"user"`
}

// OperatorSignIn: POST /admin/v1/auth/login {username, password}. A named
// operator or reviewer gets a bearer token for /admin/v1: a session with
// the same idle and absolute expiry as the portal's. Throttled like
// SignIn.
func (d *Directory) OperatorSignIn(c echo.Context) error {
	var in signInJSON
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	u, err := d.signIn(ctx, in.Username, in.Password, d.ClientAddress(c.Request()), Operator)
	if err != nil {
		return err
	}
	s, err := d.startSession(ctx, u, transportBearer)
	if err != nil {
		return err
	}
	d.logger.InfoContext(ctx, "operator signed in", "user_id", u.ID, "role", u.Role)
	return c.JSON(http.StatusOK, OperatorToken{Token: s.Token, TokenType: "Bearer", ExpiresAt: s.ExpiresAt, User: u})
}

// OperatorSignOut: POST /admin/v1/auth/logout ends the bearer session it
// is called with.
func (d *Directory) OperatorSignOut(c echo.Context) error {
	token, _ := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
	token = strings.TrimSpace(token)
	if !strings.HasPrefix(token, sessionTokenPrefix) {
		return apperr.Errorf(apperr.Conflict, "the bootstrap operator token is not a session: there is nothing to sign out of")
	}
	if err := d.endSession(c.Request().Context(), token); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// ReviewerMay reports whether a reviewer may call an /admin/v1 route
// (method and route path as echo registered it): the review queue and
// what a review needs to see, and signing out. Everything else under
// /admin/v1 is for operators.
func ReviewerMay(method, path string) bool {
	switch {
	case strings.HasPrefix(path, "/admin/v1/reviews"):
		return true
	case strings.HasPrefix(path, "/admin/v1/attestations/"), path == "/admin/v1/agents/quality":
		return method == http.MethodGet
	case path == "/admin/v1/auth/logout":
		return true
	}
	return false
}

// RequireOperator guards /admin/v1: the caller presents either the
// bootstrap operator token (which exists to create the first operator
// user; it records no Principal, and what it does is audited as
// "operator-token") or the bearer token of a signed-in operator user,
// whose Principal (kind operator, UserID, Username, Role) is recorded. A
// reviewer reaches only what ReviewerMay allows. dir returns the
// directory that checks user tokens, or nil in a process without the
// database (the bootstrap token still works there).
func RequireOperator(bootstrap string, dir func() *Directory) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
			token = strings.TrimSpace(token)
			if !ok || token == "" {
				return apperr.Errorf(apperr.Unauthorized, "missing bearer token: sign in at POST /admin/v1/auth/login")
			}
			if strings.HasPrefix(token, sessionTokenPrefix) {
				d := dir()
				if d == nil {
					return apperr.Errorf(apperr.Unauthorized, "this process cannot check operator sessions; use the operator token")
				}
				p, _, err := d.session(c.Request().Context(), token, transportBearer)
				if err != nil {
					return err
				}
				if p.Kind != Operator {
					return apperr.Errorf(apperr.Forbidden, "this API is for operators")
				}
				if p.Role != RoleOperator && !(p.Role == RoleReviewer && ReviewerMay(c.Request().Method, c.Path())) {
					return apperr.Errorf(apperr.Forbidden, "a %s may not do this", p.Role)
				}
				WithPrincipal(c, p)
				return next(c)
			}
			if bootstrap == "" || subtle.ConstantTimeCompare([]byte(token), []byte(bootstrap)) != 1 {
				return apperr.Errorf(apperr.Unauthorized, "invalid operator token")
			}
			return next(c)
		}
	}
}
