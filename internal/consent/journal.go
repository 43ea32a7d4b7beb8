package consent

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/validate"
	"github.com/tani-platform/tani/ledger"
)

// Journal kinds of the state changes the consent service journals itself
// (record id: the consent id). The others are signed records journaled
// by attest: consent.granted, consent.refused, consent.revoked.
const (
	KindRequested      = "consent.requested"
	KindRequestExpired = "consent.request_expired"
	KindExpired        = "consent.expired"
)

// addEvent records a state change in tx, to be journaled as revision
// (its consent's next) of record consentID.
func addEvent(ctx context.Context, tx pgx.Tx, consentID, event string, payload any, sigref string, at time.Time) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO consent.events (consent_id, event, revision, payload, signature_ref, occurred_at)
		SELECT $1, $2, coalesce((SELECT max(revision) FROM consent.events WHERE consent_id = $1), 0) + 1, $3, $4, $5
		ON CONFLICT DO NOTHING`, consentID, event, marshal(payload), sigref, at)
	if err != nil {
		return fmt.Errorf("record consent event %s of %s: %w", event, consentID, err)
	}
	return nil
}

// Sweep records the expiries that have passed — requests nobody answered
// by answer_by, granted consents past expires_at — and journals every
// state change not yet journaled. It is idempotent: processes may sweep
// at once.
//
// It misses no expiry, however long no process swept (an outage of
// months) and however late a consent reached Tani (a grant synced from a
// phone after its own expiry): a process's first sweep, and one every
// fullSweepEvery after, looks back without limit; the sweeps in between
// look back only to the start of the last full one (checking every
// expired consent ever costs ~4 times a window's sweep; see
// BenchmarkSweep). A grant that arrives already expired before that
// start is recorded by the next full sweep, within fullSweepEvery.
func (s *Service) Sweep(ctx context.Context) error {
	now := s.now().UTC().Truncate(time.Microsecond)
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	full := s.lastFull.IsZero() || now.Sub(s.lastFull) >= fullSweepEvery
	since := time.Time{} // the beginning of time: a full sweep
	if !full {
		since = s.lastFull.Add(-time.Minute) // a margin for clocks between processes
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := forgetLate(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO consent.events (consent_id, event, revision, payload, signature_ref, occurred_at)
			SELECT r.id, 'request_expired', coalesce((SELECT max(revision) FROM consent.events e WHERE e.consent_id = r.id), 0) + 1,
			       convert_to(json_build_object('consent_id', r.id, 'event', 'request_expired', 'organization_id', r.organization_id,
			                                    'farmer_id', r.farmer_id, 'answer_by', r.answer_by)::text, 'UTF8'),
			       'consent-service', r.answer_by
			FROM consent.requests r
			WHERE r.answer_by <= $1 AND r.answer_by > $2
			  AND NOT EXISTS (SELECT 1 FROM ingest.consent_grants g WHERE g.consent_id = r.id)
			  AND NOT EXISTS (SELECT 1 FROM ingest.consent_refusals f WHERE f.consent_id = r.id)
			  AND NOT EXISTS (SELECT 1 FROM consent.events e WHERE e.consent_id = r.id AND e.event = 'request_expired')
			  AND NOT EXISTS (SELECT 1 FROM consent.erasures x WHERE x.farmer_id = r.farmer_id)
			ON CONFLICT DO NOTHING`, now, since); err != nil {
			return fmt.Errorf("record expired requests: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO consent.events (consent_id, event, revision, payload, signature_ref, occurred_at)
			SELECT g.consent_id, 'expired', coalesce((SELECT max(revision) FROM consent.events e WHERE e.consent_id = g.consent_id), 0) + 1,
			       convert_to(json_build_object('consent_id', g.consent_id, 'event', 'expired', 'organization_id', g.grantee_org_id,
			                                    'farmer_id', g.farmer_id, 'granted_record_id', g.granted_record_id, 'expires_at', g.expires_at)::text, 'UTF8'),
			       'consent-service', g.expires_at
			FROM ingest.consent_grants g
			WHERE g.expires_at <= $1 AND g.expires_at > $2 AND (g.revoked_at IS NULL OR g.revoked_at > g.expires_at)
			  AND NOT EXISTS (SELECT 1 FROM consent.events e WHERE e.consent_id = g.consent_id AND e.event = 'expired')
			  AND NOT EXISTS (SELECT 1 FROM consent.erasures x WHERE x.farmer_id = g.farmer_id)
			ON CONFLICT DO NOTHING`, now, since); err != nil {
			return fmt.Errorf("record expired consents: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if full {
		s.lastFull = now
	}
	return s.journalEvents(ctx)
}

// fullSweepEvery is how often a sweep looks back without limit (see
// Sweep).
const fullSweepEvery = time.Hour

// journalEvents appends the state changes not yet in the journal, a
// thousand at a time, and records where each went.
func (s *Service) journalEvents(ctx context.Context) error {
	for {
		rows, err := s.pool.Query(ctx, `
			SELECT id, consent_id::text, event, revision, payload, signature_ref, occurred_at
			FROM consent.events WHERE leaf_index IS NULL ORDER BY id LIMIT 1000`)
		if err != nil {
			return fmt.Errorf("load unjournaled consent events: %w", err)
		}
		var ids []int64
		var revs []ledger.Revision
		if err := forEach(rows, func(r pgx.Rows) error {
			var id int64
			var event string
			rev := ledger.Revision{}
			if err := r.Scan(&id, &rev.RecordID, &event, &rev.Revision, &rev.Payload, &rev.SignatureRef, &rev.OccurredAt); err != nil {
				return err
			}
			rev.Kind = "consent." + event
			ids, revs = append(ids, id), append(revs, rev)
			return nil
		}); err != nil {
			return fmt.Errorf("load unjournaled consent events: %w", err)
		}
		if len(revs) == 0 {
			return nil
		}
		app, err := s.journal.Append(ctx, revs...)
		if err != nil {
			return fmt.Errorf("journal %d consent events: %w", len(revs), err)
		}
		idx := make([]int64, len(app))
		for i, a := range app {
			idx[i] = a.LeafIndex
		}
		if _, err := s.pool.Exec(ctx, `
			UPDATE consent.events e SET leaf_index = u.idx FROM unnest($1::bigint[], $2::bigint[]) AS u(id, idx)
			WHERE e.id = u.id AND e.leaf_index IS NULL`, ids, idx); err != nil {
			return fmt.Errorf("store consent event leaf indexes: %w", err)
		}
		if len(revs) < 1000 {
			return nil
		}
	}
}

// AccessEntry is one row of the access log, as operators and farmers see
// it.
type AccessEntry struct {
	ID int64     `json:"id"`
	At time.Time `json:"at"`
	// FarmerID is the farmer whose data was read; for a farmer since
	// erased it is empty and ErasureID names the erasure instead (the
	// row is kept, pseudonymised: see the consent module's erasure).
	FarmerID         string   `json:"farmer_id,omitempty"`
	ErasureID        *string  `json:"erasure_id,omitempty"`
	OrganizationID   string   `json:"organization_id"`
	OrganizationName string   `json:"organization_name"`
	OrganizationKind string   `json:"organization_kind"`
	Credential       string   `json:"credential"`
	Scopes           []string `json:"scopes"`
	Purpose          string   `json:"purpose"`
	RequestID        string   `json:"request_id"`
	Allowed          bool     `json:"allowed"`
	Reason           *string  `json:"reason,omitempty"`
	ConsentID        *string  `json:"consent_id,omitempty"`
	// GrantedRecordID is the signed consent.granted record the read was
	// allowed under; ReceiptURL is its journal receipt, the proof that
	// the consent was held at the time of the read.
	GrantedRecordID *string `json:"granted_record_id,omitempty"`
	ReceiptURL      string  `json:"receipt_url,omitempty"`
}

// accessLog: GET /admin/v1/access-log?farmer_id=&erasure_id=&organization_id=&allowed=&before=&limit=
// newest first, for operators handling a farmer's complaint, or a
// regulator's question about a farmer since erased (by the erasure's id).
func (s *Service) accessLog(c echo.Context) error {
	q := c.QueryParams()
	var fields []apperr.FieldError
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	for _, f := range []string{"farmer_id", "erasure_id", "organization_id"} {
		if v := q.Get(f); v != "" {
			if !validate.LowerUUID(v) {
				fields = append(fields, apperr.FieldError{Field: f, Message: "must be a lowercase UUID"})
			} else {
				add(f+" = $%d", v)
			}
		}
	}
	if v := q.Get("allowed"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fields = append(fields, apperr.FieldError{Field: "allowed", Message: "must be true or false"})
		} else {
			add("allowed = $%d", b)
		}
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			fields = append(fields, apperr.FieldError{Field: "before", Message: "must be an access-log id"})
		} else {
			add("id < $%d", n)
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
		return apperr.Fields("bad access-log filter", fields...)
	}
	entries, err := readAccessLog(c.Request().Context(), s.pool, "consent.all_access_entries", where, args, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"entries": entries})
}

// Querier is what ReadAccessLog reads with (a pool or a transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ReadAccessLog returns up to limit access-log entries matching where
// (conditions over consent.access_entries with args), newest first. Rows
// of erased farmers are not among them.
func ReadAccessLog(ctx context.Context, q Querier, where []string, args []any, limit int) ([]AccessEntry, error) {
	return readAccessLog(ctx, q, "consent.access_entries", where, args, limit)
}

// readAccessLog is ReadAccessLog over view (access_entries, or
// all_access_entries with erased farmers' rows for operators).
func readAccessLog(ctx context.Context, q Querier, view string, where []string, args []any, limit int) ([]AccessEntry, error) {
	cond := "true"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	args = append(args, limit)
	rows, err := q.Query(ctx, `
		SELECT id, at, coalesce(farmer_id::text, ''), erasure_id::text, organization_id::text, organization_name, organization_kind, credential,
		       scopes, purpose, request_id, allowed, reason, consent_id::text, granted_record_id::text
		FROM `+view+` WHERE `+cond+fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("read access log: %w", err)
	}
	out := []AccessEntry{}
	err = forEach(rows, func(r pgx.Rows) error {
		var e AccessEntry
		if err := r.Scan(&e.ID, &e.At, &e.FarmerID, &e.ErasureID, &e.OrganizationID, &e.OrganizationName, &e.OrganizationKind, &e.Credential, &e.Scopes,
			&e.Purpose, &e.RequestID, &e.Allowed, &e.Reason, &e.ConsentID, &e.GrantedRecordID); err != nil {
			return err
		}
		if e.GrantedRecordID != nil {
			e.ReceiptURL = ReceiptURL(*e.GrantedRecordID, 1)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read access log: %w", err)
	}
	return out, nil
}
