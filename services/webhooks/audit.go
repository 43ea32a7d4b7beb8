package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres"
)

// Delivery is one event's delivery to one endpoint, for the audit.
type Delivery struct {
	ID int64 `json:"id"`
	// EventID is the webhook-id every attempt carried.
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// State is pending (on its way or waiting for a retry), delivered,
	// failed (given up after the retry window) or withheld (not sent:
	// the farmer's consent it needed is no longer live).
	State          string     `json:"state"`
	Attempts       int        `json:"attempts"`
	ResponseStatus *int       `json:"response_status"`
	LatencyMS      *int       `json:"latency_ms"`
	LastError      *string    `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	FirstAttemptAt *time.Time `json:"first_attempt_at"`
	LastAttemptAt  *time.Time `json:"last_attempt_at"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
	Replays        int        `json:"replays"`
	// AttemptLog is every attempt, oldest first (GET of one delivery).
	AttemptLog []Attempt `json:"attempt_log,omitempty"`
}

// Attempt is one HTTP attempt of a delivery.
type Attempt struct {
	N              int       `json:"n"`
	At             time.Time `json:"at"`
	ResponseStatus *int      `json:"response_status"`
	Error          *string   `json:"error"`
	LatencyMS      int       `json:"latency_ms"`
}

const deliveryColumns = `d.id, d.event_id::text, d.event_type, d.state, d.attempts, d.last_status, d.last_latency_ms, d.last_error, d.created_at,
	d.first_attempt_at, d.last_attempt_at, CASE WHEN d.state = 'pending' THEN d.next_attempt_at END, d.delivered_at, d.replays`

func scanDelivery(r pgx.Row) (Delivery, error) {
	var d Delivery
	err := r.Scan(&d.ID, &d.EventID, &d.EventType, &d.State, &d.Attempts, &d.ResponseStatus, &d.LatencyMS, &d.LastError, &d.CreatedAt,
		&d.FirstAttemptAt, &d.LastAttemptAt, &d.NextAttemptAt, &d.DeliveredAt, &d.Replays)
	return d, err
}

var deliveryStates = []string{"pending", "delivered", "failed", "withheld"}

// listDeliveries: GET /webhooks/{id}/deliveries?state=&event_type=&before=&limit=
// newest first; before (a delivery id) pages back.
func (s *Service) listDeliveries(c echo.Context) error {
	p, err := caller(c, false)
	if err != nil {
		return err
	}
	id, err := endpointID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if _, err := s.load(ctx, s.pool, p.OrganizationID, id); err != nil {
		return err
	}
	var fields []apperr.FieldError
	f := DeliveryFilter{State: c.QueryParam("state"), EventType: c.QueryParam("event_type")}
	if b := c.QueryParam("before"); b != "" {
		v, err := strconv.ParseInt(b, 10, 64)
		if err != nil || v <= 0 {
			fields = append(fields, apperr.FieldError{Field: "before", Message: "must be a delivery id"})
		}
		f.Before = v
	}
	limit, msg := intParam(c.QueryParam("limit"), 50, 1, 500)
	if msg != "" {
		fields = append(fields, apperr.FieldError{Field: "limit", Message: msg})
	}
	f.Limit = limit
	if len(fields) > 0 {
		return apperr.Fields("bad query", fields...)
	}
	out, err := s.Deliveries(ctx, p, id, f)
	if err != nil {
		return err
	}
	resp := map[string]any{"deliveries": out}
	if len(out) == limit {
		resp["next_before"] = out[len(out)-1].ID
	}
	return c.JSON(http.StatusOK, resp)
}

// DeliveryFilter narrows Deliveries: by state and event type ("" any),
// before a delivery id (0: from the newest), at most Limit (1 to 500,
// 0: 50); Attempts loads each delivery's attempt log too.
type DeliveryFilter struct {
	State, EventType string
	Before           int64
	Limit            int
	Attempts         bool
}

// Deliveries lists the deliveries to p's organization's endpoint id,
// newest first.
func (s *Service) Deliveries(ctx context.Context, p identity.Principal, id string, f DeliveryFilter) ([]Delivery, error) {
	if err := authorize(p, false); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	if _, err := s.load(ctx, s.pool, p.OrganizationID, id); err != nil {
		return nil, err
	}
	var fields []apperr.FieldError
	state := f.State
	if state != "" && !slices.Contains(deliveryStates, state) {
		fields = append(fields, apperr.FieldError{Field: "state", Message: "must be one of " + strings.Join(deliveryStates, ", ")})
	}
	typ := f.EventType
	if _, ok := events.Lookup(events.Type(typ)); typ != "" && !ok {
		fields = append(fields, apperr.FieldError{Field: "event_type", Message: "unknown event type"})
	}
	before := int64(1<<63 - 1)
	if f.Before < 0 {
		fields = append(fields, apperr.FieldError{Field: "before", Message: "must be a delivery id"})
	} else if f.Before > 0 {
		before = f.Before
	}
	limit := f.Limit
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > 500 {
		fields = append(fields, apperr.FieldError{Field: "limit", Message: "must be a number from 1 to 500"})
	}
	if len(fields) > 0 {
		return nil, apperr.Fields("bad query", fields...)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhooks.deliveries d
		WHERE d.endpoint_id = $1 AND d.id < $2 AND ($3 = '' OR d.state = $3) AND ($4 = '' OR d.event_type = $4)
		ORDER BY d.id DESC LIMIT $5`, id, before, state, typ, limit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	if out == nil {
		out = []Delivery{}
	}
	if f.Attempts && len(out) > 0 {
		ids := make([]int64, len(out))
		at := make(map[int64]int, len(out))
		for i, d := range out {
			ids[i], at[d.ID] = d.ID, i
		}
		rows, err := s.pool.Query(ctx, `SELECT delivery_id, n, at, status, error, latency_ms FROM webhooks.attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, n`, ids)
		if err != nil {
			return nil, fmt.Errorf("list attempts: %w", err)
		}
		err = forEach(rows, func(r pgx.Rows) error {
			var did int64
			var a Attempt
			if err := r.Scan(&did, &a.N, &a.At, &a.ResponseStatus, &a.Error, &a.LatencyMS); err != nil {
				return err
			}
			out[at[did]].AttemptLog = append(out[at[did]].AttemptLog, a)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list attempts: %w", err)
		}
	}
	return out, nil
}

// getDelivery: GET /webhooks/{id}/deliveries/{delivery}, with every attempt.
func (s *Service) getDelivery(c echo.Context) error {
	p, err := caller(c, false)
	if err != nil {
		return err
	}
	id, err := endpointID(c)
	if err != nil {
		return err
	}
	did, err := strconv.ParseInt(c.Param("delivery"), 10, 64)
	if err != nil || did <= 0 {
		return apperr.Fields("bad delivery id", apperr.FieldError{Field: "delivery", Message: "must be a delivery id"})
	}
	ctx := c.Request().Context()
	d, err := scanDelivery(s.pool.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM webhooks.deliveries d
		JOIN webhooks.endpoints e ON e.id = d.endpoint_id
		WHERE d.id = $1 AND d.endpoint_id = $2 AND e.organization_id = $3`, did, id, p.OrganizationID))
	if err != nil {
		return postgres.MapError(err, "no delivery with this id", "")
	}
	rows, err := s.pool.Query(ctx, `SELECT n, at, status, error, latency_ms FROM webhooks.attempts WHERE delivery_id = $1 ORDER BY n`, did)
	if err != nil {
		return fmt.Errorf("list attempts: %w", err)
	}
	d.AttemptLog, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Attempt, error) {
		var a Attempt
		return a, r.Scan(&a.N, &a.At, &a.ResponseStatus, &a.Error, &a.LatencyMS)
	})
	if err != nil {
		return fmt.Errorf("list attempts: %w", err)
	}
	return c.JSON(http.StatusOK, d)
}

func intParam(v string, def, lo, hi int) (int, string) {
	if v == "" {
		return def, ""
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Sprintf("must be a number from %d to %d", lo, hi)
	}
	return n, ""
}

// parseSince reads a replay's since: RFC 3339, not in the future, not
// before the events' retention.
func (s *Service) parseSince(v string, now time.Time) (time.Time, *apperr.FieldError) {
	if v == "" {
		return time.Time{}, &apperr.FieldError{Field: "since", Message: "is required (RFC 3339, e.g. 2025-01-31T00:00:00Z)"}
	}
	t, err := time.Parse(time.RFC3339, v)
	switch {
	case err != nil:
		return time.Time{}, &apperr.FieldError{Field: "since", Message: "must be an RFC 3339 time, e.g. 2025-01-31T00:00:00Z"}
	case t.After(now):
		return time.Time{}, &apperr.FieldError{Field: "since", Message: "must not be in the future"}
	case t.Before(now.Add(-s.retention)):
		return time.Time{}, &apperr.FieldError{Field: "since", Message: fmt.Sprintf("is beyond the retention: events are kept %s, so since must be after %s",
			s.retention, now.Add(-s.retention).UTC().Format(time.RFC3339))}
	}
	return t, nil
}

// replay: POST /webhooks/{id}/replay?since= sends again every event since
// that time the endpoint subscribes to and may receive now (the consent
// rules of today apply), with its original webhook-id and body, under a
// fresh retry window. A delivery still pending is left on its way. It
// answers 202 with how many deliveries were scheduled.
func (s *Service) replay(c echo.Context) error {
	p, err := caller(c, true)
	if err != nil {
		return err
	}
	id, err := endpointID(c)
	if err != nil {
		return err
	}
	n, since, err := s.ReplaySince(c.Request().Context(), p, id, c.QueryParam("since"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"replayed": n, "since": since.UTC()})
}

// ReplaySince sends again to p's organization's endpoint id every event
// since (RFC 3339, within the retention) it subscribes to and may receive
// now, and returns how many deliveries it scheduled and the time read.
func (s *Service) ReplaySince(ctx context.Context, p identity.Principal, id, since string) (int, time.Time, error) {
	if err := authorize(p, true); err != nil {
		return 0, time.Time{}, err
	}
	if err := checkID(id); err != nil {
		return 0, time.Time{}, err
	}
	e, err := s.load(ctx, s.pool, p.OrganizationID, id)
	if err != nil {
		return 0, time.Time{}, err
	}
	t, ferr := s.parseSince(since, s.now())
	if ferr != nil {
		return 0, time.Time{}, apperr.Fields("bad replay window", *ferr)
	}
	if !e.Enabled {
		return 0, time.Time{}, apperr.Errorf(apperr.Conflict, "the endpoint is disabled; enable it before replaying")
	}
	n, err := s.Replay(ctx, p.OrganizationID, id, e.EventTypes, t)
	if err != nil {
		return 0, time.Time{}, err
	}
	s.disp.wakeClaimer()
	return n, t, nil
}

// Replay schedules the endpoint's deliveries of events recorded since, in
// chunks, and returns how many it scheduled.
func (s *Service) Replay(ctx context.Context, org, endpoint string, types []string, since time.Time) (int, error) {
	total := 0
	var cursor int64
	for {
		rows, err := s.pool.Query(ctx, `
			SELECT o.pos, o.id::text, o.type, coalesce(o.farmer_id::text, ''), coalesce(o.scope, ''), o.occurred_at, o.data::text
			FROM events.outbox o
			WHERE o.pos > $1 AND o.recorded_at >= $2 AND o.type = ANY($3)
			  AND (o.organization_id = $4 OR o.organization_id IS NULL)
			  AND (o.scope IS NULL OR EXISTS (SELECT 1 FROM ingest.consent_grants c
			       WHERE c.farmer_id = o.farmer_id AND c.grantee_org_id = $4 AND `+consent.LiveSQL("c", "now()")+` AND c.scopes @> ARRAY[o.scope]))
			  AND (o.farmer_id IS NULL OR NOT EXISTS (SELECT 1 FROM webhooks.erasures x WHERE x.farmer_id = o.farmer_id))
			ORDER BY o.pos LIMIT 5000`, cursor, since, types, org)
		if err != nil {
			return total, fmt.Errorf("replay: load events: %w", err)
		}
		var ids, typs, farmers, scopes, bodies []string
		err = forEach(rows, func(r pgx.Rows) error {
			var m events.Message
			var data string
			if err := r.Scan(&cursor, &m.ID, &m.Type, &m.FarmerID, &m.Scope, &m.OccurredAt, &data); err != nil {
				return err
			}
			m.Data = json.RawMessage(data)
			b, err := body(m)
			if err != nil {
				return err
			}
			ids, typs, farmers, scopes, bodies = append(ids, m.ID), append(typs, string(m.Type)), append(farmers, m.FarmerID), append(scopes, string(m.Scope)), append(bodies, string(b))
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("replay: load events: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		tag, err := s.pool.Exec(ctx, `
			INSERT INTO webhooks.deliveries AS d (endpoint_id, event_id, event_type, organization_id, farmer_id, scope, body, replays)
			SELECT $1, m.id, m.type, $2, nullif(m.farmer, '')::uuid, nullif(m.scope, ''), m.body, 1
			FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[]) AS m(id, type, farmer, scope, body)
			ON CONFLICT (endpoint_id, event_id) DO UPDATE SET
			    state = 'pending', next_attempt_at = now(), window_start = now(), lease_until = NULL, delivered_at = NULL, replays = d.replays + 1
			WHERE d.state <> 'pending'`,
			endpoint, org, ids, typs, farmers, scopes, bodies)
		if err != nil {
			return total, fmt.Errorf("replay: schedule deliveries: %w", err)
		}
		total += int(tag.RowsAffected())
		if len(ids) < 5000 {
			return total, nil
		}
	}
}

func forEach(rows pgx.Rows, fn func(pgx.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// PolledEvent is one event as GET /events returns it: the delivery's body
// with the webhook-id it carries.
type PolledEvent struct {
	ID        string          `json:"id"`
	Type      events.Type     `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// pollScan bounds how many events one poll looks at, so that a poll by an
// organization with few events among many returns in bounded time (the
// cursor moves past what was looked at).
const pollScan = 10000

// pollEvents: GET /events?cursor=&limit=&types= lists, in the order they
// were published, the events the organization would have been pushed —
// addressed to it, or about a farmer whose live consent to it covers the
// event's scope (and, for an API key, within the key's scopes) — after
// cursor (from the start of the retention without one). next_cursor
// continues; has_more says whether to ask again at once.
func (s *Service) pollEvents(c echo.Context) error {
	p, err := caller(c, false)
	if err != nil {
		return err
	}
	var fields []apperr.FieldError
	var cursor int64
	if v := c.QueryParam("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fields = append(fields, apperr.FieldError{Field: "cursor", Message: "must be a cursor returned as next_cursor"})
		}
		cursor = n
	}
	limit, msg := intParam(c.QueryParam("limit"), 100, 1, 1000)
	if msg != "" {
		fields = append(fields, apperr.FieldError{Field: "limit", Message: msg})
	}
	var types []string
	if v := c.QueryParam("types"); v != "" {
		for t := range strings.SplitSeq(v, ",") {
			info, ok := events.Lookup(events.Type(t))
			if !ok || !info.For(p.Kind) {
				fields = append(fields, apperr.FieldError{Field: "types", Message: fmt.Sprintf("%q is not an event type for a %s", t, p.Kind)})
				continue
			}
			types = append(types, t)
		}
	} else {
		for _, t := range events.TypesFor(p.Kind) {
			types = append(types, string(t))
		}
	}
	if len(fields) > 0 {
		return apperr.Fields("bad query", fields...)
	}
	var keyScopes []string // nil: any scope (a portal user)
	if p.APIKeyID != "" {
		keyScopes = append([]string{}, p.Scopes...)
	}
	ctx := c.Request().Context()
	var scannedTo *int64
	var scanned int
	if err := s.pool.QueryRow(ctx, `SELECT max(pos), count(*) FROM (SELECT pos FROM events.outbox WHERE pos > $1 ORDER BY pos LIMIT $2) s`,
		cursor, pollScan).Scan(&scannedTo, &scanned); err != nil {
		return fmt.Errorf("poll events: %w", err)
	}
	out := []PolledEvent{}
	next := cursor
	if scannedTo != nil {
		rows, err := s.pool.Query(ctx, `
			SELECT o.pos, o.id::text, o.type, o.occurred_at, o.data::text FROM events.outbox o
			WHERE o.pos > $1 AND o.pos <= $2 AND o.type = ANY($3)
			  AND (o.organization_id = $4 OR o.organization_id IS NULL)
			  AND (o.scope IS NULL OR (($5::text[] IS NULL OR o.scope = ANY($5)) AND EXISTS (SELECT 1 FROM ingest.consent_grants c
			       WHERE c.farmer_id = o.farmer_id AND c.grantee_org_id = $4 AND `+consent.LiveSQL("c", "now()")+` AND c.scopes @> ARRAY[o.scope])))
			  AND (o.farmer_id IS NULL OR NOT EXISTS (SELECT 1 FROM webhooks.erasures x WHERE x.farmer_id = o.farmer_id))
			ORDER BY o.pos LIMIT $6`, cursor, *scannedTo, types, p.OrganizationID, keyScopes, limit)
		if err != nil {
			return fmt.Errorf("poll events: %w", err)
		}
		var last int64
		err = forEach(rows, func(r pgx.Rows) error {
			var e PolledEvent
			var data string
			if err := r.Scan(&last, &e.ID, &e.Type, &e.Timestamp, &data); err != nil {
				return err
			}
			e.Timestamp, e.Data = e.Timestamp.UTC(), json.RawMessage(data)
			out = append(out, e)
			return nil
		})
		if err != nil {
			return fmt.Errorf("poll events: %w", err)
		}
		next = *scannedTo
		if len(out) == limit {
			next = last
		}
	}
	hasMore := len(out) == limit || scanned == pollScan
	return c.JSON(http.StatusOK, map[string]any{"events": out, "next_cursor": strconv.FormatInt(next, 10), "has_more": hasMore})
}

// FailingEndpoint is an endpoint on the operators' list.
type FailingEndpoint struct {
	ID                string     `json:"id"`
	OrganizationID    string     `json:"organization_id"`
	URL               string     `json:"url"`
	Enabled           bool       `json:"enabled"`
	DisabledReason    *string    `json:"disabled_reason"`
	DisabledAt        *time.Time `json:"disabled_at"`
	FailingSince      *time.Time `json:"failing_since"`
	LastSuccessAt     *time.Time `json:"last_success_at"`
	LastFailureAt     *time.Time `json:"last_failure_at"`
	PendingDeliveries int        `json:"pending_deliveries"`
	LastError         *string    `json:"last_error"`
}

// failing: GET /admin/v1/webhooks/failing lists endpoints failing now or
// disabled for failing, longest failing first.
func (s *Service) failing(c echo.Context) error {
	rows, err := s.pool.Query(c.Request().Context(), `
		SELECT e.id::text, e.organization_id::text, e.url, e.enabled, e.disabled_reason, e.disabled_at, e.failing_since,
		       e.last_success_at, e.last_failure_at,
		       (SELECT count(*) FROM webhooks.deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending'),
		       (SELECT d.last_error FROM webhooks.deliveries d WHERE d.endpoint_id = e.id AND d.last_error IS NOT NULL ORDER BY d.last_attempt_at DESC NULLS LAST LIMIT 1)
		FROM webhooks.endpoints e
		WHERE e.failing_since IS NOT NULL OR e.disabled_reason = 'failing'
		ORDER BY coalesce(e.failing_since, e.disabled_at), e.id LIMIT 1000`)
	if err != nil {
		return fmt.Errorf("list failing endpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (FailingEndpoint, error) {
		var f FailingEndpoint
		return f, r.Scan(&f.ID, &f.OrganizationID, &f.URL, &f.Enabled, &f.DisabledReason, &f.DisabledAt, &f.FailingSince,
			&f.LastSuccessAt, &f.LastFailureAt, &f.PendingDeliveries, &f.LastError)
	})
	if err != nil {
		return fmt.Errorf("list failing endpoints: %w", err)
	}
	if out == nil {
		out = []FailingEndpoint{}
	}
	return c.JSON(http.StatusOK, map[string]any{"endpoints": out})
}
