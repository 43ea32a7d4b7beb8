package mobileapi

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
)

// Agent is a field agent's account (never with its password hash).
type Agent struct {
	ID             string    `json:"id"`
	OrganizationID string    `json:"organization_id"`
	Username       string    `json:"username"`
	Name           string    `json:"name"`
	Region         string    `json:"region"`
	Active         bool      `json:"active"`
	CreatedAt      time.Time `json:"created_at"`

	epoch int64 // token epoch (mobile.agents.token_epoch)
}

func (s *Service) createAgent(c echo.Context) error {
	var in struct {
		OrganizationID string `json:"organization_id" validate:"required,uuid"`
		Username       string `json:"username" validate:"required,min=3,max=64,alphanum"`
		Password       string `json:"password" validate:"required,min=10,max=72"`
		Name           string `json:"name" validate:"required,min=1,max=200"`
		Region         string `json:"region" validate:"required,min=2,max=100"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	// Agents work for field organizations: a bank's or distributor's
	// "agent" could capture records (and consents) about farmers whose
	// data its organization wants to read.
	var kind string
	err := s.pool.QueryRow(c.Request().Context(), `SELECT kind FROM identity.organizations WHERE id = $1`, in.OrganizationID).Scan(&kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.Fields("unknown organization", apperr.FieldError{Field: "organization_id", Message: "no such organization"})
	}
	if err != nil {
		return fmt.Errorf("load organization %s: %w", in.OrganizationID, err)
	}
	if kind != "field" {
		return apperr.Fields("agents belong to field organizations", apperr.FieldError{Field: "organization_id",
			Message: "is a " + kind + " organization; agents must belong to a field organization"})
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		return err
	}
	a := Agent{ID: uuid.NewString(), OrganizationID: in.OrganizationID, Username: in.Username, Name: in.Name, Region: in.Region, Active: true}
	err = s.pool.QueryRow(c.Request().Context(), `
		INSERT INTO mobile.agents (id, organization_id, username, password_hash, name, region)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
		a.ID, a.OrganizationID, a.Username, hash, a.Name, a.Region).Scan(&a.CreatedAt)
	if postgres.Code(err) == postgres.CodeForeignKeyViolation {
		return apperr.Fields("unknown organization", apperr.FieldError{Field: "organization_id", Message: "no such organization"})
	}
	if err != nil {
		return postgres.MapError(err, "", "this username is taken")
	}
	return c.JSON(http.StatusCreated, a)
}

func (s *Service) createAssignment(c echo.Context) error {
	var in struct {
		FarmerID string `json:"farmer_id" validate:"required,uuid"`
		AgentID  string `json:"agent_id" validate:"required,uuid"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	if erased, err := s.erasedFarmers(c.Request().Context(), []string{in.FarmerID}); err != nil {
		return err
	} else if erased.Has(in.FarmerID) {
		return apperr.Fields("farmer was erased", apperr.FieldError{Field: "farmer_id", Message: ErasedMessage})
	}
	_, err := s.pool.Exec(c.Request().Context(), `
		INSERT INTO mobile.assignments (farmer_id, agent_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, in.FarmerID, in.AgentID)
	if postgres.Code(err) == postgres.CodeForeignKeyViolation {
		return apperr.Fields("unknown agent", apperr.FieldError{Field: "agent_id", Message: "no such agent"})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, in)
}

// TokenPair is what login and refresh answer.
type TokenPair struct {
	AccessToken  string    `json:"access_token"`
	ExpiresAt    time.Time `json:"expires_at"`
	RefreshToken string    `json:"refresh_token"`
	AgentID      string    `json:"agent_id"`
}

func (s *Service) login(c echo.Context) error {
	var in struct {
		Username string `json:"username" validate:"required,max=64"`
		Password string `json:"password" validate:"required,max=72"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	attempt, err := s.logins.Begin(ctx, in.Username, s.address(c.Request()))
	if err != nil {
		return err
	}
	var a Agent
	var hash string
	err = s.pool.QueryRow(ctx, `SELECT id, organization_id, region, password_hash, active, token_epoch FROM mobile.agents WHERE username = $1`, in.Username).
		Scan(&a.ID, &a.OrganizationID, &a.Region, &hash, &a.Active, &a.epoch)
	if err != nil && err != pgx.ErrNoRows {
		return err
	}
	if !auth.CheckPassword(hash, in.Password) || !a.Active {
		return apperr.Errorf(apperr.Unauthorized, "wrong username or password")
	}
	if err := s.logins.Succeeded(ctx, attempt); err != nil {
		return err
	}
	pair, err := s.issue(c, a)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pair)
}

// forgetLoginFailures deletes, hourly, the login failures of names and
// addresses that have had none for the forget period, until ctx is done.
func (s *Service) forgetLoginFailures(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.logins.Forget(ctx); err != nil && ctx.Err() == nil {
				s.logger.WarnContext(ctx, "forget old agent login failures", "err", err)
			}
		}
	}
}

// refresh trades a refresh token for a new pair. Tokens are single-use:
// presenting a used one means it was copied, so every token of the agent is
// revoked — its refresh tokens, and its access tokens at once by moving
// its token epoch on (see RequireAgent) — and the phone must log in again.
func (s *Service) refresh(c echo.Context) error {
	var in struct {
		RefreshToken string `json:"refresh_token" validate:"required,max=100"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var a Agent
	var usedAt *time.Time
	var expires time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT a.id, a.organization_id, a.region, a.active, a.token_epoch, t.used_at, t.expires_at
		FROM mobile.refresh_tokens t JOIN mobile.agents a ON a.id = t.agent_id
		WHERE t.token_hash = $1`, auth.HashToken(in.RefreshToken)).Scan(&a.ID, &a.OrganizationID, &a.Region, &a.Active, &a.epoch, &usedAt, &expires)
	if err == pgx.ErrNoRows {
		return apperr.Errorf(apperr.Unauthorized, "unknown refresh token")
	}
	if err != nil {
		return err
	}
	if usedAt != nil {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE mobile.refresh_tokens SET used_at = now() WHERE agent_id = $1 AND used_at IS NULL`, a.ID); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE mobile.agents SET token_epoch = token_epoch + 1 WHERE id = $1`, a.ID)
			return err
		})
		if err != nil {
			s.logger.ErrorContext(ctx, "refresh token reused; revoking the agent's tokens failed", "agent_id", a.ID, "err", err)
			return fmt.Errorf("revoke tokens of agent %s: %w", a.ID, err)
		}
		s.logger.WarnContext(ctx, "refresh token reused; all of the agent's tokens revoked", "agent_id", a.ID)
		return apperr.Errorf(apperr.Unauthorized, "refresh token already used; log in again")
	}
	if time.Now().After(expires) || !a.Active {
		return apperr.Errorf(apperr.Unauthorized, "refresh token expired; log in again")
	}
	tag, err := s.pool.Exec(ctx, `UPDATE mobile.refresh_tokens SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL`, auth.HashToken(in.RefreshToken))
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 { // a concurrent refresh won
		return apperr.Errorf(apperr.Unauthorized, "refresh token already used; log in again")
	}
	pair, err := s.issue(c, a)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pair)
}

func (s *Service) issue(c echo.Context, a Agent) (TokenPair, error) {
	now := time.Now()
	access, exp, err := s.auth.Issue(auth.Claims{Org: a.OrganizationID, Region: a.Region, Role: RoleAgent, Epoch: a.epoch, RegisteredClaims: jwtSubject(a.ID)}, now)
	if err != nil {
		return TokenPair{}, err
	}
	refresh := auth.RandomToken()
	_, err = s.pool.Exec(c.Request().Context(), `INSERT INTO mobile.refresh_tokens (token_hash, agent_id, expires_at) VALUES ($1, $2, $3)`,
		auth.HashToken(refresh), a.ID, now.Add(s.auth.RefreshTTL()))
	if err != nil {
		return TokenPair{}, err
	}
	return TokenPair{AccessToken: access, ExpiresAt: exp, RefreshToken: refresh, AgentID: a.ID}, nil
}

// RequireAgent accepts only live agent access tokens: validly signed,
// unexpired, of the agent role (auth.RequireRole), and issued in the
// agent's current token epoch while the agent is active. The epoch is read
// from Postgres on every request — one primary-key lookup (see
// BenchmarkRequireAgent) — rather than cached, so that a revocation holds
// at once in every mobile-api process of a split deployment.
func (s *Service) RequireAgent() echo.MiddlewareFunc {
	role := s.auth.RequireRole(RoleAgent)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return role(func(c echo.Context) error {
			claims := auth.ClaimsOf(c)
			var epoch int64
			var active bool
			err := s.pool.QueryRow(c.Request().Context(), `SELECT token_epoch, active FROM mobile.agents WHERE id = $1`, claims.Subject).Scan(&epoch, &active)
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && (!active || epoch != claims.Epoch)) {
				return apperr.Errorf(apperr.Unauthorized, "access token revoked; log in again")
			}
			if err != nil {
				return fmt.Errorf("check token of agent %s: %w", claims.Subject, err)
			}
			return next(c)
		})
	}
}

// Device is an enrolled phone.
type Device struct {
	ID         string     `json:"id"`
	AgentID    string     `json:"agent_id"`
	Name       string     `json:"name"`
	PublicKey  string     `json:"public_key"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

func (s *Service) enrollDevice(c echo.Context) error {
	var in struct {
		Name      string `json:"name" validate:"required,min=1,max=100"`
		PublicKey string `json:"public_key" validate:"required,base64"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	key, _ := base64.StdEncoding.DecodeString(in.PublicKey)
	if len(key) != ed25519.PublicKeySize {
		return apperr.Fields("invalid public key", apperr.FieldError{Field: "public_key", Message: "must be a 32-byte Ed25519 public key in base64"})
	}
	// Keys no device's signature could be verified under (see
	// record.CheckDeviceKey) are refused here rather than have every
	// record the device signs refused later.
	if err := record.CheckDeviceKey(key); err != nil {
		return apperr.Fields("invalid public key", apperr.FieldError{Field: "public_key", Message: err.Error()})
	}
	d := Device{ID: uuid.NewString(), AgentID: auth.ClaimsOf(c).Subject, Name: in.Name, PublicKey: in.PublicKey}
	err := s.pool.QueryRow(c.Request().Context(), `
		INSERT INTO mobile.devices (id, agent_id, public_key, name) VALUES ($1, $2, $3, $4) RETURNING enrolled_at`,
		d.ID, d.AgentID, key, d.Name).Scan(&d.EnrolledAt)
	if err != nil {
		return postgres.MapError(err, "", "this public key is already enrolled")
	}
	return c.JSON(http.StatusCreated, d)
}

func (s *Service) listDevices(c echo.Context) error {
	rows, err := s.pool.Query(c.Request().Context(), `
		SELECT id, agent_id, name, public_key, enrolled_at, revoked_at FROM mobile.devices WHERE agent_id = $1 ORDER BY enrolled_at`,
		auth.ClaimsOf(c).Subject)
	if err != nil {
		return err
	}
	devices := []Device{}
	for rows.Next() {
		var d Device
		var key []byte
		if err := rows.Scan(&d.ID, &d.AgentID, &d.Name, &key, &d.EnrolledAt, &d.RevokedAt); err != nil {
			return err
		}
		d.PublicKey = base64.StdEncoding.EncodeToString(key)
		devices = append(devices, d)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"devices": devices})
}

// revokeOwnDevice lets an agent revoke a lost phone; revokeDevice lets an
// operator revoke any. Records signed by a revoked device are refused.
func (s *Service) revokeOwnDevice(c echo.Context) error {
	return s.revoke(c, auth.ClaimsOf(c).Subject)
}

func (s *Service) revokeDevice(c echo.Context) error { return s.revoke(c, "") }

func (s *Service) revoke(c echo.Context, agentID string) error {
	id := c.Param("id")
	if _, err := uuid.Parse(id); err != nil {
		return apperr.Fields("invalid device id", apperr.FieldError{Field: "id", Message: "must be a UUID"})
	}
	var in struct {
		Reason string `json:"reason" validate:"required,min=3,max=500"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	tag, err := s.pool.Exec(c.Request().Context(), `
		UPDATE mobile.devices SET revoked_at = coalesce(revoked_at, now()), revoked_reason = coalesce(revoked_reason, $2)
		WHERE id = $1 AND ($3 = '' OR agent_id::text = $3)`, id, in.Reason, agentID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return apperr.Errorf(apperr.NotFound, "no such device")
	}
	return c.NoContent(http.StatusNoContent)
}
