package erasure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
)

// Routes mounts the operators' API on r.Admin (/admin/v1, operator token).
func (s *Service) Routes(r httpserver.Router) {
	admin := r.Admin
	admin.POST("/farmers/:id/erasure", s.request)
	admin.GET("/farmers/:id/erasure", s.status)
}

// Request is the body of POST /farmers/{id}/erasure. Both fields are
// journaled and so public to every auditor: name the legal ground and the
// ticket, never the farmer.
type Request struct {
	Reason      string `json:"reason" validate:"required,min=3,max=500"`
	RequestedBy string `json:"requested_by" validate:"required,min=1,max=200"`
}

// Owners are the owners of farmer data an erasure waits for, in the order
// the status lists them.
var Owners = []string{"mobile-api", "ingest", "attest", "webhooks", "consent", "lending", "marketplace", "ledger"}

// Erasure states.
const (
	StateRequested  = "requested"   // stored; no owner has started yet
	StateInProgress = "in_progress" // some owner has started, not every one is done
	StateComplete   = "complete"    // journaled, and every owner has erased its data
	StatePending    = "pending"     // an owner has not started
)

// Status is an erasure as the operator follows it.
type Status struct {
	ErasureID   string    `json:"erasure_id"`
	FarmerID    string    `json:"farmer_id"`
	Reason      string    `json:"reason"`
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	// LeafIndex is the journal entry of the request, once journaled.
	LeafIndex *int64 `json:"leaf_index"`
	// Published is true once the request is on the ERASURE stream.
	Published bool            `json:"published"`
	State     string          `json:"state"`
	Owners    []OwnerProgress `json:"owners"`
}

// OwnerProgress is how far one owner of farmer data has got.
type OwnerProgress struct {
	Owner       string     `json:"owner"`
	State       string     `json:"state"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	Attempts    int        `json:"attempts"`
	// LastError is why the last attempt failed, while it is retried.
	LastError *string `json:"last_error,omitempty"`
	// Erased says what was erased: counts of rows, messages and files, the
	// journal's erasure entry. Never the data.
	Erased json.RawMessage `json:"erased,omitempty"`
}

func (s *Service) request(c echo.Context) error {
	farmer, err := farmerParam(c)
	if err != nil {
		return err
	}
	var in Request
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	in.Reason, in.RequestedBy = strings.TrimSpace(in.Reason), strings.TrimSpace(in.RequestedBy)
	if err := c.Validate(&in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	id := uuid.NewString()
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO erasure.requests (id, farmer_id, reason, requested_by, requested_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (farmer_id) DO NOTHING`, id, farmer, in.Reason, in.RequestedBy, time.Now().UTC().Truncate(time.Microsecond))
	if err != nil {
		return fmt.Errorf("store erasure request: %w", err)
	}
	code := http.StatusAccepted
	if tag.RowsAffected() == 0 {
		code = http.StatusOK // asked before: this is that erasure
	} else {
		s.logger.InfoContext(ctx, "erasure requested", "erasure", id, "farmer", farmer)
		// Stored: the sweeper finishes what fails here, so the answer is
		// 202 either way.
		if err := s.advance(ctx, id); err != nil {
			s.logger.WarnContext(ctx, "erasure request not yet journaled or published; the sweeper retries", "erasure", id, "err", err)
		}
	}
	st, err := s.Status(ctx, farmer)
	if err != nil {
		return err
	}
	return c.JSON(code, st)
}

func (s *Service) status(c echo.Context) error {
	farmer, err := farmerParam(c)
	if err != nil {
		return err
	}
	st, err := s.Status(c.Request().Context(), farmer)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// Status returns the erasure of a farmer with every owner's progress, or
// NotFound if none was requested.
func (s *Service) Status(ctx context.Context, farmerID string) (Status, error) {
	r, err := s.load(ctx, s.pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM erasure.requests WHERE farmer_id = $1`, farmerID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Status{}, apperr.Errorf(apperr.NotFound, "no erasure was requested for farmer %s", farmerID)
	}
	if err != nil {
		return Status{}, fmt.Errorf("load erasure of %s: %w", farmerID, err)
	}
	st := Status{ErasureID: r.ID, FarmerID: r.FarmerID, Reason: r.Reason, RequestedBy: r.RequestedBy, RequestedAt: r.RequestedAt,
		LeafIndex: r.LeafIndex, Published: r.PublishedAt != nil}
	rows, err := s.pool.Query(ctx, `
		SELECT 'mobile-api', started_at, completed_at, attempts, last_error, erased FROM mobile.erasure_progress WHERE erasure_id = $1
		UNION ALL
		SELECT 'ingest', started_at, completed_at, attempts, last_error, erased FROM ingest.erasure_progress WHERE erasure_id = $1
		UNION ALL
		SELECT 'attest', started_at, completed_at, attempts, last_error, erased FROM attest.erasure_progress WHERE erasure_id = $1
		UNION ALL
		SELECT 'webhooks', started_at, completed_at, attempts, last_error, erased FROM webhooks.erasure_progress WHERE erasure_id = $1
		UNION ALL
		SELECT 'consent', started_at, completed_at, attempts, last_error, erased FROM consent.erasure_progress WHERE erasure_id = $1
		UNION ALL
		SELECT 'lending', started_at, completed_at, attempts, last_error, erased FROM lending.erasure_progress WHERE erasure_id = $1
		UNION ALL
		SELECT 'marketplace', started_at, completed_at, attempts, last_error, erased FROM marketplace.erasure_progress WHERE erasure_id = $1
		UNION ALL
		SELECT 'ledger', completed_at, completed_at, 1, NULL, jsonb_build_object('leaf_index', leaf_index, 'redacted', redacted)
		FROM ledger.erasure_progress WHERE erasure_id = $1::text`, r.ID)
	if err != nil {
		return Status{}, fmt.Errorf("load erasure progress of %s: %w", r.ID, err)
	}
	got := map[string]OwnerProgress{}
	var p OwnerProgress
	var erased []byte
	if _, err := pgx.ForEachRow(rows, []any{&p.Owner, &p.StartedAt, &p.CompletedAt, &p.Attempts, &p.LastError, &erased}, func() error {
		p.Erased = append(json.RawMessage(nil), erased...)
		got[p.Owner] = p
		return nil
	}); err != nil {
		return Status{}, fmt.Errorf("load erasure progress of %s: %w", r.ID, err)
	}
	done, started := 0, 0
	for _, name := range Owners {
		p, ok := got[name]
		switch {
		case !ok:
			p = OwnerProgress{Owner: name, State: StatePending}
		case p.CompletedAt != nil:
			p.State, p.LastError = StateComplete, nil
			done++
			started++
		default:
			p.State = StateInProgress
			started++
		}
		if len(p.Erased) == 0 || string(p.Erased) == "null" {
			p.Erased = nil
		}
		st.Owners = append(st.Owners, p)
	}
	switch {
	case done == len(Owners) && st.LeafIndex != nil:
		st.State = StateComplete
	case started > 0:
		st.State = StateInProgress
	default:
		st.State = StateRequested
	}
	return st, nil
}

func farmerParam(c echo.Context) (string, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return "", apperr.Fields("invalid farmer id", apperr.FieldError{Field: "id", Message: "must be a UUID"})
	}
	return id.String(), nil
}
