package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/record"
)

// ConsentData is the data of the consent.* events: ids and terms, never
// anything about the farmer beyond the id.
type ConsentData struct {
	ConsentID       string     `json:"consent_id"`
	FarmerID        string     `json:"farmer_id"`
	Scopes          []string   `json:"scopes"`
	ExpiresAt       time.Time  `json:"expires_at"`
	GrantedRecordID string     `json:"granted_record_id"`
	RevokedAt       *time.Time `json:"revoked_at,omitempty"`
	RevokedRecordID string     `json:"revoked_record_id,omitempty"`
}

// consentEvents records, in tx, the consent.authorised and consent.revoked
// events of the consent records among fresh, once their rows are written.
// Ids derive from the consent, so each consent is authorised once and
// revoked once whatever order its records arrive in: a revocation synced
// before its grant is told when the grant arrives (the grant starts out
// revoked), and a second revocation of the same consent changes nothing.
func consentEvents(ctx context.Context, tx pgx.Tx, fresh []*item) error {
	granted := map[string]bool{}
	var ids []string
	for _, it := range fresh {
		switch p := it.payload.(type) {
		case *record.ConsentGranted:
			granted[p.ConsentID] = true
			ids = append(ids, p.ConsentID)
		case *record.ConsentRevoked:
			ids = append(ids, p.ConsentID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `
		SELECT consent_id::text, farmer_id::text, grantee_org_id::text, scopes, expires_at, granted_record_id::text, granted_at,
		       revoked_at, coalesce(revoked_record_id::text, '')
		FROM ingest.consents WHERE consent_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return fmt.Errorf("load consents for events: %w", err)
	}
	var evs []events.Event
	err = forEachRow(rows, func(r pgx.Rows) error {
		var d ConsentData
		var org string
		var grantedAt time.Time
		if err := r.Scan(&d.ConsentID, &d.FarmerID, &org, &d.Scopes, &d.ExpiresAt, &d.GrantedRecordID, &grantedAt, &d.RevokedAt, &d.RevokedRecordID); err != nil {
			return err
		}
		if granted[d.ConsentID] {
			authorised := d
			authorised.RevokedAt, authorised.RevokedRecordID = nil, ""
			evs = append(evs, events.Event{ID: events.DeriveID(events.ConsentAuthorised, d.ConsentID), Type: events.ConsentAuthorised,
				OrganizationID: org, FarmerID: d.FarmerID, OccurredAt: grantedAt, Data: authorised})
		}
		if d.RevokedAt != nil {
			evs = append(evs, events.Event{ID: events.DeriveID(events.ConsentRevoked, d.ConsentID), Type: events.ConsentRevoked,
				OrganizationID: org, FarmerID: d.FarmerID, OccurredAt: *d.RevokedAt, Data: d})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load consents for events: %w", err)
	}
	return events.RecordAll(ctx, tx, evs)
}

func forEachRow(rows pgx.Rows, fn func(pgx.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ExpiringConsents records a consent.expiring event for every live consent
// that expires within events.ConsentExpiringAhead of now and was not told
// yet, marking it told in the same transaction (a consent's expiry never
// changes: a new term is a new consent). Every ingest process may scan:
// SKIP LOCKED splits the work and the derived id makes a repeat a no-op.
// It returns how many events it recorded (at most 5000 per call).
func ExpiringConsents(ctx context.Context, pool *pgxpool.Pool, now time.Time) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			UPDATE ingest.consents c SET expiring_told_at = $1
			WHERE c.consent_id IN (
			    SELECT consent_id FROM ingest.consents
			    WHERE expiring_told_at IS NULL AND revoked_at IS NULL AND expires_at > $1 AND expires_at <= $2
			    ORDER BY expires_at LIMIT 5000 FOR UPDATE SKIP LOCKED)
			RETURNING c.consent_id::text, c.farmer_id::text, c.grantee_org_id::text, c.scopes, c.expires_at, c.granted_record_id::text`,
			now, now.Add(events.ConsentExpiringAhead))
		if err != nil {
			return fmt.Errorf("find expiring consents: %w", err)
		}
		var evs []events.Event
		err = forEachRow(rows, func(r pgx.Rows) error {
			var d ConsentData
			var org string
			if err := r.Scan(&d.ConsentID, &d.FarmerID, &org, &d.Scopes, &d.ExpiresAt, &d.GrantedRecordID); err != nil {
				return err
			}
			evs = append(evs, events.Event{
				ID:   events.DeriveID(events.ConsentExpiring, d.ConsentID+"@"+d.ExpiresAt.UTC().Format(time.RFC3339Nano)),
				Type: events.ConsentExpiring, OrganizationID: org, FarmerID: d.FarmerID,
				OccurredAt: now, Data: d,
			})
			return nil
		})
		if err != nil {
			return fmt.Errorf("find expiring consents: %w", err)
		}
		n = len(evs)
		return events.RecordAll(ctx, tx, evs)
	})
	return n, err
}

// expiringLoop runs ExpiringConsents every interval until ctx is done.
func expiringLoop(ctx context.Context, pool *pgxpool.Pool, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := ExpiringConsents(ctx, pool, time.Now()); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			logger.ErrorContext(ctx, "scan expiring consents", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
