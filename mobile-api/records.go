package mobileapi

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/postgres"
)

// RecordStatus is what a device learns about a record it sent.
type RecordStatus struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Status     string    `json:"status"` // received, ingested (and later verified, flagged, rejected)
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
	err := s.pool.QueryRow(c.Request().Context(), `
		SELECT r.id::text, r.type, coalesce(s.status, 'received'), s.reason, r.received_at, coalesce(s.updated_at, r.received_at)
		FROM mobile.received r
		LEFT JOIN ingest.record_status s ON s.id = r.id
		WHERE r.id = $1 AND r.agent_id = $2`, id, auth.ClaimsOf(c).Subject).Scan(&st.ID, &st.Type, &st.Status, &st.Reason, &st.ReceivedAt, &st.UpdatedAt)
	if err != nil {
		return postgres.MapError(err, "you sent no record with this id", "")
	}
	return c.JSON(http.StatusOK, st)
}
