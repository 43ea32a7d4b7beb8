package webhooks

import (
	"net/netip"
	"testing"
	"time"
)

func TestAllowedIP(t *testing.T) {
	for ip, want := range map[string]bool{
		"93.184.216.34": true, "8.8.8.8": true, "2606:4700::1111": true, "::ffff:8.8.8.8": true, "64:ff9b::808:808": true,
		"127.0.0.1": false, "127.255.0.1": false, "10.1.1.1": false, "172.16.0.1": false, "172.31.255.255": false, "192.168.0.1": false,
		"100.64.0.1": false, "169.254.169.254": false, "0.0.0.0": false, "0.1.2.3": false, "224.0.0.1": false, "239.1.1.1": false,
		"255.255.255.255": false, "240.0.0.1": false, "198.18.0.1": false, "192.0.0.8": false, "192.0.2.1": false,
		"::1": false, "::": false, "fe80::1": false, "fd12::1": false, "fc00::1": false, "ff02::1": false, "::ffff:127.0.0.1": false,
		"::ffff:10.0.0.1": false, "64:ff9b::7f00:1": false, "64:ff9b::a9fe:a9fe": false, "2002:7f00:1::1": false, "2001:0:4136::1": false,
		"2001:db8::1": false, "fec0::1": false,
	} {
		if got := allowedIP(netip.MustParseAddr(ip)); got != want {
			t.Errorf("allowedIP(%s) = %v, want %v", ip, got, want)
		}
	}
}

func TestSchedule(t *testing.T) {
	s := &Service{cfg: Config{RetryBase: 5 * time.Second, RetryMax: 6 * time.Hour, RetryWindow: 72 * time.Hour}}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	j := &job{windowStart: start}
	at := start
	var waits []time.Duration
	for {
		outcome, next := s.schedule(j, at)
		if outcome == outcomeGaveUp {
			break
		}
		if outcome != outcomeFailed || !next.After(at) {
			t.Fatalf("attempt %d at %s: %s, next %s", j.attempts+1, at, outcome, next)
		}
		waits = append(waits, next.Sub(at))
		j.attempts++
		at = next
		if j.attempts > 100 {
			t.Fatal("never gives up")
		}
	}
	if got := at.Sub(start); got < 72*time.Hour {
		t.Errorf("gave up after %s, want at least 72h of retries", got)
	}
	// Exponential with ±25 % jitter, capped.
	for i, w := range waits[:10] {
		base := 5 * time.Second << i
		if w < base*3/4 || w > base*5/4 {
			t.Errorf("wait %d: %s, want %s ± 25%%", i+1, w, base)
		}
	}
	for _, w := range waits {
		if w > 6*time.Hour*5/4 {
			t.Errorf("wait %s beyond the cap", w)
		}
	}
	t.Logf("%d attempts over %s", len(waits)+1, at.Sub(start))
}
