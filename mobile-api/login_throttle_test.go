package mobileapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// loginAnswer is a login's status, Retry-After and error body.
type loginAnswer struct {
	code       int
	retryAfter string
	body       string
}

// login posts a login from the client named by xff (sent as
// X-Forwarded-For when not empty).
func login(t *testing.T, base, username, password, xff string) loginAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/mobile/v1/auth/login", jsonBody(map[string]string{"username": username, "password": password}))
	req.Header.Set("Content-Type", "application/json")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return loginAnswer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(body)}
}

// throttledLogin checks a 429 in the common error shape (code too_many)
// with a positive whole-second Retry-After.
func throttledLogin(t *testing.T, a loginAnswer) {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if a.code != http.StatusTooManyRequests || json.Unmarshal([]byte(a.body), &e) != nil || e.Error.Code != "too_many" {
		t.Fatalf("got %d %s, want 429 too_many", a.code, a.body)
	}
	if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds > 0", a.retryAfter)
	}
}

var seconds = regexp.MustCompile(`[0-9]+(\.[0-9]+)?(h|m|s)`)

// TestLoginThrottle: failed agent logins lock the login name, whoever it
// belongs to (the answers for an unknown name are the same), across every
// mobile-api process of the deployment; a login that succeeds clears the
// name's count; the phone client surfaces the lock as a typed error.
func TestLoginThrottle(t *testing.T) {
	// Lockouts far longer than the test, however slow the machine; the
	// address allowance out of the way (TestLoginThrottle_PerAddress).
	flags := []string{"-target=mobile-api", "-mobile.login-account-failures=3", "-mobile.login-address-failures=1000",
		"-mobile.login-lockout=1h", "-mobile.login-max-lockout=1h"}
	tani := apptest.MustStart(t, flags...)
	peer := apptest.MustStart(t, append(flags, "-database.url="+tani.DatabaseURL)...)

	t.Run("ErrLocked_SameForUnknownAgent", func(t *testing.T) {
		agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
		var answers [2][]loginAnswer
		for i, name := range []string{agent.Username, "nobody" + agent.Username[5:]} {
			for range 5 {
				a := login(t, tani.URL, name, "wrong password!", "")
				a.body = seconds.ReplaceAllString(a.body, "N")
				a.retryAfter = strconv.FormatBool(a.retryAfter != "")
				answers[i] = append(answers[i], a)
			}
		}
		for i, a := range answers[0] {
			want := http.StatusUnauthorized
			if i == 4 { // three free failures; the fourth locks
				want = http.StatusTooManyRequests
			}
			if a.code != want {
				t.Errorf("known agent, failure %d: got %d %s, want %d", i+1, a.code, a.body, want)
			}
			if a != answers[1][i] {
				t.Errorf("attempt %d: known agent %+v, unknown %+v: want the same answer", i+1, a, answers[1][i])
			}
		}
		// Locked, the right password is refused too — on any process.
		throttledLogin(t, login(t, peer.URL, agent.Username, agent.Password, ""))
		c := client.New(tani.URL, nil)
		err := c.Login(context.Background(), agent.Username, agent.Password)
		var throttled *client.ThrottledError
		if !errors.As(err, &throttled) || throttled.RetryAfter < 59*time.Minute || throttled.API.Code != "too_many" {
			t.Fatalf("client login: got %v, want a ThrottledError with about an hour to wait", err)
		}
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusTooManyRequests {
			t.Errorf("client login: errors.As *Error = %v, want the 429 too", apiErr)
		}
	})

	t.Run("OK_SuccessClearsTheNamesCount", func(t *testing.T) {
		agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
		for round := range 3 {
			for i := range 3 { // the allowance, on either process
				base := []string{tani.URL, peer.URL}[i%2]
				if a := login(t, base, agent.Username, "wrong password!", ""); a.code != http.StatusUnauthorized {
					t.Fatalf("round %d failure %d: got %d %s, want 401", round, i+1, a.code, a.body)
				}
			}
			if a := login(t, peer.URL, agent.Username, agent.Password, ""); a.code != http.StatusOK {
				t.Fatalf("round %d: right password got %d %s, want 200", round, a.code, a.body)
			}
		}
		// Nine failures in all, three times the allowance: without the
		// clearing, the second round would lock the name.
	})

	t.Run("ErrConcurrentGuessesAcrossProcesses", func(t *testing.T) {
		agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
		const guesses = 12
		codes := make(chan int, guesses)
		var wg sync.WaitGroup
		for i := range guesses {
			base := []string{tani.URL, peer.URL}[i%2]
			wg.Go(func() { codes <- login(t, base, agent.Username, fmt.Sprintf("guess %d", i), "").code })
		}
		wg.Wait()
		close(codes)
		count := map[int]int{}
		for c := range codes {
			count[c]++
		}
		if count[http.StatusUnauthorized] != 4 || count[http.StatusTooManyRequests] != guesses-4 {
			t.Errorf("%d concurrent guesses on two processes: got %v, want exactly 4 checked (401: three free, the fourth locks) and the rest refused (429)", guesses, count)
		}
	})
}

// TestLoginThrottle_PerAddress: one address guessing many names is
// locked; X-Forwarded-For names the client only from a proxy trusted by
// -identity.trusted-proxies; and the mobile default lets a carrier NAT
// full of agents mistype far more than the portal's allowance.
func TestLoginThrottle_PerAddress(t *testing.T) {
	t.Run("ErrSprayLocked_HeaderIgnored", func(t *testing.T) {
		tani := apptest.MustStart(t, "-target=mobile-api", "-mobile.login-address-failures=3", "-mobile.login-lockout=1h", "-mobile.login-max-lockout=1h")
		for i := range 4 {
			if a := login(t, tani.URL, "spray"+strconv.Itoa(i), "wrong password!", fmt.Sprintf("198.51.100.%d", i)); a.code != http.StatusUnauthorized {
				t.Fatalf("guess %d: got %d, want 401", i+1, a.code)
			}
		}
		throttledLogin(t, login(t, tani.URL, "spray-next", "wrong password!", "203.0.113.9"))
	})
	t.Run("OK_TrustedProxyNamesTheClient", func(t *testing.T) {
		tani := apptest.MustStart(t, "-target=mobile-api", "-mobile.login-address-failures=3", "-mobile.login-lockout=1h", "-mobile.login-max-lockout=1h",
			"-identity.trusted-proxies=127.0.0.0/8,::1/128")
		for i := range 4 {
			login(t, tani.URL, "spray"+strconv.Itoa(i), "wrong password!", "198.51.100.7")
		}
		throttledLogin(t, login(t, tani.URL, "spray-next", "wrong password!", "198.51.100.7"))
		agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
		if a := login(t, tani.URL, agent.Username, agent.Password, "198.51.100.8"); a.code != http.StatusOK {
			t.Errorf("another client behind the proxy: got %d %s, want 200", a.code, a.body)
		}
	})
	t.Run("OK_SharedAddressDefaults", func(t *testing.T) {
		// Six agents behind one carrier NAT each mistype four times (24
		// failures from one address: more than the portal allows one
		// address), then all of them log in.
		tani := apptest.MustStart(t, "-target=mobile-api", "-mobile.login-lockout=1h", "-mobile.login-max-lockout=1h")
		var agents []*clienttest.Agent
		for range 6 {
			agents = append(agents, clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java"))
		}
		for _, a := range agents {
			for range 4 {
				if got := login(t, tani.URL, a.Username, "wrong password!", ""); got.code != http.StatusUnauthorized {
					t.Fatalf("agent %s mistyping: got %d %s, want 401", a.Username, got.code, got.body)
				}
			}
		}
		for _, a := range agents {
			if got := login(t, tani.URL, a.Username, a.Password, ""); got.code != http.StatusOK {
				t.Errorf("agent %s: got %d %s, want 200", a.Username, got.code, got.body)
			}
		}
	})
}
