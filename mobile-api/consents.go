package mobileapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

// ConsentRequest is an organization's request for a farmer's consent, on
// the phone of the farmer's agent. The agent reads it to the farmer; the
// farmer answers with a one-time code (POST /otp) and the phone syncs a
// signed consent.granted whose consent_id is ID, granting at most Scopes
// for at most DurationDays from capture — or a consent.refused with the
// same consent_id.
type ConsentRequest struct {
	ID               string    `json:"id"`
	FarmerID         string    `json:"farmer_id"`
	OrganizationID   string    `json:"organization_id"`
	OrganizationName string    `json:"organization_name"`
	OrganizationKind string    `json:"organization_kind"`
	Scopes           []string  `json:"scopes"`
	DurationDays     int       `json:"duration_days"`
	Purpose          string    `json:"purpose"`
	RequestedAt      time.Time `json:"requested_at"`
	// AnswerBy is when the request expires unanswered: an answer must be
	// captured before it.
	AnswerBy time.Time `json:"answer_by"`
}

// ConsentRequestsPage is one page of GET /consent-requests.
type ConsentRequestsPage struct {
	Requests []ConsentRequest `json:"consent_requests"`
	// Cursor, while More is true, is passed back as ?cursor= for the
	// next page.
	Cursor string `json:"cursor,omitempty"`
	More   bool   `json:"more"`
}

// consentRequests: GET /consent-requests — the requests awaiting an
// answer from farmers assigned to this agent, oldest first, a page at a
// time (see listPage).
func (s *Service) consentRequests(c echo.Context) error {
	cur, limit, err := listPage(c)
	if err != nil {
		return err
	}
	rows, err := s.pool.Query(c.Request().Context(), `
		SELECT q.id::text, q.farmer_id::text, q.organization_id::text, q.organization_name, q.organization_kind,
		       q.scopes, q.duration_days, q.purpose, q.requested_at, q.answer_by
		FROM consent.open_requests q
		JOIN mobile.assignments a ON a.farmer_id = q.farmer_id AND a.agent_id = $1
		WHERE $2 = '' OR (q.requested_at, q.id) > ($3, nullif($2, '')::uuid)
		ORDER BY q.requested_at, q.id
		LIMIT $4`, auth.ClaimsOf(c).Subject, cur.ID, cur.At, limit+1)
	if err != nil {
		return fmt.Errorf("list consent requests: %w", err)
	}
	page := ConsentRequestsPage{Requests: []ConsentRequest{}}
	for rows.Next() {
		var r ConsentRequest
		if err := rows.Scan(&r.ID, &r.FarmerID, &r.OrganizationID, &r.OrganizationName, &r.OrganizationKind,
			&r.Scopes, &r.DurationDays, &r.Purpose, &r.RequestedAt, &r.AnswerBy); err != nil {
			rows.Close()
			return err
		}
		page.Requests = append(page.Requests, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list consent requests: %w", err)
	}
	if len(page.Requests) > limit {
		page.Requests, page.More = page.Requests[:limit], true
		last := page.Requests[limit-1]
		page.Cursor = listCursor{At: last.RequestedAt, ID: last.ID}.encode()
	}
	return c.JSON(http.StatusOK, page)
}

// checkAnswer holds a consent.granted or consent.refused to the consent
// request it answers (the request whose id is its consent_id). A grant
// that answers no request is a consent the farmer gave on their own and
// needs none; a refusal must answer one. A grant may not name another
// organization, grant a scope not asked for, or last longer than asked;
// neither may be captured after the request expired.
func (s *Service) checkAnswer(ctx context.Context, env record.Envelope, payload record.Payload) ([]apperr.FieldError, error) {
	var consentID, grantee string
	switch p := payload.(type) {
	case *record.ConsentGranted:
		consentID, grantee = p.ConsentID, p.GranteeOrgID
	case *record.ConsentRefused:
		consentID, grantee = p.ConsentID, p.GranteeOrgID
	default:
		return nil, nil
	}
	var org, farmer string
	var scopes []string
	var days int
	var answerBy time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT organization_id::text, farmer_id::text, scopes, duration_days, answer_by FROM consent.request_terms WHERE id = $1`, consentID).
		Scan(&org, &farmer, &scopes, &days, &answerBy)
	if errors.Is(err, pgx.ErrNoRows) {
		if env.Type == record.TypeConsentRefused {
			return []apperr.FieldError{{Field: "payload.consent_id", Message: "names no consent request: a refusal answers one (GET /mobile/v1/consent-requests)"}}, nil
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consent request %s: %w", consentID, err)
	}
	var out []apperr.FieldError
	add := func(field, format string, args ...any) {
		out = append(out, apperr.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if farmer != payload.Farmer() {
		add("payload.farmer_id", "is not the farmer the consent request asks")
	}
	if org != grantee {
		add("payload.grantee_organization_id", "is not the organization that requested this consent")
	}
	if env.Captured().After(answerBy) {
		add("payload.consent_id", "the consent request expired at %s, before this was captured", answerBy.UTC().Format(time.RFC3339))
	}
	if g, ok := payload.(*record.ConsentGranted); ok {
		var extra []string
		for _, sc := range g.Scopes {
			if !slices.Contains(scopes, sc) {
				extra = append(extra, sc)
			}
		}
		if len(extra) > 0 {
			add("payload.scopes", "grants %s, which the request did not ask for (it asked %s)", strings.Join(extra, ", "), strings.Join(scopes, ", "))
		}
		exp, _ := time.Parse(time.RFC3339, g.ExpiresAt)
		if exp.After(env.Captured().Add(time.Duration(days) * 24 * time.Hour)) {
			add("payload.expires_at", "is later than the %d days the request asked for", days)
		}
	} else {
		var granted bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ingest.consent_grants WHERE consent_id = $1)`, consentID).Scan(&granted); err != nil {
			return nil, fmt.Errorf("grant of consent request %s: %w", consentID, err)
		}
		if granted {
			add("payload.consent_id", "was already granted: withdraw it with a consent.revoked record")
		}
	}
	return out, nil
}

// FarmerAccess is one read of a farmer's data by an organization, as the
// farmer sees it with their agent.
type FarmerAccess struct {
	ID               int64     `json:"id"`
	At               time.Time `json:"at"`
	OrganizationName string    `json:"organization_name"`
	OrganizationKind string    `json:"organization_kind"`
	Scopes           []string  `json:"scopes"`
	Purpose          string    `json:"purpose"`
	// Allowed is false for a read refused for want of a live consent
	// (nothing was read).
	Allowed bool `json:"allowed"`
}

// farmerAccessLog: GET /farmers/{id}/access-log?before=&limit= — who
// looked at the farmer's data, newest first, for the agent assigned to
// the farmer (the farmer reads it on the agent's phone).
func (s *Service) farmerAccessLog(c echo.Context) error {
	farmer := c.Param("id")
	if !validate.LowerUUID(farmer) {
		return apperr.Fields("bad farmer id", apperr.FieldError{Field: "id", Message: "must be a lowercase UUID"})
	}
	where, args := []string{"farmer_id = $1"}, []any{farmer}
	var fields []apperr.FieldError
	if v := c.QueryParam("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			fields = append(fields, apperr.FieldError{Field: "before", Message: "must be an id from this list"})
		} else {
			args = append(args, n)
			where = append(where, "id < $2")
		}
	}
	limit := 50
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			fields = append(fields, apperr.FieldError{Field: "limit", Message: "must be 1 to 200"})
		}
		limit = n
	}
	if len(fields) > 0 {
		return apperr.Fields("bad access-log query", fields...)
	}
	ctx := c.Request().Context()
	if ok, err := s.assigned(ctx, auth.ClaimsOf(c).Subject, farmer); err != nil {
		return err
	} else if !ok {
		return apperr.Errorf(apperr.Forbidden, "you are not assigned to this farmer")
	}
	entries, err := consent.ReadAccessLog(ctx, s.pool, where, args, limit)
	if err != nil {
		return err
	}
	out := make([]FarmerAccess, len(entries))
	for i, e := range entries {
		out[i] = FarmerAccess{ID: e.ID, At: e.At, OrganizationName: e.OrganizationName, OrganizationKind: e.OrganizationKind,
			Scopes: e.Scopes, Purpose: e.Purpose, Allowed: e.Allowed}
	}
	return c.JSON(http.StatusOK, map[string]any{"accesses": out})
}
