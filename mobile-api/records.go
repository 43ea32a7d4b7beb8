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
	Status     string    `json:"status"` // received, incomplete, ingested, then attest's journaling (verified, receipt not yet available), verified (journaled), flagged or rejected (or ingest's rejected)
	Reason     *string   `json:"reason,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func (s *Service) recordStatus(c echo.Context) error {
	id := c.Param("id")
	if _, err := uuid.Parse(id); err != nil {
		return apperr.Fields("invalid record id", apperr.FieldError{Field: "id", Message: "must be a UUID"})
	}
	var st RecordStatus
	var missing []string
	err := s.pool.QueryRow(c.Request().Context(), `
		SELECT r.id::text, r.type,
			coalesce(a.status, s.status, 'received'),
			CASE WHEN a.status IS NOT NULL THEN a.reason ELSE s.reason END,
			r.received_at, coalesce(a.updated_at, s.updated_at, r.received_at),
			ARRAY(SELECT rm.sha256 FROM mobile.received_media rm
				WHERE rm.record_id = r.id AND NOT EXISTS (SELECT 1 FROM mobile.media m WHERE m.sha256 = rm.sha256)
				ORDER BY rm.sha256)
		FROM mobile.received r
		LEFT JOIN ingest.record_status s ON s.id = r.id
		-- attest's verdict, once there is one; while its rules are pending
		-- (or erroring) the phone keeps seeing ingest's status.
		LEFT JOIN attest.record_status a ON a.id = r.id AND a.status <> 'pending'
		WHERE r.id = $1 AND r.agent_id = $2`, id, auth.ClaimsOf(c).Subject).Scan(&st.ID, &st.Type, &st.Status, &st.Reason, &st.ReceivedAt, &st.UpdatedAt, &missing)
	if err != nil {
		return postgres.MapError(err, "you sent no record with this id", "")
	}
	// Missing media outweigh every status but rejected: the agent still has
	// something to do (upload them), unless the record was refused anyway.
	if len(missing) > 0 && st.Status != "rejected" {
		reason := fmt.Sprintf("waiting for media %s: upload it to /mobile/v1/media/", strings.Join(missing, ", "))
		st.Status, st.Reason = Incomplete, &reason
	}
	return c.JSON(http.StatusOK, st)
}
