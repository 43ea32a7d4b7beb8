package consent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
	"github.com/tani-platform/tani/ledger/verify"
)

// The statuses of a consent, as Open Banking names them.
const (
	StatusAwaiting   = "awaiting_authorisation" // requested; the farmer has not answered
	StatusAuthorised = "authorised"             // granted, live
	StatusRejected   = "rejected"               // the farmer refused the request
	StatusRevoked    = "revoked"                // the farmer withdrew it
	StatusExpired    = "expired"                // past its expiry, or a request past its answer_by
)

// Statuses lists them, for validation and messages.
var Statuses = []string{StatusAwaiting, StatusAuthorised, StatusRejected, StatusRevoked, StatusExpired}

// MaxRequestPurpose is the longest purpose a consent request may state:
// the farmer hears it read out on the agent's phone.
const MaxRequestPurpose = 500

// Request is what an organization asks a farmer for.
type Request struct {
	FarmerID string   `json:"farmer_id"`
	Scopes   []string `json:"scopes"`
	// DurationDays is how long the consent lasts once the farmer gives
	// it: 1 to record.MaxConsentDays.
	DurationDays int    `json:"duration_days"`
	Purpose      string `json:"purpose"`
}

// check returns the request's field errors.
func (r Request) check() []apperr.FieldError {
	var fields []apperr.FieldError
	add := func(field, format string, args ...any) {
		fields = append(fields, apperr.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !validate.LowerUUID(r.FarmerID) {
		add("farmer_id", "must be a lowercase UUID")
	}
	if len(r.Scopes) == 0 {
		add("scopes", "must name at least one of: %s", strings.Join(validate.ConsentScopes, ", "))
	}
	seen := map[string]bool{}
	for i, s := range r.Scopes {
		switch {
		case !slices.Contains(validate.ConsentScopes, s):
			add(fmt.Sprintf("scopes[%d]", i), "must be one of: %s", strings.Join(validate.ConsentScopes, ", "))
		case seen[s]:
			add(fmt.Sprintf("scopes[%d]", i), "is named twice")
		}
		seen[s] = true
	}
	switch {
	case r.DurationDays < 1:
		add("duration_days", "must be at least 1: a consent must end in the future")
	case r.DurationDays > record.MaxConsentDays:
		add("duration_days", "must be at most %d: a consent is reconfirmed after that", record.MaxConsentDays)
	}
	if n := utf8.RuneCountInString(strings.TrimSpace(r.Purpose)); n < 1 || n > MaxRequestPurpose {
		add("purpose", "must be 1 to %d characters", MaxRequestPurpose)
	}
	return fields
}

// requestEvent is the journaled payload of a request.
type requestEvent struct {
	ConsentID      string    `json:"consent_id"`
	Event          string    `json:"event"`
	OrganizationID string    `json:"organization_id"`
	FarmerID       string    `json:"farmer_id"`
	Scopes         []string  `json:"scopes"`
	DurationDays   int       `json:"duration_days"`
	Purpose        string    `json:"purpose"`
	RequestedBy    string    `json:"requested_by"`
	RequestedAt    time.Time `json:"requested_at"`
	AnswerBy       time.Time `json:"answer_by"`
}

// createRequest: POST /consent-requests. The request reaches the phone of
// the farmer's agent (GET /mobile/v1/consent-requests); the farmer answers
// it with a signed consent.granted or consent.refused whose consent_id is
// the request's id.
func (s *Service) createRequest(c echo.Context) error {
	p, ok := identity.PrincipalOf(c)
	if !ok {
		return apperr.Errorf(apperr.Unauthorized, "no authenticated organization")
	}
	var in Request
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	slices.Sort(in.Scopes)
	if fields := in.check(); len(fields) > 0 {
		return apperr.Fields("bad consent request", fields...)
	}
	in.Purpose = strings.TrimSpace(in.Purpose)
	ctx := c.Request().Context()
	now := s.now().UTC().Truncate(time.Microsecond)
	ev := requestEvent{ConsentID: uuid.NewString(), Event: "requested", OrganizationID: p.OrganizationID, FarmerID: in.FarmerID, Scopes: in.Scopes,
		DurationDays: in.DurationDays, Purpose: in.Purpose, RequestedBy: p.Credential(), RequestedAt: now, AnswerBy: now.Add(s.cfg.AnswerWithin)}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// First, under the farmer's lock: no request is stored about a
		// farmer whose erasure has begun (ingest may not have deleted
		// their registration yet). An erased farmer is unknown.
		erased, err := eraser.Fence(ctx, tx, []string{in.FarmerID})
		if err != nil {
			return err
		}
		var known bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ingest.farmer_contacts WHERE farmer_id = $1)`, in.FarmerID).Scan(&known); err != nil {
			return fmt.Errorf("look up farmer %s: %w", in.FarmerID, err)
		}
		if !known || erased.Has(in.FarmerID) {
			return apperr.Fields("unknown farmer", apperr.FieldError{Field: "farmer_id", Message: "no farmer with this id is registered on Tani"})
		}
		// One open request per organization and farmer: the farmer is
		// asked once, not pestered.
		var open string
		err = tx.QueryRow(ctx, `
			SELECT id::text FROM consent.open_requests WHERE farmer_id = $1 AND organization_id = $2 LIMIT 1`, in.FarmerID, p.OrganizationID).Scan(&open)
		if err == nil {
			return apperr.Errorf(apperr.Conflict, "consent request %s to this farmer is still awaiting an answer", open)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("look up open requests: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO consent.requests (id, organization_id, farmer_id, scopes, duration_days, purpose, requested_by, request_id, requested_at, answer_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			ev.ConsentID, ev.OrganizationID, ev.FarmerID, ev.Scopes, ev.DurationDays, ev.Purpose, ev.RequestedBy,
			c.Response().Header().Get(echo.HeaderXRequestID), ev.RequestedAt, ev.AnswerBy); err != nil {
			return fmt.Errorf("store consent request: %w", err)
		}
		return addEvent(ctx, tx, ev.ConsentID, "requested", ev, ev.RequestedBy, now)
	})
	if err != nil {
		return err
	}
	// Journal now; the sweeper retries if the journal is away.
	if err := s.journalEvents(ctx); err != nil {
		s.logger.WarnContext(ctx, "consent request stored; journaling deferred to the sweeper", "consent_id", ev.ConsentID, "err", err)
	}
	out, err := s.load(ctx, p.OrganizationID, ev.ConsentID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

// Consent is a consent as its grantee sees it: requested or captured on
// the phone, with its status and the journal entries of its state changes.
type Consent struct {
	ID             string `json:"id"`
	FarmerID       string `json:"farmer_id"`
	OrganizationID string `json:"organization_id"`
	Status         string `json:"status"`
	// Scopes are what the consent covers: the granted scopes once the
	// farmer answered, the requested ones until then.
	Scopes []string `json:"scopes"`
	// ExpiresAt is when the granted consent ends (absent until granted).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`

	Request *RequestInfo `json:"request,omitempty"`

	AuthorisedAt    *time.Time `json:"authorised_at,omitempty"`
	GrantedRecordID *string    `json:"granted_record_id,omitempty"`
	RevokedAt       *time.Time `json:"revoked_at,omitempty"`
	RevokeReason    *string    `json:"revoke_reason,omitempty"`
	RejectedAt      *time.Time `json:"rejected_at,omitempty"`
	RejectReason    *string    `json:"reject_reason,omitempty"`

	// Receipt is the journal receipt of the granting record (GET by id
	// only, once journaled and checkpointed): proof that the consent was
	// given, verifiable offline (`tani verify`).
	Receipt *verify.Receipt `json:"receipt,omitempty"`
	// Journal lists the journal entries of the consent's state changes,
	// oldest first (GET by id only).
	Journal []JournalEntry `json:"journal,omitempty"`

	since time.Time
	// record ids of the signed records, for Journal.
	refusedRecordID, revokedRecordID *string
}

// RequestInfo is what the organization asked for.
type RequestInfo struct {
	Scopes       []string  `json:"scopes"`
	DurationDays int       `json:"duration_days"`
	Purpose      string    `json:"purpose"`
	RequestedAt  time.Time `json:"requested_at"`
	RequestedBy  string    `json:"requested_by"`
	AnswerBy     time.Time `json:"answer_by"`
}

// JournalEntry points at the journal entry of one state change.
type JournalEntry struct {
	Event      string `json:"event"` // requested, granted, refused, revoked, request_expired, expired
	RecordID   string `json:"record_id"`
	Revision   int64  `json:"revision"`
	ReceiptURL string `json:"receipt_url"`
	// Journaled is false while the entry awaits the journal (attest
	// verifies a signed record first; the sweeper retries).
	Journaled bool `json:"journaled"`
}

// ReceiptURL is where the journal serves a record's receipt.
func ReceiptURL(recordID string, revision int64) string {
	u := "/ledger/v1/records/" + recordID + "/receipt"
	if revision > 1 {
		u += "?revision=" + strconv.FormatInt(revision, 10)
	}
	return u
}

// consentQuery joins an organization's requests ($1) with its grants and
// the farmer's refusals, and computes each consent's status. %s filters
// both sides (r.…, g.…).
const consentQuery = `
	WITH r AS (SELECT * FROM consent.requests WHERE organization_id = $1 %[1]s),
	     g AS (SELECT * FROM ingest.consent_grants WHERE grantee_org_id = $1 %[2]s),
	     c AS (
	SELECT coalesce(r.id, g.consent_id) AS id, coalesce(r.farmer_id, g.farmer_id) AS farmer_id,
	       r.scopes AS requested_scopes, r.duration_days, r.purpose, r.requested_at, r.requested_by, r.answer_by,
	       g.scopes AS granted_scopes, g.granted_at, g.expires_at, g.granted_record_id, g.revoked_at, g.revoke_reason, g.revoked_record_id,
	       f.refused_at, f.reason AS refuse_reason, f.refused_record_id,
	       coalesce(r.requested_at, g.granted_at) AS since,
	       CASE
	         WHEN g.consent_id IS NOT NULL THEN
	           CASE WHEN g.revoked_at IS NOT NULL AND g.revoked_at <= now() THEN 'revoked'
	                WHEN g.expires_at <= now() THEN 'expired'
	                ELSE 'authorised' END
	         WHEN f.refused_record_id IS NOT NULL THEN 'rejected'
	         WHEN r.answer_by <= now() THEN 'expired'
	         ELSE 'awaiting_authorisation'
	       END AS status
	FROM r FULL JOIN g ON g.consent_id = r.id AND g.farmer_id = r.farmer_id
	LEFT JOIN LATERAL (
	    SELECT x.refused_at, x.reason, x.refused_record_id FROM ingest.consent_refusals x
	    WHERE x.consent_id = r.id AND x.farmer_id = r.farmer_id AND x.grantee_org_id = r.organization_id
	    ORDER BY x.refused_at LIMIT 1) f ON true)
	SELECT id::text, farmer_id::text, status, requested_scopes, duration_days, purpose, requested_at, requested_by, answer_by,
	       granted_scopes, granted_at, expires_at, granted_record_id::text, revoked_at, revoke_reason, revoked_record_id::text,
	       refused_at, refuse_reason, refused_record_id::text, since
	FROM c`

func scanConsent(row pgx.Row, orgID string) (Consent, error) {
	var v Consent
	var reqScopes, grantScopes []string
	var duration *int
	var purpose, requestedBy *string
	var requestedAt, answerBy *time.Time
	err := row.Scan(&v.ID, &v.FarmerID, &v.Status, &reqScopes, &duration, &purpose, &requestedAt, &requestedBy, &answerBy,
		&grantScopes, &v.AuthorisedAt, &v.ExpiresAt, &v.GrantedRecordID, &v.RevokedAt, &v.RevokeReason, &v.revokedRecordID,
		&v.RejectedAt, &v.RejectReason, &v.refusedRecordID, &v.since)
	if err != nil {
		return v, err
	}
	v.OrganizationID = orgID
	if requestedAt != nil {
		v.Request = &RequestInfo{Scopes: reqScopes, DurationDays: *duration, Purpose: *purpose, RequestedAt: *requestedAt, RequestedBy: *requestedBy, AnswerBy: *answerBy}
	}
	v.Scopes = grantScopes
	if v.Scopes == nil {
		v.Scopes = reqScopes
	}
	if v.GrantedRecordID == nil { // a refusal answers a request; it grants nothing
		v.AuthorisedAt = nil
	}
	return v, nil
}

// load returns one of orgID's consents, or NotFound (also for another
// organization's: existence must not leak).
func (s *Service) load(ctx context.Context, orgID, id string) (Consent, error) {
	q := fmt.Sprintf(consentQuery, "AND id = $2", "AND consent_id = $2")
	v, err := scanConsent(s.pool.QueryRow(ctx, q, orgID, id), orgID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Consent{}, apperr.Errorf(apperr.NotFound, "no consent with this id for your organization")
	}
	if err != nil {
		return Consent{}, fmt.Errorf("load consent %s: %w", id, err)
	}
	if err := s.withJournal(ctx, &v); err != nil {
		return Consent{}, err
	}
	return v, nil
}

// withJournal fills in the journal entries of v's state changes and the
// granting record's receipt.
func (s *Service) withJournal(ctx context.Context, v *Consent) error {
	rows, err := s.pool.Query(ctx, `SELECT event, revision, leaf_index IS NOT NULL, occurred_at FROM consent.events WHERE consent_id = $1 ORDER BY revision`, v.ID)
	if err != nil {
		return fmt.Errorf("consent events of %s: %w", v.ID, err)
	}
	type at struct {
		e JournalEntry
		t time.Time
	}
	var entries []at
	err = forEach(rows, func(r pgx.Rows) error {
		var e at
		e.e.RecordID = v.ID
		if err := r.Scan(&e.e.Event, &e.e.Revision, &e.e.Journaled, &e.t); err != nil {
			return err
		}
		e.e.ReceiptURL = ReceiptURL(v.ID, e.e.Revision)
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("consent events of %s: %w", v.ID, err)
	}
	signed := func(event string, recordID *string, t *time.Time) {
		if recordID == nil || t == nil {
			return
		}
		entries = append(entries, at{JournalEntry{Event: event, RecordID: *recordID, Revision: 1, ReceiptURL: ReceiptURL(*recordID, 1)}, *t})
	}
	signed("granted", v.GrantedRecordID, v.AuthorisedAt)
	signed("refused", v.refusedRecordID, v.RejectedAt)
	signed("revoked", v.revokedRecordID, v.RevokedAt)
	slices.SortStableFunc(entries, func(a, b at) int { return a.t.Compare(b.t) })
	v.Journal = make([]JournalEntry, len(entries))
	var signedIDs []string
	for i, e := range entries {
		v.Journal[i] = e.e
		if e.e.Event == "granted" || e.e.Event == "refused" || e.e.Event == "revoked" {
			signedIDs = append(signedIDs, e.e.RecordID)
		}
	}
	if len(signedIDs) > 0 {
		// Signed records are journaled by attest once verified.
		rows, err := s.pool.Query(ctx, `SELECT record_id::text FROM ledger.entries WHERE type = 'revision' AND record_id = ANY($1)`, signedIDs)
		if err != nil {
			return fmt.Errorf("journal entries of consent %s: %w", v.ID, err)
		}
		in := map[string]bool{}
		if err := forEach(rows, func(r pgx.Rows) error {
			var id string
			err := r.Scan(&id)
			in[id] = true
			return err
		}); err != nil {
			return fmt.Errorf("journal entries of consent %s: %w", v.ID, err)
		}
		for i := range v.Journal {
			if !v.Journal[i].Journaled && in[v.Journal[i].RecordID] {
				v.Journal[i].Journaled = true
			}
		}
	}
	if v.GrantedRecordID != nil {
		r, err := s.journal.Receipt(ctx, *v.GrantedRecordID, 1)
		switch {
		case err == nil:
			v.Receipt = r
		case apperr.Is(err, apperr.NotFound) || apperr.Is(err, apperr.Unavailable) || apperr.Is(err, apperr.Conflict):
			// not journaled or not checkpointed yet: Journal says so
		default:
			return fmt.Errorf("receipt of consent %s: %w", v.ID, err)
		}
	}
	return nil
}

func (s *Service) getConsent(c echo.Context) error {
	p, _ := identity.PrincipalOf(c)
	id := c.Param("id")
	if !validate.LowerUUID(id) {
		return apperr.Fields("bad consent id", apperr.FieldError{Field: "id", Message: "must be a lowercase UUID"})
	}
	v, err := s.load(c.Request().Context(), p.OrganizationID, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// maxListLimit bounds a page of consents.
const maxListLimit = 500

// listConsents: GET /consents?status=&farmer_id=&limit=&cursor= — the
// caller's consents, newest first.
func (s *Service) listConsents(c echo.Context) error {
	p, _ := identity.PrincipalOf(c)
	q := c.QueryParams()
	var fields []apperr.FieldError
	args := []any{p.OrganizationID}
	rFilter, gFilter, outer := "", "", []string{}
	if v := q.Get("farmer_id"); v != "" {
		if !validate.LowerUUID(v) {
			fields = append(fields, apperr.FieldError{Field: "farmer_id", Message: "must be a lowercase UUID"})
		} else {
			args = append(args, v)
			rFilter = fmt.Sprintf("AND farmer_id = $%d", len(args))
			gFilter = rFilter
		}
	}
	if v := q.Get("status"); v != "" {
		if !slices.Contains(Statuses, v) {
			fields = append(fields, apperr.FieldError{Field: "status", Message: "must be one of: " + strings.Join(Statuses, ", ")})
		} else {
			args = append(args, v)
			outer = append(outer, fmt.Sprintf("status = $%d", len(args)))
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			fields = append(fields, apperr.FieldError{Field: "limit", Message: fmt.Sprintf("must be 1 to %d", maxListLimit)})
		}
		limit = n
	}
	if v := q.Get("cursor"); v != "" {
		since, id, ok := parseCursor(v)
		if !ok {
			fields = append(fields, apperr.FieldError{Field: "cursor", Message: "is not a cursor this API gave"})
		} else {
			args = append(args, since, id)
			outer = append(outer, fmt.Sprintf("(since, id) < ($%d, $%d::uuid)", len(args)-1, len(args)))
		}
	}
	if len(fields) > 0 {
		return apperr.Fields("bad consent filter", fields...)
	}
	where := ""
	if len(outer) > 0 {
		where = " WHERE " + strings.Join(outer, " AND ")
	}
	args = append(args, limit+1)
	query := fmt.Sprintf(consentQuery, rFilter, gFilter) + where + fmt.Sprintf(" ORDER BY since DESC, id DESC LIMIT $%d", len(args))
	rows, err := s.pool.Query(c.Request().Context(), query, args...)
	if err != nil {
		return fmt.Errorf("list consents: %w", err)
	}
	out := []Consent{}
	if err := forEach(rows, func(r pgx.Rows) error {
		v, err := scanConsent(r, p.OrganizationID)
		out = append(out, v)
		return err
	}); err != nil {
		return fmt.Errorf("list consents: %w", err)
	}
	page := struct {
		Consents   []Consent `json:"consents"`
		NextCursor string    `json:"next_cursor,omitempty"`
	}{Consents: out}
	if len(out) > limit {
		last := out[limit-1]
		page.Consents, page.NextCursor = out[:limit], makeCursor(last.since, last.ID)
	}
	return c.JSON(http.StatusOK, page)
}

func makeCursor(since time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(since.UTC().Format(time.RFC3339Nano) + "|" + id))
}

func parseCursor(s string) (time.Time, string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", false
	}
	ts, id, ok := strings.Cut(string(b), "|")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || !validate.LowerUUID(id) {
		return time.Time{}, "", false
	}
	return t, id, true
}

// forEach calls f for every row and closes rows.
func forEach(rows pgx.Rows, f func(pgx.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// marshal is json.Marshal for the journal's payloads (a map or struct of
// plain values cannot fail).
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
