package identity

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
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
	"github.com/tani-platform/tani/internal/throttle"
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
	// SessionIdle ends a user's session after this long without a
	// request; SessionMax ends it this long after sign-in whatever its use.
	SessionIdle time.Duration
	SessionMax  time.Duration
	// SignIn throttles failed password sign-ins (zero fields take
	// DefaultThrottle's).
	SignIn Throttle
	// TrustedProxies are comma-separated CIDRs of reverse proxies whose
	// X-Forwarded-For names the client sign-in attempts are counted
	// under; empty counts them under the connection's peer.
	TrustedProxies string
}

// RegisterFlags registers the module's flags under prefix.
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&c.DefaultKeyTTL, prefix+"credential-ttl", 90*24*time.Hour, "lifetime of a new API key when its creator gives no expiry (at most 366 days)")
	fs.DurationVar(&c.SessionIdle, prefix+"session-idle", 30*time.Minute, "a portal or operator session ends after this long without a request")
	fs.DurationVar(&c.SessionMax, prefix+"session-max", 12*time.Hour, "a portal or operator session ends this long after sign-in, however it is used")
	fs.IntVar(&c.SignIn.AccountFree, prefix+"sign-in-account-failures", DefaultThrottle.AccountFree, "failed password sign-ins an account (the username as typed) is allowed before each further failure locks it, for twice as long as the last")
	fs.IntVar(&c.SignIn.AddressFree, prefix+"sign-in-address-failures", DefaultThrottle.AddressFree, "failed password sign-ins a client address (an IPv6 /64) is allowed before each further failure locks it, for twice as long as the last")
	fs.DurationVar(&c.SignIn.Base, prefix+"sign-in-lockout", DefaultThrottle.Base, "the first lockout after the allowed failures; each further failure doubles it")
	fs.DurationVar(&c.SignIn.Max, prefix+"sign-in-max-lockout", DefaultThrottle.Max, "the longest a failed sign-in locks an account or address")
	fs.DurationVar(&c.SignIn.Forget, prefix+"sign-in-forget", DefaultThrottle.Forget, "an account or address forgets its failed sign-ins this long after the last")
	fs.StringVar(&c.TrustedProxies, prefix+"trusted-proxies", "", "comma-separated CIDRs of reverse proxies trusted to name the client in X-Forwarded-For (for counting failed sign-ins per client address); empty: the connection's peer")
}

// Deps are what the module uses; all are required.
type Deps struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger
}

// Directory is the identity module: it stores organizations and their
// credentials and authenticates callers with them.
type Directory struct {
	cfg       Config
	pool      *pgxpool.Pool
	logger    *slog.Logger
	scopes    []string
	guard     *throttle.Guard
	addresses *throttle.Addresses
}

// New wires the directory; it validates and does no I/O.
func New(cfg Config, d Deps) (*Directory, error) {
	if d.Pool == nil || d.Logger == nil {
		return nil, errors.New("identity: Pool and Logger are required")
	}
	if cfg.DefaultKeyTTL <= 0 || cfg.DefaultKeyTTL > MaxAPIKeyTTL {
		return nil, errors.New("identity: -identity.credential-ttl must be positive and at most 366 days")
	}
	if cfg.SessionIdle == 0 {
		cfg.SessionIdle = 30 * time.Minute
	}
	if cfg.SessionMax == 0 {
		cfg.SessionMax = 12 * time.Hour
	}
	if cfg.SessionIdle < time.Minute || cfg.SessionMax < cfg.SessionIdle || cfg.SessionMax > 7*24*time.Hour {
		return nil, errors.New("identity: -identity.session-idle must be at least 1m and -identity.session-max between it and 7 days")
	}
	guard, err := throttle.New(d.Pool, "identity.sign_in_failures", cfg.SignIn.OrDefaults(DefaultThrottle))
	if err != nil {
		return nil, fmt.Errorf("identity: sign-in throttle: %w", err)
	}
	addresses, err := throttle.NewAddresses(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("identity: -identity.trusted-proxies: %w", err)
	}
	return &Directory{cfg: cfg, pool: d.Pool, logger: d.Logger, scopes: validate.ConsentScopes, guard: guard, addresses: addresses}, nil
}

// Start has nothing to prepare.
func (d *Directory) Start(context.Context) error { return nil }

// Run forgets, hourly, the sign-in failures of accounts and addresses
// that have had none for the forget period, until ctx is done.
func (d *Directory) Run(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := d.guard.Forget(ctx); err != nil && ctx.Err() == nil {
				d.logger.WarnContext(ctx, "forget old sign-in failures", "err", err)
			}
		}
	}
}

// Stop has nothing to release.
func (d *Directory) Stop(context.Context) error { return nil }

// Routes mounts the operators' administration of organizations, their
// keys and users on r.Admin, and each organization's own administration
// of its users and keys (admin role only) on r.Bank and r.Distributor.
func (d *Directory) Routes(r httpserver.Router) {
	if r.Admin != nil {
		r.Admin.POST("/organizations", d.createOrganization)
		r.Admin.GET("/organizations", d.listOrganizations)
		r.Admin.POST("/organizations/:id/api-keys", d.createAPIKeyHTTP)
		r.Admin.GET("/organizations/:id/api-keys", d.listAPIKeys)
		r.Admin.POST("/organizations/:id/api-keys/:key/revoke", d.revokeAPIKey)
		r.Admin.POST("/organizations/:id/users", d.createOrgUser)
		r.Admin.GET("/organizations/:id/users", d.listOrgUsers)
		r.Admin.POST("/organizations/:id/users/:user/deactivate", d.deactivateOrgUser)
		r.Admin.POST("/auth/logout", d.OperatorSignOut)
	}
	for _, g := range []*echo.Group{r.Bank, r.Distributor} {
		if g == nil {
			continue
		}
		// Route by route, not a sub-group: an echo group's middleware
		// also answers the group's unknown paths.
		g.GET("/users", d.listOwnUsers, RequireOrgAdmin)
		g.POST("/users", d.createOwnUser, RequireOrgAdmin)
		g.POST("/users/:user/deactivate", d.deactivateOwnUser, RequireOrgAdmin)
		g.GET("/api-keys", d.listOwnKeys, RequireOrgAdmin)
		g.POST("/api-keys", d.createOwnKey, RequireOrgAdmin)
		g.POST("/api-keys/:key/revoke", d.revokeOwnKey, RequireOrgAdmin)
		g.POST("/api-keys/:key/rotate", d.rotateOwnKey, RequireOrgAdmin)
	}
}

// RequireOrgAdmin admits only a signed-in user with the admin role: an
// organization's users and API keys are managed by its admins, never with
// an API key (a leaked key must not be able to mint more credentials).
func RequireOrgAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, ok := PrincipalOf(c)
		if !ok {
			return apperr.Errorf(apperr.Unauthorized, "no authenticated organization")
		}
		if p.UserID == "" || p.Role != RoleAdmin {
			return apperr.Errorf(apperr.Forbidden, "managing users and API keys needs a signed-in user with the admin role (not an API key)")
		}
		return next(c)
	}
}

// Require authenticates the caller of every route of a group as an
// organization of the given kind, and records its Principal (PrincipalOf):
// an API key (Authorization: Bearer tani_…) or, without one, a portal
// user's session cookie, whose unsafe requests must carry the session's
// CSRF token. A valid credential of another kind of organization is
// refused with 403: a distributor's key never opens the banks' API.
func (d *Directory) Require(kind Kind) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, err := d.Caller(c)
			if err != nil {
				return err
			}
			if p.Kind != kind {
				return apperr.Errorf(apperr.Forbidden, "this API is for %s organizations; the credential belongs to a %s", kind, p.Kind)
			}
			WithPrincipal(c, p)
			return next(c)
		}
	}
}

// Caller authenticates a bank or distributor calling outside Require's
// groups (the journal's payloads): an API key, or without one a session
// cookie (with its CSRF token on unsafe requests). It does not record
// the principal.
func (d *Directory) Caller(c echo.Context) (Principal, error) {
	if h := c.Request().Header.Get(echo.HeaderAuthorization); h != "" {
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || strings.TrimSpace(token) == "" {
			return Principal{}, apperr.Errorf(apperr.Unauthorized, "missing credentials: send an API key as Authorization: Bearer tani_…")
		}
		return d.authenticateKey(c.Request().Context(), strings.TrimSpace(token), time.Now())
	}
	if _, err := c.Cookie(SessionCookie); err == nil {
		return d.cookieSession(c)
	}
	return Principal{}, apperr.Errorf(apperr.Unauthorized, "missing credentials: send an API key as Authorization: Bearer tani_… (or sign in at %s)", SignInPath)
}

// IsAPIKey reports whether a bearer token has the shape of an API key
// (tani_<32 hex>_<64 hex>), as opposed to a session or the operator token.
func IsAPIKey(token string) bool {
	return len(token) == tokenLen && strings.HasPrefix(token, tokenPrefix) && token[len(tokenPrefix)+32] == '_'
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
	if err := httpserver.Bind(c, &in); err != nil {
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
