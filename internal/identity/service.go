package identity

import (
	"context"
	"embed"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/validate"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the identity schema.
var Migrations = postgres.Migrations{Name: "identity", FS: postgres.MustSub(migrationsFS, "migrations")}

// Config tunes the module.
type Config struct {
	// DefaultKeyTTL is how long a new API key lives when its creator does
	// not say.
	DefaultKeyTTL time.Duration
}

// RegisterFlags registers the module's flags under prefix.
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&c.DefaultKeyTTL, prefix+"credential-ttl", 90*24*time.Hour, "lifetime of a new API key when its creator gives no expiry (at most 366 days)")
}

// Deps are what the module uses; all are required.
type Deps struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger
}

// Directory is the identity module: it stores organizations and their
// credentials and authenticates callers with them.
type Directory struct {
	cfg    Config
	pool   *pgxpool.Pool
	logger *slog.Logger
	scopes []string
}

// New wires the directory; it validates and does no I/O.
func New(cfg Config, d Deps) (*Directory, error) {
	if d.Pool == nil || d.Logger == nil {
		return nil, errors.New("identity: Pool and Logger are required")
	}
	if cfg.DefaultKeyTTL <= 0 || cfg.DefaultKeyTTL > MaxAPIKeyTTL {
		return nil, errors.New("identity: -identity.credential-ttl must be positive and at most 366 days")
	}
	return &Directory{cfg: cfg, pool: d.Pool, logger: d.Logger, scopes: validate.ConsentScopes}, nil
}

// Start has nothing to prepare.
func (d *Directory) Start(context.Context) error { return nil }

// Run has no background work: it waits for ctx.
func (d *Directory) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Stop has nothing to release.
func (d *Directory) Stop(context.Context) error { return nil }

// Routes mounts the operators' administration of organizations and their
// keys on r.Admin.
func (d *Directory) Routes(r httpserver.Router) {
	if r.Admin != nil {
		r.Admin.POST("/organizations", d.createOrganization)
		r.Admin.GET("/organizations", d.listOrganizations)
		r.Admin.POST("/organizations/:id/api-keys", d.createAPIKeyHTTP)
		r.Admin.GET("/organizations/:id/api-keys", d.listAPIKeys)
		r.Admin.POST("/organizations/:id/api-keys/:key/revoke", d.revokeAPIKey)
	}
}

// Require authenticates the caller of every route of a group as an
// organization of the given kind, and records its Principal (PrincipalOf).
// A valid credential of another kind of organization is refused with 403:
// a distributor's key never opens the banks' API.
func (d *Directory) Require(kind Kind) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
			if !ok || strings.TrimSpace(token) == "" {
				return apperr.Errorf(apperr.Unauthorized, "missing credentials: send an API key as Authorization: Bearer tani_…")
			}
			p, err := d.authenticateKey(c.Request().Context(), strings.TrimSpace(token), time.Now())
			if err != nil {
				return err
			}
			if p.Kind != kind {
				return apperr.Errorf(apperr.Forbidden, "this API is for %s organizations; the key belongs to a %s", kind, p.Kind)
			}
			WithPrincipal(c, p)
			return next(c)
		}
	}
}

// Organization is a party to Tani.
type Organization struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      Kind      `json:"kind"`
	CreatedAt time.Time `json:"created_at"`
}

func (d *Directory) createOrganization(c echo.Context) error {
	var in struct {
		Name string `json:"name" validate:"required,min=2,max=200"`
		Kind string `json:"kind" validate:"required,oneof=operator field bank distributor"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	o := Organization{ID: uuid.NewString(), Name: in.Name, Kind: Kind(in.Kind)}
	err := d.pool.QueryRow(c.Request().Context(),
		`INSERT INTO identity.organizations (id, name, kind) VALUES ($1, $2, $3) RETURNING created_at`, o.ID, o.Name, o.Kind).Scan(&o.CreatedAt)
	if err != nil {
		return postgres.MapError(err, "", "an organization with this name exists")
	}
	return c.JSON(http.StatusCreated, o)
}

func (d *Directory) listOrganizations(c echo.Context) error {
	rows, err := d.pool.Query(c.Request().Context(), `SELECT id::text, name, kind, created_at FROM identity.organizations ORDER BY name`)
	if err != nil {
		return err
	}
	orgs, err := pgxCollect(rows, func(o *Organization) []any { return []any{&o.ID, &o.Name, &o.Kind, &o.CreatedAt} })
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"organizations": orgs})
}

func (d *Directory) createAPIKeyHTTP(c echo.Context) error {
	orgID, err := pathUUID(c, "id")
	if err != nil {
		return err
	}
	var in struct {
		Name      string     `json:"name" validate:"required,min=1,max=100"`
		Scopes    []string   `json:"scopes" validate:"omitempty,unique,dive,consentscope"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	now := time.Now()
	expires := now.Add(d.cfg.DefaultKeyTTL)
	if in.ExpiresAt != nil {
		expires = *in.ExpiresAt
	}
	if !expires.After(now) || expires.Sub(now) > MaxAPIKeyTTL {
		return apperr.Fields("bad expiry", apperr.FieldError{Field: "expires_at", Message: "must be in the future and at most 366 days away"})
	}
	k, token, err := d.CreateAPIKey(c.Request().Context(), NewAPIKey{OrganizationID: orgID, Name: in.Name, Scopes: in.Scopes, ExpiresAt: expires})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, struct {
		APIKey
		Token string `json:"token"`
	}{k, token})
}

func (d *Directory) listAPIKeys(c echo.Context) error {
	orgID, err := pathUUID(c, "id")
	if err != nil {
		return err
	}
	rows, err := d.pool.Query(c.Request().Context(), `
		SELECT id::text, organization_id::text, name, scopes, created_at, expires_at, revoked_at, last_used_at
		FROM identity.api_keys WHERE organization_id = $1 ORDER BY created_at`, orgID)
	if err != nil {
		return err
	}
	keys, err := pgxCollect(rows, func(k *APIKey) []any {
		return []any{&k.ID, &k.OrganizationID, &k.Name, &k.Scopes, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt}
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"api_keys": keys})
}

func (d *Directory) revokeAPIKey(c echo.Context) error {
	orgID, err := pathUUID(c, "id")
	if err != nil {
		return err
	}
	keyID, err := pathUUID(c, "key")
	if err != nil {
		return err
	}
	tag, err := d.pool.Exec(c.Request().Context(), `
		UPDATE identity.api_keys SET revoked_at = now()
		WHERE id = $1 AND organization_id = $2 AND (revoked_at IS NULL OR revoked_at > now())`, keyID, orgID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return apperr.Errorf(apperr.NotFound, "no such live API key of this organization")
	}
	return c.NoContent(http.StatusNoContent)
}
