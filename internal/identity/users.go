package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/postgres"
)

// The roles of users. Banks' and distributors' people are admins (who
// manage their organization's users and API keys) or staff; the
// platform's are operators (everything under /admin/v1) or reviewers (the
// review queue only, see ReviewerMay).
const (
	RoleAdmin    = "admin"
	RoleStaff    = "staff"
	RoleOperator = "operator"
	RoleReviewer = "reviewer"
)

// rolesOf are the roles a user of each kind of organization may hold.
// Field organizations have agents (mobile-api), not users.
var rolesOf = map[Kind][]string{
	Bank:        {RoleAdmin, RoleStaff},
	Distributor: {RoleAdmin, RoleStaff},
	Operator:    {RoleOperator, RoleReviewer},
}

// Password bounds: bcrypt reads at most 72 bytes, and a person's password
// for an organization's data is at least 12 characters.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 72
)

// usernamePattern: lowercase, 3 to 64 characters, letters, digits and
// . _ @ - (an e-mail address is a fine username).
var usernamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{2,63}$`)

// User is a person of an organization, never with the password hash.
type User struct {
	ID               string    `json:"id"`
	OrganizationID   string    `json:"organization_id"`
	OrganizationKind Kind      `json:"organization_kind"`
	Username         string    `json:"username"`
	Name             string    `json:"name"`
	Role             string    `json:"role"`
	Active           bool      `json:"active"`
	CreatedAt        time.Time `json:"created_at"`
	CreatedBy        string    `json:"created_by"`
}

// NewUser is what creating a user asks for.
type NewUser struct {
	OrganizationID string
	Username       string
	Name           string
	Role           string
	Password       string
	// CreatedBy names the creator for the audit: "operator-token" or the
	// creating user's Principal.Credential().
	CreatedBy string
}

// checkNewUser returns the field errors of in (the username is taken as
// given: callers lowercase it).
func checkNewUser(in NewUser) []apperr.FieldError {
	var fields []apperr.FieldError
	if !usernamePattern.MatchString(in.Username) {
		fields = append(fields, apperr.FieldError{Field: "username", Message: "must be 3 to 64 characters: lowercase letters, digits and . _ @ -, starting with a letter or digit"})
	}
	if n := utf8.RuneCountInString(strings.TrimSpace(in.Name)); n < 1 || n > 200 {
		fields = append(fields, apperr.FieldError{Field: "name", Message: "must be 1 to 200 characters"})
	}
	if utf8.RuneCountInString(in.Password) < MinPasswordLen || len(in.Password) > MaxPasswordLen {
		fields = append(fields, apperr.FieldError{Field: "password", Message: fmt.Sprintf("must be at least %d characters and at most %d bytes", MinPasswordLen, MaxPasswordLen)})
	}
	return fields
}

// CreateUser stores a new user of an organization. The role must be one
// the organization's kind has (admin or staff for banks and distributors,
// operator or reviewer for the operator); field organizations have no
// users.
func (d *Directory) CreateUser(ctx context.Context, in NewUser) (User, error) {
	in.Username = strings.ToLower(strings.TrimSpace(in.Username))
	fields := checkNewUser(in)
	if len(fields) > 0 {
		return User{}, apperr.Fields("bad user", fields...)
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		return User{}, fmt.Errorf("hash password: %w", err)
	}
	u := User{ID: uuid.NewString(), OrganizationID: in.OrganizationID, Username: in.Username, Name: strings.TrimSpace(in.Name), Role: in.Role, Active: true, CreatedBy: in.CreatedBy}
	err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT kind FROM identity.organizations WHERE id = $1`, in.OrganizationID).Scan(&u.OrganizationKind)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.Errorf(apperr.NotFound, "no such organization")
		}
		if err != nil {
			return fmt.Errorf("load organization %s: %w", in.OrganizationID, err)
		}
		roles, ok := rolesOf[u.OrganizationKind]
		if !ok {
			return apperr.Fields("this organization has no users", apperr.FieldError{Field: "organization_id",
				Message: fmt.Sprintf("a %s organization has agents (POST /admin/v1/agents), not users", u.OrganizationKind)})
		}
		if !contains(roles, in.Role) {
			return apperr.Fields("bad role", apperr.FieldError{Field: "role",
				Message: fmt.Sprintf("a user of a %s organization must be one of: %s", u.OrganizationKind, strings.Join(roles, ", "))})
		}
		return tx.QueryRow(ctx, `
			INSERT INTO identity.users (id, organization_id, username, name, role, password_hash, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at`,
			u.ID, u.OrganizationID, u.Username, u.Name, u.Role, hash, u.CreatedBy).Scan(&u.CreatedAt)
	})
	if err != nil {
		return User{}, postgres.MapError(err, "", "this username is taken")
	}
	return u, nil
}

// Authenticate returns the active user with this username and password.
// Every failure is the same Unauthorized answer, and an unknown username
// costs a bcrypt comparison too, so that neither the answer nor its
// timing tells which usernames exist.
func (d *Directory) Authenticate(ctx context.Context, username, password string) (User, error) {
	var u User
	var hash string
	err := d.pool.QueryRow(ctx, `
		SELECT u.id::text, u.organization_id::text, o.kind, u.username, u.name, u.role, u.active, u.created_at, u.created_by, u.password_hash
		FROM identity.users u JOIN identity.organizations o ON o.id = u.organization_id
		WHERE u.username = $1`, strings.ToLower(strings.TrimSpace(username))).
		Scan(&u.ID, &u.OrganizationID, &u.OrganizationKind, &u.Username, &u.Name, &u.Role, &u.Active, &u.CreatedAt, &u.CreatedBy, &hash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("look up user: %w", err)
	}
	if len(password) > MaxPasswordLen {
		password = password[:MaxPasswordLen]
	}
	if !auth.CheckPassword(hash, password) || !u.Active {
		return User{}, apperr.Errorf(apperr.Unauthorized, "wrong username or password")
	}
	return u, nil
}

const userSelect = `
	SELECT u.id::text, u.organization_id::text, o.kind, u.username, u.name, u.role, u.active, u.created_at, u.created_by
	FROM identity.users u JOIN identity.organizations o ON o.id = u.organization_id`

func userFields(u *User) []any {
	return []any{&u.ID, &u.OrganizationID, &u.OrganizationKind, &u.Username, &u.Name, &u.Role, &u.Active, &u.CreatedAt, &u.CreatedBy}
}

// ListUsers returns an organization's users, by username.
func (d *Directory) ListUsers(ctx context.Context, orgID string) ([]User, error) {
	rows, err := d.pool.Query(ctx, userSelect+` WHERE u.organization_id = $1 ORDER BY u.username`, orgID)
	if err != nil {
		return nil, fmt.Errorf("list users of %s: %w", orgID, err)
	}
	return pgxCollect(rows, userFields)
}

// DeactivateUser stops a user of an organization from signing in and ends
// their sessions at once. Deactivating a user of another organization is
// NotFound, as if it did not exist.
func (d *Directory) DeactivateUser(ctx context.Context, orgID, userID string) (User, error) {
	var u User
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE identity.users SET active = false WHERE id = $1 AND organization_id = $2`, userID, orgID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return apperr.Errorf(apperr.NotFound, "no such user in this organization")
		}
		if _, err := tx.Exec(ctx, `UPDATE identity.sessions SET ended_at = now() WHERE user_id = $1 AND ended_at IS NULL`, userID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, userSelect+` WHERE u.id = $1`, userID).Scan(userFields(&u)...)
	})
	if err != nil {
		return User{}, postgres.MapError(err, "no such user in this organization", "")
	}
	return u, nil
}

// userRequest is the body of creating a user.
type userRequest struct {
	Username string `json:"username"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

// createOrgUser: POST /admin/v1/organizations/{id}/users. Operators create
// an organization's first admin (and the platform's operators and
// reviewers).
func (d *Directory) createOrgUser(c echo.Context) error {
	orgID, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	var in userRequest
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	u, err := d.CreateUser(c.Request().Context(), NewUser{OrganizationID: orgID, Username: in.Username, Name: in.Name, Role: in.Role, Password: in.Password, CreatedBy: actor(c)})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, u)
}

func (d *Directory) listOrgUsers(c echo.Context) error {
	orgID, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	users, err := d.ListUsers(c.Request().Context(), orgID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"users": users})
}

func (d *Directory) deactivateOrgUser(c echo.Context) error {
	orgID, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	userID, err := httpserver.PathUUID(c, "user")
	if err != nil {
		return err
	}
	u, err := d.DeactivateUser(c.Request().Context(), orgID, userID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

// createOwnUser: POST /bank/v1/users (and /distributor/v1/users). An
// organization's admin adds its staff (or another admin); the
// organization is always the caller's own.
func (d *Directory) createOwnUser(c echo.Context) error {
	p, _ := PrincipalOf(c)
	var in userRequest
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	if in.Role == "" {
		in.Role = RoleStaff
	}
	u, err := d.CreateUser(c.Request().Context(), NewUser{OrganizationID: p.OrganizationID, Username: in.Username, Name: in.Name, Role: in.Role, Password: in.Password, CreatedBy: p.Credential()})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, u)
}

func (d *Directory) listOwnUsers(c echo.Context) error {
	p, _ := PrincipalOf(c)
	users, err := d.ListUsers(c.Request().Context(), p.OrganizationID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"users": users})
}

func (d *Directory) deactivateOwnUser(c echo.Context) error {
	p, _ := PrincipalOf(c)
	userID, err := httpserver.PathUUID(c, "user")
	if err != nil {
		return err
	}
	if userID == p.UserID {
		return apperr.Errorf(apperr.Conflict, "you cannot deactivate yourself; ask another admin")
	}
	u, err := d.DeactivateUser(c.Request().Context(), p.OrganizationID, userID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

// actor names the caller of an /admin/v1 request for the audit: the
// operator user's credential, or "operator-token" for the bootstrap token.
func actor(c echo.Context) string {
	if p, ok := PrincipalOf(c); ok && p.UserID != "" {
		return p.Credential()
	}
	return "operator-token"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
