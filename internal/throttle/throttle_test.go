package throttle

import (
	"net/http/httptest"
	"testing"
	"time"
)

// The HTTP behaviour (counting, locking, clearing, concurrency across
// processes) is tested through its users: internal/identity's
// TestSignInThrottle* and mobile-api's TestLoginThrottle*.

func TestLockFor(t *testing.T) {
	p := Policy{AccountFree: 2, AddressFree: 2, Base: time.Second, Max: 10 * time.Second, Forget: time.Hour}
	want := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := p.lockFor(i+1, 2); got != w {
			t.Errorf("failure %d: got %s, want %s", i+1, got, w)
		}
	}
}

func TestPolicy(t *testing.T) {
	def := Policy{AccountFree: 5, AddressFree: 20, Base: time.Second, Max: time.Minute, Forget: time.Hour}
	if got := (Policy{AddressFree: 100}).OrDefaults(def); got != (Policy{AccountFree: 5, AddressFree: 100, Base: time.Second, Max: time.Minute, Forget: time.Hour}) {
		t.Errorf("OrDefaults: got %+v", got)
	}
	for name, p := range map[string]Policy{
		"ErrNoAllowance":    {AccountFree: 0, AddressFree: 1, Base: time.Second, Max: time.Second, Forget: time.Second},
		"ErrMaxBelowBase":   {AccountFree: 1, AddressFree: 1, Base: time.Minute, Max: time.Second, Forget: time.Hour},
		"ErrForgetTooShort": {AccountFree: 1, AddressFree: 1, Base: time.Second, Max: time.Minute, Forget: time.Second},
	} {
		if p.Validate() == nil {
			t.Errorf("%s: %+v validated", name, p)
		}
	}
	if err := def.Validate(); err != nil {
		t.Errorf("OK: %v", err)
	}
}

func TestAddresses(t *testing.T) {
	direct, err := NewAddresses("")
	if err != nil {
		t.Fatal(err)
	}
	proxied, err := NewAddresses(" 10.0.0.0/8 ,")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAddresses("10.0.0.0/33"); err == nil {
		t.Error("a bad CIDR was accepted")
	}
	for _, c := range []struct {
		name      string
		a         *Addresses
		peer, xff string
		want      string
	}{
		{"OK_Peer", direct, "198.51.100.7:4000", "", "198.51.100.7"},
		{"OK_HeaderIgnoredWithoutProxies", direct, "198.51.100.7:4000", "203.0.113.9", "198.51.100.7"},
		{"OK_IPv6By64", direct, "[2001:db8:1:2:3:4:5:6]:4000", "", "2001:db8:1:2::/64"},
		{"OK_IPv4MappedUnmapped", direct, "[::ffff:198.51.100.7]:4000", "", "198.51.100.7"},
		{"OK_TrustedProxyNamesClient", proxied, "10.1.2.3:4000", "203.0.113.9", "203.0.113.9"},
		{"OK_UntrustedPeerHeaderIgnored", proxied, "198.51.100.7:4000", "203.0.113.9", "198.51.100.7"},
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := c.a.Of(r); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
