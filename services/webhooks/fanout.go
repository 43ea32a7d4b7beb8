package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
)

// Payload is the body of every delivery, as Standard Webhooks define it.
type Payload struct {
	Type      events.Type     `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// body is the exact bytes sent for an event, built once at fan-out and
// stored with the delivery, so every attempt and every replay sends (and
// signs) the same bytes.
func body(m events.Message) ([]byte, error) {
	return json.Marshal(Payload{Type: m.Type, Timestamp: m.OccurredAt.UTC(), Data: m.Data})
}

// HandleBatch fans a batch of EVENTS messages out to the endpoints that
// subscribed to their types and may receive them — the recipient
// organization's, or, for an event without one, those of every
// organization holding a live consent of the farmer covering the event's
// scope — as one delivery row per event and endpoint, in one statement
// (idempotent on the pair, so a redelivered message creates nothing).
// Once committed, the new deliveries go straight to this process's
// dispatcher. An undecodable message is Invalid (dead-lettered); anything
// else is retried.
func (s *Service) HandleBatch(ctx context.Context, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	type fan struct {
		at        int
		m         events.Message
		body      []byte
		published time.Time
	}
	var fans []fan
	for i, msg := range msgs {
		m, err := events.Decode(msg.Data())
		if err == nil {
			if _, ok := events.Lookup(m.Type); !ok {
				err = fmt.Errorf("event %s: type %q is not in the catalogue", m.ID, m.Type)
			}
		}
		var b []byte
		if err == nil {
			b, err = body(m)
		}
		if err != nil {
			errs[i] = apperr.Wrap(apperr.Invalid, err, "undeliverable event")
			continue
		}
		md, err := msg.Metadata()
		if err != nil {
			errs[i] = fmt.Errorf("message metadata: %w", err)
			continue
		}
		fans = append(fans, fan{at: i, m: m, body: b, published: md.Timestamp})
	}
	if len(fans) == 0 {
		return errs
	}
	var jobs []*job
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := noJIT(ctx, tx); err != nil {
			return err
		}
		// Events about a farmer this module erased are acknowledged and
		// told to no one (a producer may have recorded one as the erasure
		// ran); the fence waits for an erasure in progress.
		var farmers []string
		for _, f := range fans {
			if f.m.FarmerID != "" {
				farmers = append(farmers, f.m.FarmerID)
			}
		}
		erased, err := eraser.Fence(ctx, tx, farmers)
		if err != nil {
			return err
		}
		n := len(fans)
		ids, types, orgs, farmerIDs, scopes, bodies := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		published := make([]time.Time, 0, n)
		for _, f := range fans {
			if f.m.FarmerID != "" && erased.Has(f.m.FarmerID) {
				continue
			}
			ids, types, orgs, farmerIDs, scopes = append(ids, f.m.ID), append(types, string(f.m.Type)), append(orgs, f.m.OrganizationID), append(farmerIDs, f.m.FarmerID), append(scopes, string(f.m.Scope))
			bodies, published = append(bodies, string(f.body)), append(published, f.published)
		}
		if len(ids) == 0 {
			return nil
		}
		rows, err := tx.Query(ctx, `
			WITH ins AS (
			    INSERT INTO webhooks.deliveries (endpoint_id, event_id, event_type, organization_id, farmer_id, scope, body, event_published_at, lease_until)
			    SELECT e.id, m.id, m.type, e.organization_id, nullif(m.farmer, '')::uuid, nullif(m.scope, ''), m.body, m.published,
			           now() + make_interval(secs => $8)
			    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
			         AS m(id, type, org, farmer, scope, body, published)
			    JOIN webhooks.endpoints e ON e.enabled AND m.type = ANY(e.event_types)
			     AND (m.org = '' OR e.organization_id = nullif(m.org, '')::uuid)
			    WHERE m.scope = '' OR EXISTS (
			        SELECT 1 FROM ingest.consent_grants c
			        WHERE c.farmer_id = nullif(m.farmer, '')::uuid AND c.grantee_org_id = e.organization_id AND `+consent.LiveSQL("c", "now()")+`
			          AND c.scopes @> ARRAY[m.scope])
			    ON CONFLICT (endpoint_id, event_id) DO NOTHING
			    RETURNING *)
			SELECT `+jobColumns+` FROM ins d JOIN webhooks.endpoints e ON e.id = d.endpoint_id`,
			ids, types, orgs, farmerIDs, scopes, bodies, published, s.cfg.Lease.Seconds())
		if err != nil {
			return fmt.Errorf("fan out %d events: %w", len(ids), err)
		}
		jobs, err = s.scanJobs(rows)
		return err
	})
	if err != nil {
		for _, f := range fans {
			errs[f.at] = err
		}
		return errs
	}
	s.metrics.created.Add(float64(len(jobs)))
	s.disp.offerOrRelease(ctx, jobs)
	return errs
}

// noJIT turns Postgres's JIT compilation off for the rest of tx. The
// planner cannot estimate a statement over unnest'ed arrays and prices it
// high enough to JIT-compile it, which costs 0.5–3 s per statement on the
// test machine where the statement itself takes milliseconds.
func noJIT(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
		return fmt.Errorf("turn jit off: %w", err)
	}
	return nil
}

// jobColumns are what a dispatcher needs of a delivery (d) and its
// endpoint (e).
// consent_ok is the consent check of a farmer's event, made in the same
// statement that claims it.
var jobColumns = `d.id, d.endpoint_id::text, d.event_id::text, d.event_type, d.organization_id::text, coalesce(d.farmer_id::text, ''),
	coalesce(d.scope, ''), d.body, d.attempts, d.window_start, d.event_published_at, d.lease_until,
	e.url, e.secret_sealed, e.previous_sealed, e.previous_expires_at,
	d.scope IS NULL OR EXISTS (SELECT 1 FROM ingest.consent_grants c WHERE c.farmer_id = d.farmer_id AND c.grantee_org_id = d.organization_id
	                           AND ` + consent.LiveSQL("c", "now()") + ` AND c.scopes @> ARRAY[d.scope]) AS consent_ok`

// scanJobs reads jobColumns rows into jobs, opening the endpoints' secrets.
func (s *Service) scanJobs(rows pgx.Rows) ([]*job, error) {
	defer rows.Close()
	var out []*job
	now := s.now()
	for rows.Next() {
		j := &job{}
		var sealed, prevSealed []byte
		var prevExpires *time.Time
		var body string
		if err := rows.Scan(&j.id, &j.endpointID, &j.eventID, &j.eventType, &j.orgID, &j.farmerID, &j.scope, &body, &j.attempts,
			&j.windowStart, &j.published, &j.leaseUntil, &j.url, &sealed, &prevSealed, &prevExpires, &j.consentOK); err != nil {
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		j.checkedAt = now
		j.body = []byte(body)
		key, err := s.openSecret(sealed)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", j.endpointID, err)
		}
		j.keys = [][]byte{key}
		if prevSealed != nil && prevExpires != nil && prevExpires.After(now) {
			prev, err := s.openSecret(prevSealed)
			if err != nil {
				return nil, fmt.Errorf("endpoint %s: %w", j.endpointID, err)
			}
			j.keys = append(j.keys, prev)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load deliveries: %w", err)
	}
	return out, nil
}

// sealSecret closes a secret for storage; openSecret returns its HMAC key.
func (s *Service) sealSecret(secret string) []byte { return s.pii.Encrypt(secret) }

func (s *Service) openSecret(sealed []byte) ([]byte, error) {
	secret, err := s.pii.Decrypt(sealed)
	if err != nil {
		return nil, fmt.Errorf("open signing secret: %w", err)
	}
	return secretKey(secret)
}
