package mobileapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// digestBatch is how many access-log entries one pass of the digest reads.
const digestBatch = 5000

// access is an allowed read, as the digest counts it.
type access struct {
	id     int64
	org    string
	scopes []string
	at     time.Time
}

// runAccessDigests sends the digest every interval until ctx is done; a
// failed pass is logged and retried at the next.
func (s *Service) runAccessDigests(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := s.SendAccessDigests(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "access digest failed; retrying at the next interval", "sent", n, "err", err)
		} else if n > 0 {
			s.logger.InfoContext(ctx, "access digests sent", "farmers", n)
		}
	}
}

// SendAccessDigests texts every farmer whose data an organization read
// since their last digest a summary of who looked, and returns how many
// farmers it texted. It is idempotent: each farmer's row in
// mobile.access_digests remembers the last entry they were told about,
// updated in the transaction that sends the text (a send that fails rolls
// it back, and the farmer is told at the next pass), and a farmer being
// texted by another process is skipped (SKIP LOCKED). Only a commit lost
// after the gateway accepted the text can repeat one.
func (s *Service) SendAccessDigests(ctx context.Context) (int, error) {
	sent := 0
	for {
		var cursor int64
		err := s.pool.QueryRow(ctx, `SELECT scanned_id FROM mobile.access_digest_cursor`).Scan(&cursor)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return sent, fmt.Errorf("read digest cursor: %w", err)
		}
		rows, err := s.pool.Query(ctx, `
			SELECT id, farmer_id::text, organization_name, scopes, at FROM consent.access_entries
			WHERE allowed AND id > $1 ORDER BY id LIMIT $2`, cursor, digestBatch)
		if err != nil {
			return sent, fmt.Errorf("read access log: %w", err)
		}
		byFarmer := map[string][]access{}
		var order []string
		var last int64
		for rows.Next() {
			var a access
			var farmer string
			if err := rows.Scan(&a.id, &farmer, &a.org, &a.scopes, &a.at); err != nil {
				rows.Close()
				return sent, fmt.Errorf("read access log: %w", err)
			}
			if _, ok := byFarmer[farmer]; !ok {
				order = append(order, farmer)
			}
			byFarmer[farmer] = append(byFarmer[farmer], a)
			last = a.id
		}
		if err := rows.Err(); err != nil {
			return sent, fmt.Errorf("read access log: %w", err)
		}
		if len(order) == 0 {
			return sent, nil
		}
		// The cursor moves past every farmer handled; a farmer who could
		// not be told holds it before their first entry.
		next := last
		var failed error
		for _, farmer := range order {
			ok, err := s.digestFarmer(ctx, farmer, byFarmer[farmer])
			if err != nil {
				failed = errors.Join(failed, err)
				next = min(next, byFarmer[farmer][0].id-1)
				continue
			}
			if ok {
				sent++
			}
		}
		if _, err := s.pool.Exec(ctx, `
			INSERT INTO mobile.access_digest_cursor (one, scanned_id) VALUES (true, $1)
			ON CONFLICT (one) DO UPDATE SET scanned_id = greatest(mobile.access_digest_cursor.scanned_id, excluded.scanned_id)`, next); err != nil {
			return sent, fmt.Errorf("move digest cursor: %w", err)
		}
		if failed != nil {
			return sent, failed
		}
		read := 0
		for _, f := range order {
			read += len(byFarmer[f])
		}
		if read < digestBatch {
			return sent, nil
		}
	}
}

// errBusy is a farmer another process is texting now.
var errBusy = errors.New("another process is sending this farmer's digest")

// digestFarmer texts one farmer about the entries they were not told
// about yet, reporting whether a text went out.
func (s *Service) digestFarmer(ctx context.Context, farmer string, entries []access) (bool, error) {
	sentText := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO mobile.access_digests (farmer_id, last_access_id) VALUES ($1, 0) ON CONFLICT DO NOTHING`, farmer); err != nil {
			return err
		}
		var told int64
		err := tx.QueryRow(ctx, `SELECT last_access_id FROM mobile.access_digests WHERE farmer_id = $1 FOR UPDATE SKIP LOCKED`, farmer).Scan(&told)
		if errors.Is(err, pgx.ErrNoRows) {
			return errBusy
		}
		if err != nil {
			return err
		}
		fresh := slices.DeleteFunc(slices.Clone(entries), func(a access) bool { return a.id <= told })
		if len(fresh) == 0 {
			return nil
		}
		var sealed []byte
		err = tx.QueryRow(ctx, `SELECT phone_enc FROM ingest.farmer_contacts WHERE farmer_id = $1`, farmer).Scan(&sealed)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Erased, or never registered here: nobody to tell.
		case err != nil:
			return err
		default:
			phone, err := s.pii.Decrypt(sealed)
			if err != nil {
				return fmt.Errorf("phone of farmer %s: %w", farmer, err)
			}
			if err := s.sms.Send(ctx, phone, digestText(fresh)); err != nil {
				return fmt.Errorf("text farmer %s: %w", farmer, err)
			}
			sentText = true
		}
		_, err = tx.Exec(ctx, `
			UPDATE mobile.access_digests SET last_access_id = $2, accesses = accesses + $3, sent_at = CASE WHEN $4 THEN now() ELSE sent_at END
			WHERE farmer_id = $1`, farmer, fresh[len(fresh)-1].id, len(fresh), sentText)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("digest of farmer %s: %w", farmer, err)
	}
	return sentText, nil
}

// digestText summarises accesses for an SMS: who, what, how often, since
// when — a few organizations by name, the rest counted.
func digestText(accesses []access) string {
	type org struct {
		name   string
		n      int
		scopes []string
	}
	var orgs []*org
	byName := map[string]*org{}
	for _, a := range accesses {
		o, ok := byName[a.org]
		if !ok {
			o = &org{name: a.org}
			byName[a.org] = o
			orgs = append(orgs, o)
		}
		o.n++
		for _, sc := range a.scopes {
			if !slices.Contains(o.scopes, sc) {
				o.scopes = append(o.scopes, sc)
			}
		}
	}
	var parts []string
	for i, o := range orgs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("%d other organizations", len(orgs)-3))
			break
		}
		times := "once"
		if o.n > 1 {
			times = fmt.Sprintf("%d times", o.n)
		}
		parts = append(parts, fmt.Sprintf("%s (%s) %s", o.name, strings.Join(o.scopes, ", "), times))
	}
	return fmt.Sprintf("Tani: since %s, %s looked at your farm data with your consent. Ask your agent to see details or to withdraw consent.",
		accesses[0].at.UTC().Format("2 Jan"), strings.Join(parts, "; "))
}
