package identity

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
)

// Throttle bounds password guessing at sign-in: per account (the username
// as typed) and per client address, each gets Free failed attempts, then
// every further failure locks it for Base·2^(n-1) (n = failures past the
// allowance), at most Max. A key forgets its failures Forget after the
// last one. The state is in Postgres: every process counts the same.
type Throttle struct {
	AccountFree int
	AddressFree int
	Base        time.Duration
	Max         time.Duration
	Forget      time.Duration
}

// DefaultThrottle is the throttle when the configuration gives none.
var DefaultThrottle = Throttle{AccountFree: 5, AddressFree: 20, Base: time.Second, Max: 15 * time.Minute, Forget: 24 * time.Hour}

// lockFor is how long the n-th failure locks a key that is allowed free.
func (t Throttle) lockFor(n, free int) time.Duration {
	k := n - free
	if k <= 0 {
		return 0
	}
	d := t.Base
	for i := 1; i < k && d < t.Max; i++ {
		d *= 2
	}
	return min(d, t.Max)
}

// throttleKey is one key of an attempt.
type throttleKey struct {
	scope string // account or address
	hash  []byte
	free  int
}

func (d *Directory) throttleKeys(username, address string) []throttleKey {
	h := func(scope, v string) []byte {
		sum := sha256.Sum256([]byte(scope + "\x00" + v))
		return sum[:]
	}
	keys := []throttleKey{{scope: "account", hash: h("account", strings.ToLower(strings.TrimSpace(username))), free: d.throttle.AccountFree}}
	if address != "" {
		keys = append(keys, throttleKey{scope: "address", hash: h("address", address), free: d.throttle.AddressFree})
	}
	return keys
}

// errThrottled is the answer while an account or address is locked. It
// is the same for every username, registered or not.
func errThrottled(wait time.Duration) error {
	return apperr.Throttled(wait, "too many failed sign-ins: try again in %s", wait.Round(time.Second).String())
}

// beginAttempt counts an attempt as a failure before its password is
// checked, in one transaction over its keys (locked in one order), or
// refuses it while any key is locked.
func (d *Directory) beginAttempt(ctx context.Context, keys []throttleKey) error {
	hashes := make([][]byte, len(keys))
	scopes := make([]string, len(keys))
	for i, k := range keys {
		hashes[i], scopes[i] = k.hash, k.scope
	}
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO identity.sign_in_failures (key, scope) SELECT * FROM unnest($1::bytea[], $2::text[])
			ON CONFLICT (key) DO NOTHING`, hashes, scopes); err != nil {
			return fmt.Errorf("count sign-in attempt: %w", err)
		}
		rows, err := tx.Query(ctx, `
			SELECT key, failures, last_failure_at, locked_until, now() FROM identity.sign_in_failures
			WHERE key = ANY($1::bytea[]) ORDER BY key FOR UPDATE`, hashes)
		if err != nil {
			return fmt.Errorf("count sign-in attempt: %w", err)
		}
		type state struct {
			failures     int
			last, locked *time.Time
		}
		got := map[string]state{}
		var now time.Time
		for rows.Next() {
			var key []byte
			var s state
			if err := rows.Scan(&key, &s.failures, &s.last, &s.locked, &now); err != nil {
				rows.Close()
				return fmt.Errorf("count sign-in attempt: %w", err)
			}
			got[string(key)] = s
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("count sign-in attempt: %w", err)
		}
		var wait time.Duration
		for _, s := range got {
			if s.locked != nil && s.locked.After(now) && (s.last == nil || now.Sub(*s.last) < d.throttle.Forget) {
				wait = max(wait, s.locked.Sub(now))
			}
		}
		if wait > 0 {
			return errThrottled(wait)
		}
		for _, k := range keys {
			s := got[string(k.hash)]
			if s.last != nil && now.Sub(*s.last) >= d.throttle.Forget {
				s.failures = 0
			}
			n := s.failures + 1
			var locked *time.Time
			if lock := d.throttle.lockFor(n, k.free); lock > 0 {
				until := now.Add(lock)
				locked = &until
			}
			if _, err := tx.Exec(ctx, `UPDATE identity.sign_in_failures SET failures = $2, last_failure_at = $3, locked_until = $4 WHERE key = $1`,
				k.hash, n, now, locked); err != nil {
				return fmt.Errorf("count sign-in attempt: %w", err)
			}
		}
		return nil
	})
}

// succeeded takes back the failure beginAttempt counted: the account's
// failures are cleared; the address's count goes down by this attempt
// only (a guesser must not clear its address by signing in to an account
// of its own between guesses).
func (d *Directory) succeeded(ctx context.Context, keys []throttleKey) error {
	for _, k := range keys {
		var err error
		if k.scope == "account" {
			_, err = d.pool.Exec(ctx, `DELETE FROM identity.sign_in_failures WHERE key = $1`, k.hash)
		} else {
			_, err = d.pool.Exec(ctx, `
				UPDATE identity.sign_in_failures SET failures = greatest(failures - 1, 0),
				    locked_until = CASE WHEN failures - 1 > $2 THEN locked_until END
				WHERE key = $1`, k.hash, k.free)
		}
		if err != nil {
			return fmt.Errorf("clear sign-in failures: %w", err)
		}
	}
	return nil
}

// signIn authenticates a user of one of kinds, throttled: a locked
// account or address is refused (TooMany, with when to retry) before its
// password is looked at. A user of another kind of organization is
// refused like a wrong password, and counts as one.
func (d *Directory) signIn(ctx context.Context, username, password, address string, kinds ...Kind) (User, error) {
	keys := d.throttleKeys(username, address)
	if err := d.beginAttempt(ctx, keys); err != nil {
		return User{}, err
	}
	u, err := d.Authenticate(ctx, username, password)
	if err == nil && !containsKind(kinds, u.OrganizationKind) {
		err = apperr.Errorf(apperr.Unauthorized, "wrong username or password")
	}
	if err != nil {
		return User{}, err
	}
	if err := d.succeeded(ctx, keys); err != nil {
		return User{}, err
	}
	return u, nil
}

func containsKind(kinds []Kind, k Kind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// clientAddress is the address sign-in attempts are counted under: the
// peer of the connection, or, behind a proxy the operator trusts
// (-identity.trusted-proxies), the client it names in X-Forwarded-For. An
// IPv6 client counts by its /64 (one host usually holds the whole prefix).
func (d *Directory) clientAddress(c echo.Context) string {
	ip := d.extractIP(c.Request())
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// ipExtractor returns how the client's address is found: the connection's
// peer unless proxies are trusted.
func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// parseProxies reads -identity.trusted-proxies: comma-separated CIDRs.
func parseProxies(s string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("identity: -identity.trusted-proxies: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}
