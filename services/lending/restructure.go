package lending

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
)

// Restructuring is a proposal to extend a loan's due date.
type Restructuring struct {
	ID            string     `json:"id"`
	LoanID        string     `json:"loan_id"`
	Cause         string     `json:"cause"`    // harvest_shortfall, regional_shock
	Evidence      string     `json:"evidence"` // the harvest record id, or the shock id
	Detail        string     `json:"detail"`
	ExtensionDays int        `json:"extension_days"`
	State         string     `json:"state"` // proposed, accepted, declined
	DecidedBy     *string    `json:"decided_by"`
	Reason        *string    `json:"reason"`
	CreatedAt     time.Time  `json:"created_at"`
	DecidedAt     *time.Time `json:"decided_at"`
}

const restructuringColumns = `id::text, loan_id::text, cause, evidence, detail, extension_days, state, decided_by, reason, created_at, decided_at`

func scanRestructuring(r pgx.Row) (Restructuring, error) {
	var x Restructuring
	err := r.Scan(&x.ID, &x.LoanID, &x.Cause, &x.Evidence, &x.Detail, &x.ExtensionDays, &x.State, &x.DecidedBy, &x.Reason, &x.CreatedAt, &x.DecidedAt)
	return x, err
}

// listRestructurings: GET /loans/{id}/restructurings.
func (s *Service) listRestructurings(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if _, err := s.loadOwn(ctx, bank.OrganizationID, id); err != nil {
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+restructuringColumns+` FROM lending.restructurings WHERE loan_id = $1 ORDER BY created_at, id`, id)
	if err != nil {
		return fmt.Errorf("restructurings of loan %s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Restructuring, error) { return scanRestructuring(r) })
	if err != nil {
		return fmt.Errorf("restructurings of loan %s: %w", id, err)
	}
	if out == nil {
		out = []Restructuring{}
	}
	return c.JSON(http.StatusOK, map[string]any{"restructurings": out})
}

// RestructuringDecision accepts or declines a proposal.
type RestructuringDecision struct {
	Decision string `json:"decision" validate:"required,oneof=accept decline"`
	Reason   string `json:"reason" validate:"required,min=1,max=500"`
}

// decideRestructuring: POST /loans/{id}/restructurings/{rid}/decision.
// Accepting moves the due date by the proposal's extension (no extra
// interest) and the loan to restructured; both are journaled.
func (s *Service) decideRestructuring(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	rid, err := httpserver.PathUUID(c, "rid")
	if err != nil {
		return err
	}
	var req RestructuringDecision
	if err := s.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	actor := bank.Credential()
	var evs []loanEvent
	var out Restructuring
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		l, err := lockLoan(ctx, tx, bank.OrganizationID, id)
		if err != nil {
			return err
		}
		x, err := scanRestructuring(tx.QueryRow(ctx, `SELECT `+restructuringColumns+` FROM lending.restructurings WHERE id = $1 AND loan_id = $2 FOR UPDATE`, rid, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.Errorf(apperr.NotFound, "no restructuring %s of loan %s", rid, id)
		}
		if err != nil {
			return err
		}
		if x.State != "proposed" {
			return apperr.Errorf(apperr.Conflict, "restructuring %s was already %s", rid, x.State)
		}
		state := "declined"
		if req.Decision == "accept" {
			state = "accepted"
			if !slices.Contains(servicing, l.State) {
				return conflictMove(l, Restructured)
			}
			old := *l.DueOn
			due := old.AddDate(0, 0, x.ExtensionDays)
			if _, err := tx.Exec(ctx, `UPDATE lending.installments SET due_on = due_on + $2::int WHERE loan_id = $1`, id, x.ExtensionDays); err != nil {
				return fmt.Errorf("move schedule of loan %s: %w", id, err)
			}
			l.DueOn, l.Restructured = &due, true
			ev, err := s.transition(ctx, tx, l, move{To: Restructured, Actor: actor, Reason: req.Reason, Details: map[string]any{
				"restructuring_id": x.ID, "cause": x.Cause, "evidence": x.Evidence, "detail": x.Detail,
				"old_due_on": day(old), "new_due_on": day(due), "extension_days": x.ExtensionDays}})
			if err != nil {
				return err
			}
			evs = append(evs, ev)
			if err := saveLoan(ctx, tx, l); err != nil {
				return err
			}
		}
		out, err = scanRestructuring(tx.QueryRow(ctx, `UPDATE lending.restructurings SET state = $2, decided_by = $3, reason = $4, decided_at = $5
			WHERE id = $1 RETURNING `+restructuringColumns, rid, state, actor, req.Reason, s.now().UTC()))
		return err
	})
	if err != nil {
		return err
	}
	s.journalAfter(ctx, evs...)
	return c.JSON(http.StatusOK, out)
}

// ShockRequest declares a regional shock (operators, /admin/v1).
type ShockRequest struct {
	Region        string   `json:"region" validate:"required,min=1,max=100"`
	Crops         []string `json:"crops" validate:"required,min=1,unique,dive,crop"`
	Reason        string   `json:"reason" validate:"required,min=1,max=500"`
	StartsOn      string   `json:"starts_on" validate:"required,datetime=2006-01-02"`
	EndsOn        string   `json:"ends_on" validate:"required,datetime=2006-01-02"`
	ExtensionDays int      `json:"extension_days" validate:"gte=1,lte=365"`
	DeclaredBy    string   `json:"declared_by" validate:"required,min=1,max=100"`
}

// Shock is a declared regional shock.
type Shock struct {
	ID string `json:"id"`
	ShockRequest
	CreatedAt time.Time `json:"created_at"`
}

// declareShock: POST /admin/v1/lending/shocks. The next servicing pass
// proposes the extension to every loan of the region and crops falling
// due in the window, at every bank.
func (s *Service) declareShock(c echo.Context) error {
	var req ShockRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	starts, _ := time.Parse(time.DateOnly, req.StartsOn)
	ends, _ := time.Parse(time.DateOnly, req.EndsOn)
	if ends.Before(starts) {
		return apperr.Fields("invalid shock", apperr.FieldError{Field: "ends_on", Message: "must not be before starts_on"})
	}
	sh := Shock{ID: uuid.NewString(), ShockRequest: req}
	if err := s.pool.QueryRow(c.Request().Context(), `
		INSERT INTO lending.shocks (id, region, crops, reason, starts_on, ends_on, extension_days, declared_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at`,
		sh.ID, req.Region, req.Crops, req.Reason, starts, ends, req.ExtensionDays, req.DeclaredBy).Scan(&sh.CreatedAt); err != nil {
		return fmt.Errorf("declare shock: %w", err)
	}
	if err := s.proposeForShocks(c.Request().Context()); err != nil {
		s.logger.WarnContext(c.Request().Context(), "shock declared; proposals follow with the next servicing pass", "err", err)
	}
	return c.JSON(http.StatusCreated, sh)
}

// listShocks: GET /admin/v1/lending/shocks.
func (s *Service) listShocks(c echo.Context) error {
	rows, err := s.pool.Query(c.Request().Context(), `SELECT id::text, region, crops, reason, starts_on, ends_on, extension_days, declared_by, created_at
		FROM lending.shocks ORDER BY created_at DESC, id`)
	if err != nil {
		return fmt.Errorf("list shocks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Shock, error) {
		var sh Shock
		var starts, ends time.Time
		err := r.Scan(&sh.ID, &sh.Region, &sh.Crops, &sh.Reason, &starts, &ends, &sh.ExtensionDays, &sh.DeclaredBy, &sh.CreatedAt)
		sh.StartsOn, sh.EndsOn = starts.Format(time.DateOnly), ends.Format(time.DateOnly)
		return sh, err
	})
	if err != nil {
		return fmt.Errorf("list shocks: %w", err)
	}
	if out == nil {
		out = []Shock{}
	}
	return c.JSON(http.StatusOK, map[string]any{"shocks": out})
}
