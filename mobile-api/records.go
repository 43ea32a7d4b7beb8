package mobileapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/postgres"
)

// Incomplete is the status of a record whose referenced media have not all
// been uploaded yet. It is kept, and becomes what ingest says once they
// arrive.
const Incomplete = "incomplete"

// RecordStatus is what a device learns about a record it sent.
type RecordStatus struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Status     string    `json:"status"` // received, incomplete, ingested, refused, then attest's journaling (verified, receipt not yet available), verified (journaled), flagged or rejected
	Reason     *string   `json:"reason,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// phoneStatus computes what the phone is told about the received records
// r selected by the WHERE clause appended to it, newest stage first:
//
//  1. attest's verdict (verified, flagged, rejected), once there is one;
//     while its rules are pending (or erroring) it is not a verdict;
//  2. refused after storage: a dead letter of the stored record (attest
//     refused it or gave up on it);
//  3. ingested, from ingest's view;
//  4. refused before storage: a dead letter of the submitted record
//     (ingest refused it or gave up on it);
//  5. received.
//
// So a refused record that an operator replays follows its new fate once
// it gets further than where it was refused. The columns are id, type,
// status, reason, received_at, updated_at.
const phoneStatus = `
	SELECT r.id::text AS id, r.type,
		CASE WHEN a.status IS NOT NULL THEN a.status
		     WHEN late.notice IS NOT NULL THEN 'refused'
		     WHEN s.status IS NOT NULL THEN s.status
		     WHEN early.notice IS NOT NULL THEN 'refused'
		     ELSE 'received' END AS status,
		CASE WHEN a.status IS NOT NULL THEN a.reason
		     WHEN late.notice IS NOT NULL THEN late.notice
		     WHEN s.status IS NOT NULL THEN s.reason
		     ELSE early.notice END AS reason,
		r.received_at,
		coalesce(a.updated_at, late.recorded_at, s.updated_at, early.recorded_at, r.received_at) AS updated_at
	FROM mobile.received r
	LEFT JOIN ingest.record_status s ON s.id = r.id
	LEFT JOIN attest.record_status a ON a.id = r.id AND a.status <> 'pending'
	LEFT JOIN LATERAL (
		SELECT f.notice, f.recorded_at FROM mobile.refusals f
		WHERE f.record_id = r.id AND f.subject NOT LIKE 'farm.submitted.%'
		ORDER BY f.id DESC LIMIT 1) AS late ON true
	LEFT JOIN LATERAL (
		SELECT f.notice, f.recorded_at FROM mobile.refusals f
		WHERE f.record_id = r.id AND f.subject LIKE 'farm.submitted.%'
		ORDER BY f.id DESC LIMIT 1) AS early ON true`

func (s *Service) recordStatus(c echo.Context) error {
	id := c.Param("id")
	if _, err := uuid.Parse(id); err != nil {
		return apperr.Fields("invalid record id", apperr.FieldError{Field: "id", Message: "must be a UUID"})
	}
	var st RecordStatus
	var missing []string
	err := s.pool.QueryRow(c.Request().Context(), `
		SELECT st.id, st.type, st.status, st.reason, st.received_at, st.updated_at,
			ARRAY(SELECT rm.sha256 FROM mobile.received_media rm
				WHERE rm.record_id = st.id::uuid AND NOT EXISTS (SELECT 1 FROM mobile.media m WHERE m.sha256 = rm.sha256)
				ORDER BY rm.sha256)
		FROM (`+phoneStatus+`
			WHERE r.id = $1 AND r.agent_id = $2) AS st`, id, auth.ClaimsOf(c).Subject).
		Scan(&st.ID, &st.Type, &st.Status, &st.Reason, &st.ReceivedAt, &st.UpdatedAt, &missing)
	if err != nil {
		return postgres.MapError(err, "you sent no record with this id", "")
	}
	// Missing media outweigh every status but a refusal: the agent still
	// has something to do (upload them), unless the record was refused
	// anyway.
	if len(missing) > 0 && st.Status != "rejected" && st.Status != Refused {
		reason := fmt.Sprintf("waiting for media %s: upload it to /mobile/v1/media/", strings.Join(missing, ", "))
		st.Status, st.Reason = Incomplete, &reason
	}
	return c.JSON(http.StatusOK, st)
}
