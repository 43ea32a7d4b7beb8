package throttle

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/apperr"
)

// Policy says how failures are allowed: per account (the name as typed)
// and per client address, each gets its free failed attempts, then every
// further failure locks it for Base·2^(n-1) (n = failures past the
// allowance), at most Max. A key forgets its failures Forget after the
// last one.
type Policy struct {
	AccountFree int
	AddressFree int
	Base        time.Duration
	Max         time.Duration
	Forget      time.Duration
}

// OrDefaults fills p's zero fields with def's.
func (p Policy) OrDefaults(def Policy) Policy {
	if p.AccountFree == 0 {
		p.AccountFree = def.AccountFree
	}
	if p.AddressFree == 0 {
		p.AddressFree = def.AddressFree
	}
	if p.Base == 0 {
		p.Base = def.Base
	}
	if p.Max == 0 {
		p.Max = def.Max
	}
	if p.Forget == 0 {
		p.Forget = def.Forget
	}
	return p
}

// Validate refuses a policy that would not throttle or never forget.
func (p Policy) Validate() error {
	if p.AccountFree < 1 || p.AddressFree < 1 || p.Base <= 0 || p.Max < p.Base || p.Forget < p.Max {
		return errors.New("the allowances must be at least 1, the lockout positive, the maximum lockout at least the lockout and the forget period at least the maximum lockout")
	}
	return nil
}

// lockFor is how long the n-th failure locks a key that is allowed free.
func (p Policy) lockFor(n, free int) time.Duration {
	k := n - free
	if k <= 0 {
		return 0
	}
	d := p.Base
	for i := 1; i < k && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// Guard counts failed attempts in one table. The table has the shape of
// identity.sign_in_failures (key bytea primary key of 32 bytes, scope
// 'account' or 'address', failures, last_failure_at, locked_until); its
// owner declares it in its migrations.
type Guard struct {
	pool   *pgxpool.Pool
	table  string // quoted identifier
	policy Policy
}

// New returns a guard over table ("schema.name") with a validated policy.
func New(pool *pgxpool.Pool, table string, p Policy) (*Guard, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Guard{pool: pool, table: pgx.Identifier(strings.Split(table, ".")).Sanitize(), policy: p}, nil
}

// Policy is the guard's policy.
func (g *Guard) Policy() Policy { return g.policy }

type key struct {
	scope string // account or address
	hash  []byte
	free  int
}

// Attempt is one counted attempt, to be taken back by Succeeded.
type Attempt struct{ keys []key }

func (g *Guard) keys(account, address string) []key {
	h := func(scope, v string) []byte {
		sum := sha256.Sum256([]byte(scope + "\x00" + v))
		return sum[:]
	}
	keys := []key{{scope: "account", hash: h("account", strings.ToLower(strings.TrimSpace(account))), free: g.policy.AccountFree}}
	if address != "" {
		keys = append(keys, key{scope: "address", hash: h("address", address), free: g.policy.AddressFree})
	}
	return keys
}

// ErrThrottled is the answer while an account or address is locked. It
// is the same for every name, registered or not.
func ErrThrottled(wait time.Duration) error {
	return apperr.Throttled(wait, "too many failed sign-ins: try again in %s", wait.Round(time.Second).String())
}

// Begin counts an attempt on account from address ("" counts the account
// only) as a failure before its password is checked, in one transaction
// over its keys (locked in one order, so concurrent guesses, from any
// process, cannot slip past the count), or refuses it (ErrThrottled)
// while any key is locked.
func (g *Guard) Begin(ctx context.Context, account, address string) (Attempt, error) {
	keys := g.keys(account, address)
	hashes := make([][]byte, len(keys))
	scopes := make([]string, len(keys))
	for i, k := range keys {
		hashes[i], scopes[i] = k.hash, k.scope
	}
	err := pgx.BeginFunc(ctx, g.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO `+g.table+` (key, scope) SELECT * FROM unnest($1::bytea[], $2::text[])
			ON CONFLICT (key) DO NOTHING`, hashes, scopes); err != nil {
			return fmt.Errorf("count sign-in attempt: %w", err)
		}
		rows, err := tx.Query(ctx, `
			SELECT key, failures, last_failure_at, locked_until, now() FROM `+g.table+`
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
			var k []byte
			var s state
			if err := rows.Scan(&k, &s.failures, &s.last, &s.locked, &now); err != nil {
				rows.Close()
				return fmt.Errorf("count sign-in attempt: %w", err)
			}
			got[string(k)] = s
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("count sign-in attempt: %w", err)
		}
		var wait time.Duration
		for _, s := range got {
			if s.locked != nil && s.locked.After(now) && (s.last == nil || now.Sub(*s.last) < g.policy.Forget) {
				wait = max(wait, s.locked.Sub(now))
			}
		}
		if wait > 0 {
			return ErrThrottled(wait)
		}
		for _, k := range keys {
			s := got[string(k.hash)]
			if s.last != nil && now.Sub(*s.last) >= g.policy.Forget {
				s.failures = 0
			}
			n := s.failures + 1
			var locked *time.Time
			if lock := g.policy.lockFor(n, k.free); lock > 0 {
				until := now.Add(lock)
				locked = &until
			}
			if _, err := tx.Exec(ctx, `UPDATE `+g.table+` SET failures = $2, last_failure_at = $3, locked_until = $4 WHERE key = $1`,
				k.hash, n, now, locked); err != nil {
				return fmt.Errorf("count sign-in attempt: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Attempt{}, err
	}
	return Attempt{keys: keys}, nil
}

// Succeeded takes back the failure Begin counted: the account's failures
// are cleared; the address's count goes down by this attempt only (a
// guesser must not clear its address by signing in to an account of its
// own between guesses).
func (g *Guard) Succeeded(ctx context.Context, a Attempt) error {
	for _, k := range a.keys {
		var err error
		if k.scope == "account" {
			_, err = g.pool.Exec(ctx, `DELETE FROM `+g.table+` WHERE key = $1`, k.hash)
		} else {
			_, err = g.pool.Exec(ctx, `
				UPDATE `+g.table+` SET failures = greatest(failures - 1, 0),
				    locked_until = CASE WHEN failures - 1 > $2 THEN locked_until END
				WHERE key = $1`, k.hash, k.free)
		}
		if err != nil {
			return fmt.Errorf("clear sign-in failures: %w", err)
		}
	}
	return nil
}

// Forget deletes the keys that have had no failure for the forget period
// (they would count from zero anyway); owners call it periodically.
func (g *Guard) Forget(ctx context.Context) error {
	if _, err := g.pool.Exec(ctx, `DELETE FROM `+g.table+` WHERE last_failure_at IS NULL OR last_failure_at < now() - $1::interval`,
		g.policy.Forget); err != nil {
		return fmt.Errorf("forget old sign-in failures: %w", err)
	}
	return nil
}
