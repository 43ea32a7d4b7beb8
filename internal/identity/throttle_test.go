package identity_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

const password = "correct horse battery"

var regexpToken = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func mustDB(t *testing.T) *pgxpool.Pool { return pgtest.MustDB(t, identity.Migrations) }

// signIn posts a JSON sign-in to path with the given password, from the
// client named by xff (sent as X-Forwarded-For when not empty).
func (p *portal) signIn(t *testing.T, path, username, pw, xff string) answer {
	t.Helper()
	c := call{method: "POST", path: path, json: map[string]string{"username": username, "password": pw}}
	if xff != "" {
		c.header = map[string]string{"X-Forwarded-For": xff}
	}
	return p.do(t, c)
}

// unlock makes every lockout of the deployment end now, as time passing
// would.
func (p *portal) unlock(t *testing.T) {
	t.Helper()
	if _, err := p.pool.Exec(context.Background(), `UPDATE identity.sign_in_failures SET locked_until = now() WHERE locked_until IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
}

// throttled checks a 429 in the common error shape with a Retry-After of
// at least one second; it returns the body's error.
func throttled(t *testing.T, a answer) httpserver.ErrorDetail {
	t.Helper()
	if a.code != http.StatusTooManyRequests {
		t.Fatalf("got %d %s, want 429", a.code, a.body)
	}
	if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q, want whole seconds ≥ 1", a.header.Get("Retry-After"))
	}
	var b httpserver.ErrorBody
	a.decode(t, &b)
	if b.Error.Code != "too_many" {
		t.Errorf("error code %q, want too_many", b.Error.Code)
	}
	return b.Error
}

// TestSignInThrottle: failed password sign-ins lock an account, with
// exponential backoff, before its password is even checked; an unknown
// username gets exactly the same answers; a success clears the account's
// count; the count holds across processes and concurrent guesses.
func TestSignInThrottle(t *testing.T) {
	// 5 free failures per account (the default); every guess here comes
	// from one address, which TestSignInThrottle_PerAddress tests.
	cfg := identity.Config{SignIn: identity.Throttle{AddressFree: 1000}}
	p := mustPortalOn(t, mustDB(t), cfg)
	bank := p.mustOrg(t, identity.Bank)

	// guess runs the sequence an attacker would: five wrong passwords
	// (401), a sixth (401, and from then on locked), then the right
	// password, refused unchecked (429).
	guess := func(t *testing.T, username string) (answers []int, locked httpserver.ErrorDetail) {
		t.Helper()
		for i := range 6 {
			a := p.signIn(t, "/portal/sign-in", username, fmt.Sprintf("wrong password %d", i), "")
			answers = append(answers, a.code)
		}
		a := p.signIn(t, "/portal/sign-in", username, password, "")
		answers = append(answers, a.code)
		if a.code == http.StatusTooManyRequests {
			locked = throttled(t, a)
		}
		return answers, locked
	}
	want := []int{401, 401, 401, 401, 401, 401, 429}
	known := p.mustUser(t, bank, identity.RoleStaff)
	gotKnown, lockedKnown := guess(t, known)
	gotUnknown, lockedUnknown := guess(t, "nobody"+uuid.NewString()[:8])
	t.Run("ErrAccountLocked", func(t *testing.T) {
		if fmt.Sprint(gotKnown) != fmt.Sprint(want) {
			t.Errorf("known user: got %v, want %v", gotKnown, want)
		}
	})
	t.Run("OK_NoEnumeration", func(t *testing.T) {
		if fmt.Sprint(gotUnknown) != fmt.Sprint(gotKnown) || fmt.Sprint(lockedUnknown) != fmt.Sprint(lockedKnown) {
			t.Errorf("unknown user: got %v %+v, want what the known user got: %v %+v", gotUnknown, lockedUnknown, gotKnown, lockedKnown)
		}
	})
	t.Run("ErrBackoffDoubles", func(t *testing.T) {
		p.unlock(t)
		// The lock is over: the next failure locks for 2 s, the one after
		// for 4 s.
		for _, wantWait := range []string{"2", "4"} {
			if a := p.signIn(t, "/portal/sign-in", known, "wrong again", ""); a.code != http.StatusUnauthorized {
				t.Fatalf("after the lockout: got %d, want 401", a.code)
			}
			a := p.signIn(t, "/portal/sign-in", known, password, "")
			throttled(t, a)
			if got := a.header.Get("Retry-After"); got != wantWait {
				t.Errorf("Retry-After %s, want %s", got, wantWait)
			}
			p.unlock(t)
		}
	})
	t.Run("OK_SuccessClears", func(t *testing.T) {
		p.unlock(t)
		p.mustSignIn(t, known)
		for i := range 5 {
			if a := p.signIn(t, "/portal/sign-in", known, "wrong", ""); a.code != http.StatusUnauthorized {
				t.Fatalf("failure %d after a success: got %d, want 401 (the count was cleared)", i+1, a.code)
			}
		}
		p.unlock(t)
		p.mustSignIn(t, known)
	})
	t.Run("ErrFormLocked", func(t *testing.T) {
		user := p.mustUser(t, bank, identity.RoleStaff)
		for range 6 {
			p.signIn(t, "/portal/sign-in", user, "wrong", "")
		}
		page := p.do(t, call{method: "GET", path: "/portal/sign-in"})
		token := regexpToken.FindStringSubmatch(string(page.body))
		if len(token) != 2 {
			t.Fatalf("no CSRF token in the sign-in page")
		}
		a := p.do(t, call{method: "POST", path: "/portal/sign-in", form: url.Values{"username": {user}, "password": {password}, "csrf_token": {token[1]}},
			cookies: page.cookies})
		if a.code != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" || a.cookie(identity.SessionCookie) != nil {
			t.Errorf("form sign-in of a locked account: got %d Retry-After %q, want 429 with Retry-After and no session", a.code, a.header.Get("Retry-After"))
		}
	})
	t.Run("ErrOperatorLocked", func(t *testing.T) {
		op := p.mustUser(t, p.mustOrg(t, identity.Operator), identity.RoleOperator)
		// Signing in at the portal with the right password is a failure
		// too (operators sign in at /admin/v1/auth/login): the count does
		// not reset, so the lockout does not tell the password was right.
		for range 3 {
			p.signIn(t, "/admin/v1/auth/login", op, "wrong", "")
		}
		for range 3 {
			if a := p.signIn(t, "/portal/sign-in", op, password, ""); a.code != http.StatusUnauthorized {
				t.Fatalf("operator at the portal: got %d, want 401", a.code)
			}
		}
		throttled(t, p.signIn(t, "/admin/v1/auth/login", op, password, ""))
	})
	t.Run("OK_HeldAcrossProcessesAndConcurrentGuesses", func(t *testing.T) {
		other := mustPortalOn(t, p.pool, cfg)
		user := p.mustUser(t, bank, identity.RoleStaff)
		codes := make(chan int, 40)
		var wg sync.WaitGroup
		for i := range 40 {
			srv := p
			if i%2 == 1 {
				srv = other
			}
			wg.Go(func() { codes <- srv.signIn(t, "/portal/sign-in", user, "wrong", "").code })
		}
		wg.Wait()
		close(codes)
		n := map[int]int{}
		for c := range codes {
			n[c]++
		}
		// Each attempt counts before its password is checked: only the
		// five free ones and the sixth (which locks) reach the password.
		if n[http.StatusUnauthorized] != 6 || n[http.StatusTooManyRequests] != 34 {
			t.Errorf("40 concurrent guesses through two processes: %v, want 6 × 401 and 34 × 429", n)
		}
	})
}

// TestSignInThrottle_PerAddress: one client guessing many accounts is
// locked by its address; X-Forwarded-For moves it only when it comes from
// a proxy the operator trusts.
func TestSignInThrottle_PerAddress(t *testing.T) {
	// A lockout far longer than the test, however slow the machine.
	cfg := identity.Config{SignIn: identity.Throttle{AccountFree: 100, AddressFree: 3, Base: time.Hour, Max: time.Hour}}
	t.Run("ErrSprayLocked_HeaderIgnored", func(t *testing.T) {
		p := mustPortalOn(t, mustDB(t), cfg)
		for i := range 4 {
			// A fresh username and a forged X-Forwarded-For each time.
			if a := p.signIn(t, "/portal/sign-in", "spray"+strconv.Itoa(i), "wrong", fmt.Sprintf("198.51.100.%d", i)); a.code != http.StatusUnauthorized {
				t.Fatalf("guess %d: got %d, want 401", i+1, a.code)
			}
		}
		throttled(t, p.signIn(t, "/portal/sign-in", "spray-next", "wrong", "203.0.113.9"))
	})
	t.Run("OK_TrustedProxyNamesTheClient", func(t *testing.T) {
		cfg := cfg
		cfg.TrustedProxies = "127.0.0.0/8, ::1/128"
		p := mustPortalOn(t, mustDB(t), cfg)
		for i := range 4 {
			p.signIn(t, "/portal/sign-in", "spray"+strconv.Itoa(i), "wrong", "198.51.100.7")
		}
		throttled(t, p.signIn(t, "/portal/sign-in", "spray-next", "wrong", "198.51.100.7"))
		if a := p.signIn(t, "/portal/sign-in", "spray-next", "wrong", "198.51.100.8"); a.code != http.StatusUnauthorized {
			t.Errorf("another client behind the proxy: got %d, want 401", a.code)
		}
	})
}
