package attest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger"
)

// Review states, as field teams know them from ODK Central.
const (
	ReviewReceived  = "received"
	ReviewHasIssues = "has_issues"
	ReviewEdited    = "edited"
	ReviewApproved  = "approved"
	ReviewRejected  = "rejected"
)

// KindReviewDecision is the journal kind of a review transition; its
// record id is the review id.
const KindReviewDecision = "review.decision"

// Routes mounts the operators' API on r.Admin (/admin/v1, operator token).
func (s *Service) Routes(r httpserver.Router) {
	g := r.Admin
	g.GET("/reviews", s.listReviews)
	g.GET("/reviews/:id", s.getReview)
	g.POST("/reviews/:id/approve", s.approve)
	g.POST("/reviews/:id/reject", s.reject)
	g.POST("/reviews/:id/visits", s.requestVisit)
	g.GET("/attestations/:id", s.getAttestation)
	g.GET("/agents/quality", s.agentQuality)
}

// Review is one item of the queue.
type Review struct {
	ID        string          `json:"id"`
	RecordID  string          `json:"record_id"`
	Type      string          `json:"type"`
	AgentID   string          `json:"agent_id"`
	Region    string          `json:"region"`
	State     string          `json:"state"`
	Rules     []string        `json:"rules"`
	Reason    string          `json:"reason"`
	Results   json.RawMessage `json:"results"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	Events    []ReviewEvent   `json:"events,omitempty"`
	Visits    []Visit         `json:"visits,omitempty"`
}

// ReviewEvent is one audited transition.
type ReviewEvent struct {
	From      *string   `json:"from"`
	To        string    `json:"to"`
	Action    string    `json:"action"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
	LeafIndex *int64    `json:"leaf_index,omitempty"`
}

// Visit is a second-agent visit task.
type Visit struct {
	ID             string  `json:"id"`
	AgentID        string  `json:"agent_id"`
	State          string  `json:"state"`
	EvidenceRecord *string `json:"evidence_record,omitempty"`
	Note           string  `json:"note"`
}

const reviewSelect = `
	SELECT v.id::text, v.record_id::text, r.type, r.agent_id::text, v.region, v.state, v.rules, coalesce(r.reason, ''), r.results, v.created_at, v.updated_at
	FROM attest.reviews v JOIN attest.records r USING (record_id)`

func scanReview(row pgx.Row) (Review, error) {
	var v Review
	err := row.Scan(&v.ID, &v.RecordID, &v.Type, &v.AgentID, &v.Region, &v.State, &v.Rules, &v.Reason, &v.Results, &v.CreatedAt, &v.UpdatedAt)
	return v, err
}

// listReviews: GET /reviews?state=&region=&rule=&agent_id=&type=&limit=
// newest first.
func (s *Service) listReviews(c echo.Context) error {
	q := c.QueryParams()
	where := []string{"true"}
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	var fields []apperr.FieldError
	if v := q.Get("state"); v != "" {
		switch v {
		case ReviewReceived, ReviewHasIssues, ReviewEdited, ReviewApproved, ReviewRejected:
			add("v.state = $%d", v)
		default:
			fields = append(fields, apperr.FieldError{Field: "state", Message: "must be received, has_issues, edited, approved or rejected"})
		}
	}
	if v := q.Get("region"); v != "" {
		add("v.region = $%d", v)
	}
	// A filter value that can never match is a typo, not an empty queue:
	// say so rather than answer "nothing to review".
	if v := q.Get("rule"); v != "" {
		if !slices.ContainsFunc(s.rules, func(r Rule) bool { return r.Name == v }) {
			fields = append(fields, apperr.FieldError{Field: "rule", Message: "is not a rule attest evaluates"})
		} else {
			add("$%d = ANY(v.rules)", v)
		}
	}
	if v := q.Get("type"); v != "" {
		if !record.KnownType(v) {
			fields = append(fields, apperr.FieldError{Field: "type", Message: "must be one of: " + strings.Join(record.TypeNames(), " ")})
		} else {
			add("r.type = $%d", v)
		}
	}
	if v := q.Get("agent_id"); v != "" {
		if _, err := uuid.Parse(v); err != nil {
			fields = append(fields, apperr.FieldError{Field: "agent_id", Message: "must be a UUID"})
		} else {
			add("r.agent_id = $%d", v)
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			fields = append(fields, apperr.FieldError{Field: "limit", Message: "must be 1 to 1000"})
		}
		limit = n
	}
	if len(fields) > 0 {
		return apperr.Fields("invalid review filter", fields...)
	}
	args = append(args, limit)
	rows, err := s.pool.Query(c.Request().Context(), reviewSelect+" WHERE "+strings.Join(where, " AND ")+
		fmt.Sprintf(" ORDER BY v.created_at DESC, v.id LIMIT $%d", len(args)), args...)
	if err != nil {
		return fmt.Errorf("list reviews: %w", err)
	}
	out := []Review{}
	if err := forEach(rows, func(r pgx.Rows) error {
		v, err := scanReview(r)
		out = append(out, v)
		return err
	}); err != nil {
		return fmt.Errorf("list reviews: %w", err)
	}
	return c.JSON(http.StatusOK, map[string]any{"reviews": out})
}

func (s *Service) getReview(c echo.Context) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	v, err := s.loadReview(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Service) loadReview(ctx context.Context, id string) (Review, error) {
	v, err := scanReview(s.pool.QueryRow(ctx, reviewSelect+" WHERE v.id = $1", id))
	if err != nil {
		return v, postgres.MapError(err, "no review with this id", "")
	}
	rows, err := s.pool.Query(ctx, `SELECT from_state, to_state, action, actor, reason, at, leaf_index FROM attest.review_events WHERE review_id = $1 ORDER BY id`, id)
	if err != nil {
		return v, fmt.Errorf("load review events: %w", err)
	}
	if err := forEach(rows, func(r pgx.Rows) error {
		var e ReviewEvent
		err := r.Scan(&e.From, &e.To, &e.Action, &e.Actor, &e.Reason, &e.At, &e.LeafIndex)
		v.Events = append(v.Events, e)
		return err
	}); err != nil {
		return v, fmt.Errorf("load review events: %w", err)
	}
	rows, err = s.pool.Query(ctx, `SELECT id::text, agent_id::text, state, evidence_record::text, coalesce(note, '') FROM attest.visits WHERE review_id = $1 ORDER BY created_at`, id)
	if err != nil {
		return v, fmt.Errorf("load visits: %w", err)
	}
	if err := forEach(rows, func(r pgx.Rows) error {
		var x Visit
		err := r.Scan(&x.ID, &x.AgentID, &x.State, &x.EvidenceRecord, &x.Note)
		v.Visits = append(v.Visits, x)
		return err
	}); err != nil {
		return v, fmt.Errorf("load visits: %w", err)
	}
	return v, nil
}

// DecisionRequest is the body of approve and reject. Who decides is the
// signed-in operator or reviewer (see reviewerOf), never a name in the
// body: Reviewer is accepted for old clients and ignored.
type DecisionRequest struct {
	// Deprecated: ignored; the decision is recorded under the caller's
	// user.
	Reviewer string `json:"reviewer,omitempty" validate:"max=200"`
	Reason   string `json:"reason" validate:"max=2000"`
}

// reviewer is who decides a review: a named user of the operator.
type reviewer struct {
	// actor is how the audit and the journal name them:
	// "<role>:<username> (user:<id>)".
	actor string
	// credential is "user:<id>" (attest.review_events.credential).
	credential string
}

// reviewerOf is the signed-in operator or reviewer calling a review route.
// The bootstrap operator token names nobody, so it cannot decide: a
// decision is journaled under a real identity (POST /admin/v1/auth/login).
func reviewerOf(c echo.Context) (reviewer, error) {
	p, ok := identity.PrincipalOf(c)
	if !ok || p.UserID == "" || p.Kind != identity.Operator {
		return reviewer{}, apperr.Errorf(apperr.Forbidden,
			"review decisions are journaled under a named operator or reviewer: sign in with POST /admin/v1/auth/login and use that token (the bootstrap operator token names nobody)")
	}
	return reviewer{actor: fmt.Sprintf("%s:%s (%s)", p.Role, p.Username, p.Credential()), credential: p.Credential()}, nil
}

func (s *Service) approve(c echo.Context) error {
	return s.decideReview(c, "approve", ReviewApproved, StatusVerified, false)
}

func (s *Service) reject(c echo.Context) error {
	return s.decideReview(c, "reject", ReviewRejected, StatusRejected, true)
}

func (s *Service) decideReview(c echo.Context, action, to, status string, reasonRequired bool) error {
	who, err := reviewerOf(c)
	if err != nil {
		return err
	}
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	var req DecisionRequest
	if err := httpserver.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := c.Validate(&req); err != nil {
		return err
	}
	if reasonRequired && strings.TrimSpace(req.Reason) == "" {
		return apperr.Fields("a rejection needs a reason", apperr.FieldError{Field: "reason", Message: "is required"})
	}
	ctx := c.Request().Context()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return s.transition(ctx, tx, id, action, who, req.Reason, to, status, "supervisor_review")
	})
	if err != nil {
		return err
	}
	if err := s.finish(ctx, id); err != nil {
		return err
	}
	v, err := s.loadReview(ctx, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// finish journals and announces what a review transition decided. A
// failure here is retried by the sweeper; the decision itself is stored.
func (s *Service) finish(ctx context.Context, reviewID string) error {
	var recordID string
	if err := s.pool.QueryRow(ctx, `SELECT record_id::text FROM attest.reviews WHERE id = $1`, reviewID).Scan(&recordID); err != nil {
		return fmt.Errorf("load review %s: %w", reviewID, err)
	}
	if err := s.journalReviewEvents(ctx); err != nil {
		return err
	}
	decided, err := s.loadDecided(ctx, []string{recordID})
	if err != nil {
		return err
	}
	if err := s.journalRecords(ctx, decided, nil); err != nil {
		return err
	}
	return s.announce(ctx, []string{recordID})
}

// decisionPayload is what the journal holds for a review transition.
type decisionPayload struct {
	ReviewID string    `json:"review_id"`
	RecordID string    `json:"record_id"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Action   string    `json:"action"`
	Actor    string    `json:"actor"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// transition moves a review to a final state in tx and applies it to the
// record: status, decision counter, provenance (method for the attributes
// the flags concerned) and, for a rejection, removal from the evidence
// other records are judged against. Only open reviews can be decided.
func (s *Service) transition(ctx context.Context, tx pgx.Tx, reviewID, action string, who reviewer, reason, to, status, method string) error {
	actor := who.actor
	var from, recordID string
	var rules []string
	err := tx.QueryRow(ctx, `SELECT state, record_id::text, rules FROM attest.reviews WHERE id = $1 FOR UPDATE`, reviewID).Scan(&from, &recordID, &rules)
	if err != nil {
		return postgres.MapError(err, "no review with this id", "")
	}
	if from == ReviewApproved || from == ReviewRejected {
		return apperr.Errorf(apperr.Conflict, "review %s is already %s", reviewID, from)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	payload, err := json.Marshal(decisionPayload{ReviewID: reviewID, RecordID: recordID, From: from, To: to, Action: action, Actor: actor, Reason: reason, At: now})
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE attest.reviews SET state = $2, revision = revision + 1, updated_at = $3 WHERE id = $1`, reviewID, to, now); err != nil {
		return fmt.Errorf("update review %s: %w", reviewID, err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO attest.review_events (review_id, from_state, to_state, action, actor, reason, revision, payload, at, credential)
		SELECT $1, $2, $3, $4, $5, $6, revision, $7, $8, nullif($9, '') FROM attest.reviews WHERE id = $1`,
		reviewID, from, to, action, actor, reason, payload, now, who.credential); err != nil {
		return fmt.Errorf("audit review %s: %w", reviewID, err)
	}
	why := fmt.Sprintf("%s by %s", map[string]string{ReviewApproved: "approved", ReviewRejected: "rejected"}[to], actor)
	if reason != "" {
		why += ": " + reason
	}
	tag, err := tx.Exec(ctx, `
		UPDATE attest.records SET status = $2, reason = $3, decision = decision + 1, decided_at = $4, updated_at = $4
		WHERE record_id = $1 AND status = 'flagged'`, recordID, status, why, now)
	if err != nil {
		return fmt.Errorf("apply review to record %s: %w", recordID, err)
	}
	if tag.RowsAffected() != 1 {
		return apperr.Errorf(apperr.Conflict, "record %s is not flagged", recordID)
	}
	if _, err := tx.Exec(ctx, `UPDATE attest.visits SET state = 'cancelled', closed_at = $2 WHERE review_id = $1 AND state = 'open'`, reviewID, now); err != nil {
		return fmt.Errorf("close visits of review %s: %w", reviewID, err)
	}
	if err := reviewDecided(ctx, tx, reviewID, recordID, to, method, now); err != nil {
		return err
	}
	if status == StatusRejected {
		for _, table := range []string{"farmers", "plots", "crop_cycles", "harvests", "sales"} {
			if _, err := tx.Exec(ctx, `DELETE FROM attest.`+table+` WHERE record_id = $1`, recordID); err != nil {
				return fmt.Errorf("drop rejected record from %s: %w", table, err)
			}
		}
		return nil
	}
	return s.approvedProvenance(ctx, tx, recordID, rules, method, actor, now)
}

// ReviewData is the data of a review.decided event.
type ReviewData struct {
	ReviewID   string    `json:"review_id"`
	RecordID   string    `json:"record_id"`
	RecordType string    `json:"record_type"`
	FarmerID   string    `json:"farmer_id"`
	Scope      string    `json:"scope"`
	Outcome    string    `json:"outcome"` // approved or rejected
	Method     string    `json:"method"`  // supervisor_review or second_agent_visit
	DecidedAt  time.Time `json:"decided_at"`
}

// reviewDecided records, in the transaction of the decision, the
// review.decided event for the organizations the farmer consented to
// (covering the record's scope). A review is decided once, so its id names
// the event. The reason is not in it: a supervisor's words may name people.
func reviewDecided(ctx context.Context, tx pgx.Tx, reviewID, recordID, to, method string, at time.Time) error {
	var typ, farmer string
	if err := tx.QueryRow(ctx, `SELECT type, coalesce(farmer_id::text, '') FROM attest.records WHERE record_id = $1`, recordID).Scan(&typ, &farmer); err != nil {
		return fmt.Errorf("load record %s: %w", recordID, err)
	}
	scope, ok := events.RecordScope(record.Type(typ))
	if !ok || farmer == "" {
		return nil
	}
	return events.Record(ctx, tx, events.Event{
		ID: events.DeriveID(events.ReviewDecided, reviewID), Type: events.ReviewDecided, FarmerID: farmer, Scope: scope, OccurredAt: at,
		Data: ReviewData{ReviewID: reviewID, RecordID: recordID, RecordType: typ, FarmerID: farmer, Scope: string(scope), Outcome: to, Method: method, DecidedAt: at},
	})
}

// approvedProvenance records how an approved record's attributes were
// established: the rules' own provenance, with the attributes the flags
// concerned now vouched for by the reviewer (or the visiting agent).
func (s *Service) approvedProvenance(ctx context.Context, tx pgx.Tx, recordID string, flagged []string, method, verifier string, at time.Time) error {
	var sealed []byte
	var agentID, deviceID string
	if err := tx.QueryRow(ctx, `SELECT sealed_record, agent_id::text, device_id::text FROM attest.records WHERE record_id = $1`, recordID).Scan(&sealed, &agentID, &deviceID); err != nil {
		return fmt.Errorf("load record %s: %w", recordID, err)
	}
	canonical, err := s.unseal(sealed)
	if err != nil {
		return fmt.Errorf("record %s: %w", recordID, err)
	}
	rec, problems := record.Check(s.validator, canonical, at.Add(time.Hour*24*365*10))
	env, payload := rec.Env, rec.Payload
	if len(problems) > 0 {
		return fmt.Errorf("stored record %s no longer checks: %v", recordID, problems)
	}
	th, err := loadThresholds(ctx, tx)
	if err != nil {
		return err
	}
	t, err := th.For(payload.Crop(), "*")
	if err != nil {
		return err
	}
	c := &Case{Env: env, Payload: payload, AgentID: agentID, DeviceID: deviceID, T: t}
	byAttr := map[string]bool{}
	for _, r := range s.rules {
		for _, f := range flagged {
			if r.Name == f {
				byAttr[r.Attribute] = true
			}
		}
	}
	var attrs, methods, verifiers []string
	var expires []*time.Time
	for _, p := range provenanceFor(c, at) {
		if byAttr[p.attribute] {
			p.method, p.verifier = method, verifier
		}
		delete(byAttr, p.attribute)
		attrs, methods, verifiers, expires = append(attrs, p.attribute), append(methods, p.method), append(verifiers, p.verifier), append(expires, p.expires)
	}
	for attr := range byAttr { // flagged attributes the type has no default provenance for
		attrs, methods, verifiers, expires = append(attrs, attr), append(methods, method), append(verifiers, verifier), append(expires, nil)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO attest.provenance (record_id, attribute, method, verifier, verified_at, expires_at)
		SELECT $1, u.attr, u.method, u.verifier, $5, u.expires FROM unnest($2::text[], $3::text[], $4::text[], $6::timestamptz[]) AS u(attr, method, verifier, expires)
		ON CONFLICT (record_id, attribute) DO UPDATE SET method = excluded.method, verifier = excluded.verifier,
		    verified_at = excluded.verified_at, expires_at = excluded.expires_at`,
		recordID, attrs, methods, verifiers, at, expires); err != nil {
		return fmt.Errorf("store provenance of %s: %w", recordID, err)
	}
	return nil
}

// journalReviewEvents appends review decisions not yet in the journal.
func (s *Service) journalReviewEvents(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `
		SELECT id, review_id::text, revision, payload, at, actor, credential FROM attest.review_events
		WHERE revision IS NOT NULL AND leaf_index IS NULL ORDER BY id LIMIT 1000`)
	if err != nil {
		return fmt.Errorf("load unjournaled review decisions: %w", err)
	}
	var ids []int64
	var revs []ledger.Revision
	if err := forEach(rows, func(r pgx.Rows) error {
		var id int64
		var actor string
		var credential *string
		rev := ledger.Revision{Kind: KindReviewDecision}
		if err := r.Scan(&id, &rev.RecordID, &rev.Revision, &rev.Payload, &rev.OccurredAt, &actor, &credential); err != nil {
			return err
		}
		switch {
		case credential != nil: // a named operator's or reviewer's session
			rev.SignatureRef = "session " + *credential
		case strings.HasPrefix(actor, "agent:"): // a second-agent visit: the agent's signed record decided
			rev.SignatureRef = actor
		default: // decided before named users, under the operator token
			rev.SignatureRef = "operator-token " + strings.Join(strings.Fields(actor), "_")
		}
		ids, revs = append(ids, id), append(revs, rev)
		return nil
	}); err != nil {
		return fmt.Errorf("load unjournaled review decisions: %w", err)
	}
	if len(revs) == 0 {
		return nil
	}
	app, err := s.journal.Append(ctx, revs...)
	if err != nil {
		return fmt.Errorf("journal %d review decisions: %w", len(revs), err)
	}
	idx := make([]int64, len(app))
	for i, a := range app {
		idx[i] = a.LeafIndex
	}
	if _, err := s.pool.Exec(ctx, `
		UPDATE attest.review_events e SET leaf_index = u.idx FROM unnest($1::bigint[], $2::bigint[]) AS u(id, idx)
		WHERE e.id = u.id AND e.leaf_index IS NULL`, ids, idx); err != nil {
		return fmt.Errorf("store review decision leaf indexes: %w", err)
	}
	return nil
}

// VisitRequest asks another agent of the region to visit. AgentID may be
// left out: the agent of the region with the fewest open visits is chosen.
// The requester is the signed-in operator or reviewer.
type VisitRequest struct {
	// Deprecated: ignored, like DecisionRequest.Reviewer.
	Reviewer string `json:"reviewer,omitempty" validate:"max=200"`
	AgentID  string `json:"agent_id" validate:"omitempty,uuid"`
	Note     string `json:"note" validate:"max=2000"`
}

// requestVisit: POST /reviews/{id}/visits. Only plot.mapped records can be
// corroborated automatically today (the visiting agent maps the plot
// again); the review stays has_issues until the visit closes it.
func (s *Service) requestVisit(c echo.Context) error {
	who, err := reviewerOf(c)
	if err != nil {
		return err
	}
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	var req VisitRequest
	if err := httpserver.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := c.Validate(&req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var visitID string
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var state, recordID, typ, region, agentID string
		var sealed []byte
		err := tx.QueryRow(ctx, `
			SELECT v.state, v.record_id::text, r.type, v.region, r.agent_id::text, r.sealed_record
			FROM attest.reviews v JOIN attest.records r USING (record_id) WHERE v.id = $1 FOR UPDATE OF v`, id).
			Scan(&state, &recordID, &typ, &region, &agentID, &sealed)
		if err != nil {
			return postgres.MapError(err, "no review with this id", "")
		}
		canonical, err := s.unseal(sealed)
		if err != nil {
			return err
		}
		if state == ReviewApproved || state == ReviewRejected {
			return apperr.Errorf(apperr.Conflict, "review %s is already %s", id, state)
		}
		if record.Type(typ) != record.TypePlotMapped {
			return apperr.Fields("second-agent visits corroborate plot mappings only",
				apperr.FieldError{Field: "id", Message: "the record is a " + typ + ", not a plot.mapped"})
		}
		visitor := req.AgentID
		if visitor == "" {
			err = tx.QueryRow(ctx, `
				SELECT d.agent_id::text FROM mobile.device_keys d
				LEFT JOIN attest.visits v ON v.agent_id = d.agent_id AND v.state = 'open'
				WHERE d.region = $1 AND d.agent_id <> $2 AND d.revoked_at IS NULL
				GROUP BY d.agent_id ORDER BY count(v.id), d.agent_id LIMIT 1`, region, agentID).Scan(&visitor)
			if errors.Is(err, pgx.ErrNoRows) {
				return apperr.Errorf(apperr.Conflict, "no other agent with an enrolled device in region %q", region)
			}
			if err != nil {
				return fmt.Errorf("choose visiting agent: %w", err)
			}
		} else {
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mobile.device_keys WHERE agent_id = $1 AND region = $2 AND revoked_at IS NULL)`, visitor, region).Scan(&ok); err != nil {
				return fmt.Errorf("check visiting agent: %w", err)
			}
			if !ok || visitor == agentID {
				return apperr.Fields("the visiting agent must be another agent of the region", apperr.FieldError{Field: "agent_id", Message: "is not another agent of region " + region})
			}
		}
		rec, problems := record.Check(s.validator, canonical, time.Now().AddDate(10, 0, 0))
		if len(problems) > 0 {
			return fmt.Errorf("stored record %s no longer checks: %v", rec.Env.ID, problems)
		}
		p := rec.Payload.(*record.PlotMapped)
		visitID = uuid.NewString()
		if _, err := tx.Exec(ctx, `
			INSERT INTO attest.visits (id, review_id, record_id, farmer_id, plot_id, agent_id, boundary, area_ha, state, note)
			SELECT $1, $2, $3, $4, $5, $6, g, ST_Area(g) / 10000, 'open', $8
			FROM ST_GeogFromText('SRID=4326;' || $7) AS g`,
			visitID, id, recordID, p.FarmerID, p.PlotID, visitor, p.Boundary.WKT(), req.Note); err != nil {
			return fmt.Errorf("create visit: %w", err)
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO attest.review_events (review_id, from_state, to_state, action, actor, reason, credential) VALUES ($1, $2, $2, 'visit_requested', $3, $4, $5)`,
			id, state, who.actor, "second-agent visit "+visitID+" by agent "+visitor+" "+req.Note, who.credential)
		return err
	})
	if err != nil {
		return err
	}
	v, err := s.loadReview(ctx, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

// corroborate closes open visits with the batch's plot mappings by the
// visiting agent: a boundary matching the one under review (intersection
// over union and area both within the area tolerance) approves the review
// as a second-agent visit; one that does not is recorded as contradicting
// and leaves the review to the supervisor.
func (s *Service) corroborate(ctx context.Context, tx pgx.Tx, fresh []Input, decided map[string]*Decision) ([]string, error) {
	var recs, plots, agents, wkts []string
	for _, in := range fresh {
		p, ok := in.Payload.(*record.PlotMapped)
		if !ok || decided[in.Env.ID].Status == StatusRejected || decided[in.Env.ID].Status == StatusPending {
			continue
		}
		recs, plots, agents, wkts = append(recs, in.Env.ID), append(plots, p.PlotID), append(agents, in.AgentID), append(wkts, p.Boundary.WKT())
	}
	if len(recs) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
		SELECT v.id::text, v.review_id::text, v.record_id::text, u.rec::text, u.agent::text, i.ha / nullif(v.area_ha + ST_Area(g) / 10000 - i.ha, 0), abs(ST_Area(g) / 10000 - v.area_ha) / v.area_ha,
		       (SELECT area_tolerance FROM attest.thresholds WHERE crop = '*' AND region = '*' ORDER BY version DESC LIMIT 1)
		FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) AS u(rec, plot, agent, wkt)
		CROSS JOIN LATERAL ST_GeogFromText('SRID=4326;' || u.wkt) AS g
		JOIN attest.visits v ON v.plot_id = u.plot AND v.agent_id = u.agent AND v.state = 'open'
		CROSS JOIN LATERAL (SELECT CASE WHEN ST_IsValid(g::geometry) THEN ST_Area(ST_Intersection(g, v.boundary)) / 10000 ELSE 0 END AS ha) AS i`,
		recs, plots, agents, wkts)
	if err != nil {
		return nil, fmt.Errorf("match visits: %w", err)
	}
	type match struct {
		visit, review, rec, agent, original string
		iou, areaOff, tol                   float64
	}
	var ms []match
	var approved []string
	if err := forEach(rows, func(r pgx.Rows) error {
		var m match
		var iou *float64
		if err := r.Scan(&m.visit, &m.review, &m.original, &m.rec, &m.agent, &iou, &m.areaOff, &m.tol); err != nil {
			return err
		}
		if iou != nil {
			m.iou = *iou
		}
		ms = append(ms, m)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("match visits: %w", err)
	}
	for _, m := range ms {
		ok := m.iou >= 1-m.tol && m.areaOff <= m.tol
		note := fmt.Sprintf("record %s: boundary overlap %.0f%%, area %.0f%% off (tolerance %.0f%%)", m.rec, m.iou*100, m.areaOff*100, m.tol*100)
		state := "contradicted"
		if ok {
			state = "corroborated"
		}
		if _, err := tx.Exec(ctx, `UPDATE attest.visits SET state = $2, evidence_record = $3, note = coalesce(note, '') || ' ' || $4, closed_at = now() WHERE id = $1`,
			m.visit, state, m.rec, note); err != nil {
			return nil, fmt.Errorf("close visit %s: %w", m.visit, err)
		}
		actor := "agent:" + m.agent
		if !ok {
			if _, err := tx.Exec(ctx, `
				INSERT INTO attest.review_events (review_id, from_state, to_state, action, actor, reason)
				SELECT id, state, state, 'visit_contradicted', $2, $3 FROM attest.reviews WHERE id = $1`, m.review, actor, note); err != nil {
				return nil, fmt.Errorf("audit visit %s: %w", m.visit, err)
			}
			continue
		}
		if err := s.transition(ctx, tx, m.review, "visit_corroborated", reviewer{actor: actor}, note, ReviewApproved, StatusVerified, "second_agent_visit"); err != nil {
			return nil, fmt.Errorf("approve review %s by visit: %w", m.review, err)
		}
		approved = append(approved, m.original)
	}
	return approved, nil
}

// getAttestation: GET /attestations/{record id}: the decision, every rule
// result and per-attribute provenance.
func (s *Service) getAttestation(c echo.Context) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var out struct {
		Decision
		Attempts   int          `json:"attempts"`
		LastError  *string      `json:"last_error,omitempty"`
		Provenance []Provenance `json:"provenance"`
	}
	err = s.pool.QueryRow(ctx, `
		SELECT record_id::text, type, agent_id::text, status, coalesce(reason, ''), results, coalesce(threshold_version, 0), leaf_index, decision, attempts, last_error
		FROM attest.records WHERE record_id = $1`, id).
		Scan(&out.RecordID, &out.Type, &out.AgentID, &out.Status, &out.Reason, &out.Results, &out.ThresholdVersion, &out.LeafIndex, &out.Decision.Decision, &out.Attempts, &out.LastError)
	if err != nil {
		return postgres.MapError(err, "no attestation for this record", "")
	}
	out.Provenance, err = s.Provenance(ctx, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// Provenance is how one attribute of a record was verified.
type Provenance struct {
	Attribute  string     `json:"attribute"`
	Method     string     `json:"method"`
	Verifier   string     `json:"verifier"`
	VerifiedAt time.Time  `json:"verified_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
}

// Provenance returns a record's per-attribute provenance.
func (s *Service) Provenance(ctx context.Context, recordID string) ([]Provenance, error) {
	rows, err := s.pool.Query(ctx, `SELECT attribute, method, verifier, verified_at, expires_at FROM attest.provenance WHERE record_id = $1 ORDER BY attribute`, recordID)
	if err != nil {
		return nil, fmt.Errorf("load provenance: %w", err)
	}
	out := []Provenance{}
	err = forEach(rows, func(r pgx.Rows) error {
		var p Provenance
		err := r.Scan(&p.Attribute, &p.Method, &p.Verifier, &p.VerifiedAt, &p.ExpiresAt)
		out = append(out, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load provenance: %w", err)
	}
	return out, nil
}

func uuidParam(c echo.Context, name string) (string, error) {
	v := c.Param(name)
	if _, err := uuid.Parse(v); err != nil {
		return "", apperr.Fields("invalid "+name, apperr.FieldError{Field: name, Message: "must be a UUID"})
	}
	return v, nil
}
