package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/validate"
)

// Routes mounts the organizations' API on r.Bank and r.Distributor (each
// already authenticated as such an organization) and the operators' list
// of failing endpoints on r.Admin. The paths are the same under both
// prefixes.
func (s *Service) Routes(r httpserver.Router) {
	for _, api := range []struct {
		g      *echo.Group
		prefix string
		kind   identity.Kind
	}{{r.Bank, BankPrefix, identity.Bank}, {r.Distributor, DistributorPrefix, identity.Distributor}} {
		g := api.g
		if g == nil {
			continue
		}
		g.GET("/webhooks/openapi.json", s.openapi(api.prefix, api.kind))
		g.GET("/webhooks/event-types", s.eventTypes)
		g.POST("/webhooks", s.create)
		g.GET("/webhooks", s.list)
		g.GET("/webhooks/:id", s.get)
		g.PATCH("/webhooks/:id", s.update)
		g.DELETE("/webhooks/:id", s.remove)
		g.POST("/webhooks/:id/rotate-secret", s.rotate)
		g.GET("/webhooks/:id/deliveries", s.listDeliveries)
		g.GET("/webhooks/:id/deliveries/:delivery", s.getDelivery)
		g.POST("/webhooks/:id/replay", s.replay)
		g.GET("/events", s.pollEvents)
	}
	if r.Admin != nil {
		r.Admin.GET("/webhooks/failing", s.failing)
	}
}

// The prefixes of the organizations' APIs (httpserver.Router's Bank and
// Distributor groups).
const (
	BankPrefix        = "/bank/v1"
	DistributorPrefix = "/distributor/v1"
)

// MaxDescription is the longest endpoint description.
const MaxDescription = 200

// MaxOverlap is the longest a rotated-out secret keeps signing.
const MaxOverlap = 7 * 24 * time.Hour

// Endpoint is an endpoint as its organization sees it. Secret is set only
// in the answer that created it (creation, rotation).
type Endpoint struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Description string   `json:"description"`
	EventTypes  []string `json:"event_types"`
	Enabled     bool     `json:"enabled"`
	// DisabledReason is "organization" (you disabled it) or "failing"
	// (every attempt failed for the whole retry window): re-enable it
	// with PATCH, then replay what it missed.
	DisabledReason *string    `json:"disabled_reason"`
	DisabledAt     *time.Time `json:"disabled_at"`
	// FailingSince is the first failed attempt since the last success.
	FailingSince          *time.Time `json:"failing_since"`
	LastSuccessAt         *time.Time `json:"last_success_at"`
	LastFailureAt         *time.Time `json:"last_failure_at"`
	PreviousSecretExpires *time.Time `json:"previous_secret_expires_at"`
	CreatedAt             time.Time  `json:"created_at"`
	UpdatedAt             time.Time  `json:"updated_at"`
	Secret                string     `json:"secret,omitempty"`
	PendingDeliveries     int        `json:"pending_deliveries"`
}

const endpointColumns = `e.id::text, e.url, e.description, e.event_types, e.enabled, e.disabled_reason, e.disabled_at, e.failing_since,
	e.last_success_at, e.last_failure_at, CASE WHEN e.previous_expires_at > now() THEN e.previous_expires_at END, e.created_at, e.updated_at,
	(SELECT count(*) FROM webhooks.deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending')`

func scanEndpoint(row pgx.Row) (Endpoint, error) {
	var e Endpoint
	err := row.Scan(&e.ID, &e.URL, &e.Description, &e.EventTypes, &e.Enabled, &e.DisabledReason, &e.DisabledAt, &e.FailingSince,
		&e.LastSuccessAt, &e.LastFailureAt, &e.PreviousSecretExpires, &e.CreatedAt, &e.UpdatedAt, &e.PendingDeliveries)
	return e, err
}

// caller is the authenticated organization; a portal user must be an
// admin of it to change anything.
func caller(c echo.Context, write bool) (identity.Principal, error) {
	p, _ := identity.PrincipalOf(c)
	if err := authorize(p, write); err != nil {
		return identity.Principal{}, err
	}
	return p, nil
}

// authorize checks that p is an organization and, to write, that a
// portal user among its people is an administrator (an API key may write:
// its organization gave it out to do so).
func authorize(p identity.Principal, write bool) error {
	if p.OrganizationID == "" {
		return apperr.Errorf(apperr.Unauthorized, "no authenticated organization")
	}
	if write && p.UserID != "" && p.Role != "admin" {
		return apperr.Errorf(apperr.Forbidden, "only an administrator of your organization may change its webhooks")
	}
	return nil
}

// endpointID reads the :id parameter.
func endpointID(c echo.Context) (string, error) {
	id := c.Param("id")
	return id, checkID(id)
}

func checkID(id string) error {
	if !validate.LowerUUID(id) {
		return apperr.Fields("bad webhook id", apperr.FieldError{Field: "id", Message: "must be a lowercase UUID"})
	}
	return nil
}

// EventType is a catalogue entry as the API lists it.
type EventType struct {
	Type    string `json:"type"`
	Summary string `json:"summary"`
}

// eventTypes: GET /webhooks/event-types, the types the caller's kind of
// organization may subscribe to.
func (s *Service) eventTypes(c echo.Context) error {
	p, err := caller(c, false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"event_types": EventTypesFor(p.Kind)})
}

// EventTypesFor lists the catalogue's types an organization of kind k may
// subscribe to.
func EventTypesFor(k identity.Kind) []EventType {
	out := []EventType{}
	for _, i := range events.Catalogue {
		if i.For(k) {
			out = append(out, EventType{Type: string(i.Type), Summary: i.Summary})
		}
	}
	return out
}

// EndpointInput is what an organization sets on an endpoint: the body of
// POST and PATCH (every field optional on PATCH, nil leaving it as it is).
type EndpointInput struct {
	URL         *string   `json:"url"`
	EventTypes  *[]string `json:"event_types"`
	Description *string   `json:"description"`
	Enabled     *bool     `json:"enabled"`
}

// check validates in for an organization of kind k, creating when create
// is set (url and event_types required), and returns the normalized URL
// and event types.
func (s *Service) check(ctx context.Context, in EndpointInput, k identity.Kind, create bool) (string, []string, error) {
	var fields []apperr.FieldError
	var url string
	var types []string
	if in.URL != nil || create {
		raw := ""
		if in.URL != nil {
			raw = strings.TrimSpace(*in.URL)
		}
		u, msg := s.guard.checkURL(ctx, raw)
		if msg != "" {
			fields = append(fields, apperr.FieldError{Field: "url", Message: msg})
		}
		url = u
	}
	if in.EventTypes != nil || create {
		var given []string
		if in.EventTypes != nil {
			given = *in.EventTypes
		}
		if len(given) == 0 {
			fields = append(fields, apperr.FieldError{Field: "event_types", Message: "must name at least one event type (GET /webhooks/event-types lists them)"})
		}
		for i, t := range given {
			info, ok := events.Lookup(events.Type(t))
			switch {
			case !ok:
				fields = append(fields, apperr.FieldError{Field: fmt.Sprintf("event_types[%d]", i), Message: fmt.Sprintf("unknown event type %q", t)})
			case !info.For(k):
				fields = append(fields, apperr.FieldError{Field: fmt.Sprintf("event_types[%d]", i), Message: fmt.Sprintf("%s is not sent to a %s", t, k)})
			case !slices.Contains(types, t):
				types = append(types, t)
			}
		}
		slices.Sort(types)
	}
	if in.Description != nil && (utf8.RuneCountInString(*in.Description) > MaxDescription) {
		fields = append(fields, apperr.FieldError{Field: "description", Message: fmt.Sprintf("must be at most %d characters", MaxDescription)})
	}
	if len(fields) > 0 {
		return "", nil, apperr.Fields("bad webhook endpoint", fields...)
	}
	return url, types, nil
}

// create: POST /webhooks {url, event_types, description?, enabled?} →
// 201 with the endpoint and its secret, shown this once.
func (s *Service) create(c echo.Context) error {
	p, err := caller(c, true)
	if err != nil {
		return err
	}
	var in EndpointInput
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	e, err := s.CreateEndpoint(c.Request().Context(), p, in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, e)
}

// CreateEndpoint registers an endpoint for p's organization (p must be
// allowed to change its webhooks) and returns it with its secret, which
// is never shown again. Bad input stores nothing.
func (s *Service) CreateEndpoint(ctx context.Context, p identity.Principal, in EndpointInput) (Endpoint, error) {
	if err := authorize(p, true); err != nil {
		return Endpoint{}, err
	}
	url, types, err := s.check(ctx, in, p.Kind, true)
	if err != nil {
		return Endpoint{}, err
	}
	desc := ""
	if in.Description != nil {
		desc = strings.TrimSpace(*in.Description)
	}
	enabled := in.Enabled == nil || *in.Enabled
	var reason *string
	if !enabled {
		r := "organization"
		reason = &r
	}
	secret := NewSecret()
	id := newID()
	var e Endpoint
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialize an organization's creations, so the limit holds.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('webhooks:' || $1, 0))`, p.OrganizationID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhooks.endpoints WHERE organization_id = $1`, p.OrganizationID).Scan(&n); err != nil {
			return err
		}
		if n >= s.cfg.MaxEndpoints {
			return apperr.Errorf(apperr.Conflict, "your organization already has %d webhook endpoints, the most allowed; delete one first", n)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO webhooks.endpoints (id, organization_id, url, description, event_types, enabled, disabled_reason, disabled_at, secret_sealed)
			VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6 THEN NULL ELSE now() END, $8)`,
			id, p.OrganizationID, url, desc, types, enabled, reason, s.sealSecret(secret)); err != nil {
			return fmt.Errorf("create endpoint: %w", err)
		}
		e, err = scanEndpoint(tx.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhooks.endpoints e WHERE e.id = $1`, id))
		return err
	})
	if err != nil {
		return Endpoint{}, err
	}
	e.Secret = secret
	s.logger.InfoContext(ctx, "webhook endpoint created", "endpoint", id, "organization", p.OrganizationID, "credential", p.Credential())
	return e, nil
}

// list: GET /webhooks, the organization's endpoints, oldest first.
func (s *Service) list(c echo.Context) error {
	p, err := caller(c, false)
	if err != nil {
		return err
	}
	out, err := s.Endpoints(c.Request().Context(), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"webhooks": out})
}

// Endpoints lists p's organization's endpoints, oldest first, with their
// health.
func (s *Service) Endpoints(ctx context.Context, p identity.Principal) ([]Endpoint, error) {
	if err := authorize(p, false); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhooks.endpoints e WHERE e.organization_id = $1 ORDER BY e.created_at, e.id`, p.OrganizationID)
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Endpoint, error) { return scanEndpoint(r) })
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	if out == nil {
		out = []Endpoint{}
	}
	return out, nil
}

// Endpoint is p's organization's endpoint id (another organization's is
// not found).
func (s *Service) Endpoint(ctx context.Context, p identity.Principal, id string) (Endpoint, error) {
	if err := authorize(p, false); err != nil {
		return Endpoint{}, err
	}
	if err := checkID(id); err != nil {
		return Endpoint{}, err
	}
	return s.load(ctx, s.pool, p.OrganizationID, id)
}

// load returns the organization's endpoint id; another organization's is
// not found, as one that does not exist.
func (s *Service) load(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, org, id string) (Endpoint, error) {
	e, err := scanEndpoint(q.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhooks.endpoints e WHERE e.id = $1 AND e.organization_id = $2`, id, org))
	return e, postgres.MapError(err, "no webhook endpoint with this id", "")
}

// get: GET /webhooks/{id}.
func (s *Service) get(c echo.Context) error {
	p, err := caller(c, false)
	if err != nil {
		return err
	}
	id, err := endpointID(c)
	if err != nil {
		return err
	}
	e, err := s.load(c.Request().Context(), s.pool, p.OrganizationID, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, e)
}

// update: PATCH /webhooks/{id} with any of url, event_types, description,
// enabled. Enabling an endpoint disabled for failing clears its failure;
// what it missed is replayed with POST …/replay.
func (s *Service) update(c echo.Context) error {
	p, err := caller(c, true)
	if err != nil {
		return err
	}
	id, err := endpointID(c)
	if err != nil {
		return err
	}
	var in EndpointInput
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	e, err := s.UpdateEndpoint(c.Request().Context(), p, id, in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, e)
}

// UpdateEndpoint changes what in sets on p's organization's endpoint id.
// Enabling an endpoint disabled for failing clears its failure; what it
// missed is replayed with ReplaySince.
func (s *Service) UpdateEndpoint(ctx context.Context, p identity.Principal, id string, in EndpointInput) (Endpoint, error) {
	if err := authorize(p, true); err != nil {
		return Endpoint{}, err
	}
	if err := checkID(id); err != nil {
		return Endpoint{}, err
	}
	before, err := s.load(ctx, s.pool, p.OrganizationID, id)
	if err != nil {
		return Endpoint{}, err // not found before bad input: no probing of others' ids
	}
	url, types, err := s.check(ctx, in, p.Kind, false)
	if err != nil {
		return Endpoint{}, err
	}
	var desc *string
	if in.Description != nil {
		d := strings.TrimSpace(*in.Description)
		desc = &d
	}
	var urlArg *string
	if in.URL != nil {
		urlArg = &url
	}
	var typesArg []string
	if in.EventTypes != nil {
		typesArg = types
	}
	var e Endpoint
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE webhooks.endpoints SET
			    url = coalesce($3, url),
			    event_types = coalesce($4, event_types),
			    description = coalesce($5, description),
			    enabled = coalesce($6, enabled),
			    disabled_reason = CASE WHEN $6 IS NULL THEN disabled_reason WHEN $6 THEN NULL
			                           WHEN enabled THEN 'organization' ELSE disabled_reason END,
			    disabled_at = CASE WHEN $6 IS NULL THEN disabled_at WHEN $6 THEN NULL WHEN enabled THEN now() ELSE disabled_at END,
			    failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END,
			    updated_at = now()
			WHERE id = $1 AND organization_id = $2`,
			id, p.OrganizationID, urlArg, typesArg, desc, in.Enabled)
		if err != nil {
			return fmt.Errorf("update endpoint %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return apperr.Errorf(apperr.NotFound, "no webhook endpoint with this id")
		}
		if in.Enabled != nil && *in.Enabled && !before.Enabled {
			// What waited while it was disabled gets a full retry window.
			if _, err := tx.Exec(ctx, `UPDATE webhooks.deliveries SET window_start = now(), next_attempt_at = now()
				WHERE endpoint_id = $1 AND state = 'pending'`, id); err != nil {
				return fmt.Errorf("resume deliveries of %s: %w", id, err)
			}
		}
		e, err = s.load(ctx, tx, p.OrganizationID, id)
		return err
	})
	if err != nil {
		return Endpoint{}, err
	}
	if !e.Enabled {
		s.disp.drop(ctx, id)
	} else {
		s.disp.wakeClaimer()
	}
	return e, nil
}

// remove: DELETE /webhooks/{id}; its deliveries go with it.
func (s *Service) remove(c echo.Context) error {
	p, err := caller(c, true)
	if err != nil {
		return err
	}
	id, err := endpointID(c)
	if err != nil {
		return err
	}
	if err := s.DeleteEndpoint(c.Request().Context(), p, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// DeleteEndpoint deletes p's organization's endpoint id; its deliveries
// go with it.
func (s *Service) DeleteEndpoint(ctx context.Context, p identity.Principal, id string) error {
	if err := authorize(p, true); err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhooks.endpoints WHERE id = $1 AND organization_id = $2`, id, p.OrganizationID)
	if err != nil {
		return fmt.Errorf("delete endpoint %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return apperr.Errorf(apperr.NotFound, "no webhook endpoint with this id")
	}
	s.disp.drop(ctx, id)
	return nil
}

// rotateInput is the body of POST …/rotate-secret.
type rotateInput struct {
	// OverlapSeconds is how long the old secret keeps signing beside the
	// new one (default a day, at most 7 days, 0 to stop at once).
	OverlapSeconds *int64 `json:"overlap_seconds"`
}

// rotate: POST /webhooks/{id}/rotate-secret → the endpoint with its new
// secret, shown this once. Until the overlap ends every delivery carries
// two signatures, the new secret's and the old one's, so the receiver can
// switch at its own pace.
func (s *Service) rotate(c echo.Context) error {
	p, err := caller(c, true)
	if err != nil {
		return err
	}
	id, err := endpointID(c)
	if err != nil {
		return err
	}
	var in rotateInput
	if c.Request().ContentLength != 0 {
		if err := httpserver.DecodeJSON(c, &in); err != nil {
			return err
		}
	}
	ctx := c.Request().Context()
	if _, err := s.load(ctx, s.pool, p.OrganizationID, id); err != nil {
		return err
	}
	overlap := DefaultOverlap
	if in.OverlapSeconds != nil {
		if *in.OverlapSeconds < 0 || time.Duration(*in.OverlapSeconds)*time.Second > MaxOverlap {
			return apperr.Fields("bad overlap", apperr.FieldError{Field: "overlap_seconds", Message: fmt.Sprintf("must be from 0 to %d", int64(MaxOverlap/time.Second))})
		}
		overlap = time.Duration(*in.OverlapSeconds) * time.Second
	}
	e, err := s.RotateSecret(ctx, p, id, overlap)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, e)
}

// DefaultOverlap is how long a rotated-out secret keeps signing unless
// the organization says otherwise.
const DefaultOverlap = 24 * time.Hour

// RotateSecret gives p's organization's endpoint id a new secret, returned
// this once; the old one keeps signing beside it for overlap (0 to
// MaxOverlap).
func (s *Service) RotateSecret(ctx context.Context, p identity.Principal, id string, overlap time.Duration) (Endpoint, error) {
	if err := authorize(p, true); err != nil {
		return Endpoint{}, err
	}
	if err := checkID(id); err != nil {
		return Endpoint{}, err
	}
	if overlap < 0 || overlap > MaxOverlap {
		return Endpoint{}, apperr.Fields("bad overlap", apperr.FieldError{Field: "overlap", Message: fmt.Sprintf("must be from 0 to %s", MaxOverlap)})
	}
	secret := NewSecret()
	var e Endpoint
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE webhooks.endpoints SET previous_sealed = secret_sealed, previous_expires_at = now() + make_interval(secs => $3),
			    secret_sealed = $4, updated_at = now()
			WHERE id = $1 AND organization_id = $2`, id, p.OrganizationID, overlap.Seconds(), s.sealSecret(secret))
		if err != nil {
			return fmt.Errorf("rotate secret of %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return apperr.Errorf(apperr.NotFound, "no webhook endpoint with this id")
		}
		e, err = s.load(ctx, tx, p.OrganizationID, id)
		return err
	})
	if err != nil {
		return Endpoint{}, err
	}
	e.Secret = secret
	s.logger.InfoContext(ctx, "webhook secret rotated", "endpoint", id, "organization", p.OrganizationID, "overlap", overlap, "credential", p.Credential())
	return e, nil
}
