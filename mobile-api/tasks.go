package mobileapi

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/auth"
)

// Task is a second-agent visit a supervisor asked of this agent: go to the
// farmer, capture the record again (for a plot: walk it), and sync it. The
// disputed boundary is deliberately not sent, so the second walk is
// independent of the first.
type Task struct {
	ID        string    `json:"id"`
	RecordID  string    `json:"record_id"`
	FarmerID  *string   `json:"farmer_id,omitempty"`
	PlotID    *string   `json:"plot_id,omitempty"`
	Note      *string   `json:"note,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *Service) tasks(c echo.Context) error {
	rows, err := s.pool.Query(c.Request().Context(), `
		SELECT id::text, record_id::text, farmer_id::text, plot_id::text, note, created_at
		FROM attest.visit_tasks WHERE agent_id = $1 ORDER BY created_at`, auth.ClaimsOf(c).Subject)
	if err != nil {
		return err
	}
	tasks := []Task{}
	for rows.Next() {
		var t Task
		if err := rows.Scan(&t.ID, &t.RecordID, &t.FarmerID, &t.PlotID, &t.Note, &t.CreatedAt); err != nil {
			return err
		}
		tasks = append(tasks, t)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"tasks": tasks})
}
