package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/postgres"
)

// MaxAPIKeyTTL is the longest an API key may live: a key is rotated at
// least yearly.
const MaxAPIKeyTTL = 366 * 24 * time.Hour

// APIKey is a bank's or distributor's API key, never with its secret.
type APIKey struct {
	ID             string     `json:"id"`
	OrganizationID string     `json:"organization_id"`
	Name           string     `json:"name"`
	Scopes         []string   `json:"scopes"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt     *time.Time `json:"last_used_at,omitempty"`
}

// NewAPIKey is what creating a key asks for.
type NewAPIKey struct {
	OrganizationID string
	Name           string
	// Scopes the key may read (a subset of the consent scopes); every
	// consent scope when empty.
	Scopes    []string
	ExpiresAt time.Time
}

// tokenPrefix starts every API key token, so that a leaked key is easy to
// recognise in logs and by secret scanners.
const tokenPrefix = "tani_"

// token layout: tani_<key id, 32 hex>_<secret, 64 hex>.
const tokenLen = len(tokenPrefix) + 32 + 1 + 64

// CreateAPIKey stores a new key for a bank or distributor and returns it
// with its token, which is shown this once and never stored.
func (d *Directory) CreateAPIKey(ctx context.Context, in NewAPIKey) (APIKey, string, error) {
	var k APIKey
	var token string
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		var kind Kind
		err := tx.QueryRow(ctx, `SELECT kind FROM identity.organizations WHERE id = $1`, in.OrganizationID).Scan(&kind)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.Fields("unknown organization", apperr.FieldError{Field: "organization_id", Message: "no such organization"})
		}
		if err != nil {
			return err
		}
		if kind != Bank && kind != Distributor {
			return apperr.Fields("API keys are for banks and distributors",
				apperr.FieldError{Field: "organization_id", Message: fmt.Sprintf("a %s organization cannot hold API keys", kind)})
		}
		k, token, err = d.insertKey(ctx, tx, in)
		return err
	})
	if err != nil {
		return APIKey{}, "", postgres.MapError(err, "", "")
	}
	return k, token, nil
}

// authenticateKey returns the principal of a valid, live API key token.
// Every failure is the same Unauthorized answer, so that a caller cannot
// tell an unknown key from a wrong secret.
func (d *Directory) authenticateKey(ctx context.Context, token string, now time.Time) (Principal, error) {
	denied := apperr.Errorf(apperr.Unauthorized, "invalid, expired or revoked API key")
	if len(token) != tokenLen || !strings.HasPrefix(token, tokenPrefix) || token[len(tokenPrefix)+32] != '_' {
		return Principal{}, apperr.Errorf(apperr.Unauthorized, "malformed API key: want tani_<32 hex>_<64 hex>")
	}
	id, err := uuid.Parse(token[len(tokenPrefix) : len(tokenPrefix)+32])
	secret, err2 := hex.DecodeString(token[len(tokenPrefix)+33:])
	if err != nil || err2 != nil {
		return Principal{}, apperr.Errorf(apperr.Unauthorized, "malformed API key: want tani_<32 hex>_<64 hex>")
	}
	var p Principal
	var hash []byte
	var expires time.Time
	var revoked *time.Time
	err = d.pool.QueryRow(ctx, `
		SELECT k.organization_id::text, o.kind, k.secret_hash, k.scopes, k.expires_at, k.revoked_at
		FROM identity.api_keys k JOIN identity.organizations o ON o.id = k.organization_id
		WHERE k.id = $1`, id).Scan(&p.OrganizationID, &p.Kind, &hash, &p.Scopes, &expires, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, denied
	}
	if err != nil {
		return Principal{}, fmt.Errorf("look up API key %s: %w", id, err)
	}
	sum := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(sum[:], hash) != 1 || revoked != nil && !revoked.After(now) || !expires.After(now) {
		return Principal{}, denied
	}
	p.APIKeyID = id.String()
	return p, nil
}

// keyRequest is the body of creating a key.
type keyRequest struct {
	Name      string     `json:"name" validate:"required,min=1,max=100"`
	Scopes    []string   `json:"scopes" validate:"omitempty,unique,dive,consentscope"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// expiry is when a requested key ends: as asked (in the future, within
// MaxAPIKeyTTL), or DefaultKeyTTL from now.
func (d *Directory) expiry(asked *time.Time, now time.Time) (time.Time, error) {
	if asked == nil {
		return now.Add(d.cfg.DefaultKeyTTL), nil
	}
	if !asked.After(now) || asked.Sub(now) > MaxAPIKeyTTL {
		return time.Time{}, apperr.Fields("bad expiry", apperr.FieldError{Field: "expires_at", Message: "must be in the future and at most 366 days away"})
	}
	return *asked, nil
}

// createKey decodes a key request and creates the key for orgID.
func (d *Directory) createKey(c echo.Context, orgID string) error {
	var in keyRequest
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	expires, err := d.expiry(in.ExpiresAt, time.Now())
	if err != nil {
		return err
	}
	k, token, err := d.CreateAPIKey(c.Request().Context(), NewAPIKey{OrganizationID: orgID, Name: in.Name, Scopes: in.Scopes, ExpiresAt: expires})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, NewKey{k, token})
}

// NewKey is a created key with its token, shown this once.
type NewKey struct {
	APIKey
	Token string `json:"token"`
}

// ListAPIKeys returns an organization's keys, oldest first, never their
// secrets.
func (d *Directory) ListAPIKeys(ctx context.Context, orgID string) ([]APIKey, error) {
	rows, err := d.pool.Query(ctx, `
		SELECT id::text, organization_id::text, name, scopes, created_at, expires_at, revoked_at, last_used_at
		FROM identity.api_keys WHERE organization_id = $1 ORDER BY created_at, id`, orgID)
	if err != nil {
		return nil, fmt.Errorf("list API keys of %s: %w", orgID, err)
	}
	return pgxCollect(rows, func(k *APIKey) []any {
		return []any{&k.ID, &k.OrganizationID, &k.Name, &k.Scopes, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt}
	})
}

// RevokeAPIKey revokes a live key of an organization at once. A key of
// another organization is NotFound, as if it did not exist.
func (d *Directory) RevokeAPIKey(ctx context.Context, orgID, keyID string) error {
	tag, err := d.pool.Exec(ctx, `
		UPDATE identity.api_keys SET revoked_at = now()
		WHERE id = $1 AND organization_id = $2 AND (revoked_at IS NULL OR revoked_at > now())`, keyID, orgID)
	if err != nil {
		return fmt.Errorf("revoke API key %s: %w", keyID, err)
	}
	if tag.RowsAffected() == 0 {
		return apperr.Errorf(apperr.NotFound, "no such live API key of this organization")
	}
	return nil
}

// MaxRotationOverlap is the longest an old key may keep working after a
// rotation: long enough to roll the new key out, short enough that a
// rotation prompted by a leak ends the leak soon.
const MaxRotationOverlap = 30 * 24 * time.Hour

// Rotated is the answer to a rotation: the new key with its token, and
// the old key with the time it stops working.
type Rotated struct {
	NewKey
	Replaces APIKey `json:"replaces"`
}

// RotateAPIKey replaces a live key of an organization: a new key with the
// same name and scopes is issued (expiring at expires), and the old one is
// revoked overlap from now, so that both work while the new one is rolled
// out. A key of another organization is NotFound.
func (d *Directory) RotateAPIKey(ctx context.Context, orgID, keyID string, overlap time.Duration, expires time.Time) (Rotated, error) {
	var out Rotated
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		old := &out.Replaces
		err := tx.QueryRow(ctx, `
			SELECT id::text, organization_id::text, name, scopes, created_at, expires_at, last_used_at
			FROM identity.api_keys
			WHERE id = $1 AND organization_id = $2 AND (revoked_at IS NULL OR revoked_at > now()) AND expires_at > now()
			FOR UPDATE`, keyID, orgID).Scan(&old.ID, &old.OrganizationID, &old.Name, &old.Scopes, &old.CreatedAt, &old.ExpiresAt, &old.LastUsedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.Errorf(apperr.NotFound, "no such live API key of this organization")
		}
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `
			UPDATE identity.api_keys SET revoked_at = least(now() + $2 * interval '1 microsecond', expires_at)
			WHERE id = $1 RETURNING revoked_at`, keyID, overlap.Microseconds()).Scan(&old.RevokedAt); err != nil {
			return err
		}
		out.APIKey, out.Token, err = d.insertKey(ctx, tx, NewAPIKey{OrganizationID: orgID, Name: old.Name, Scopes: old.Scopes, ExpiresAt: expires})
		return err
	})
	if err != nil {
		return Rotated{}, postgres.MapError(err, "", "")
	}
	return out, nil
}

// insertKey stores a new key in tx (the organization is known to hold
// keys) and returns it with its token.
func (d *Directory) insertKey(ctx context.Context, tx pgx.Tx, in NewAPIKey) (APIKey, string, error) {
	if len(in.Scopes) == 0 {
		in.Scopes = d.scopes
	}
	k := APIKey{ID: uuid.NewString(), OrganizationID: in.OrganizationID, Name: in.Name, Scopes: in.Scopes, ExpiresAt: in.ExpiresAt.UTC()}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return APIKey{}, "", err
	}
	token := tokenPrefix + strings.ReplaceAll(k.ID, "-", "") + "_" + hex.EncodeToString(secret)
	hash := sha256.Sum256(secret)
	err := tx.QueryRow(ctx, `
		INSERT INTO identity.api_keys (id, organization_id, name, secret_hash, scopes, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
		k.ID, k.OrganizationID, k.Name, hash[:], k.Scopes, k.ExpiresAt).Scan(&k.CreatedAt)
	if err != nil {
		return APIKey{}, "", fmt.Errorf("store API key: %w", err)
	}
	return k, token, nil
}

// Operators' handlers (/admin/v1/organizations/{id}/api-keys…).

func (d *Directory) createAPIKeyHTTP(c echo.Context) error {
	orgID, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	return d.createKey(c, orgID)
}

func (d *Directory) listAPIKeys(c echo.Context) error {
	orgID, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	keys, err := d.ListAPIKeys(c.Request().Context(), orgID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"api_keys": keys})
}

func (d *Directory) revokeAPIKey(c echo.Context) error {
	orgID, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	keyID, err := httpserver.PathUUID(c, "key")
	if err != nil {
		return err
	}
	if err := d.RevokeAPIKey(c.Request().Context(), orgID, keyID); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// An organization's own handlers (/bank/v1/api-keys…,
// /distributor/v1/api-keys…; admins only): the organization is always the
// caller's.

func (d *Directory) listOwnKeys(c echo.Context) error {
	p, _ := PrincipalOf(c)
	keys, err := d.ListAPIKeys(c.Request().Context(), p.OrganizationID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"api_keys": keys})
}

func (d *Directory) createOwnKey(c echo.Context) error {
	p, _ := PrincipalOf(c)
	return d.createKey(c, p.OrganizationID)
}

func (d *Directory) revokeOwnKey(c echo.Context) error {
	p, _ := PrincipalOf(c)
	keyID, err := httpserver.PathUUID(c, "key")
	if err != nil {
		return err
	}
	if err := d.RevokeAPIKey(c.Request().Context(), p.OrganizationID, keyID); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// rotateRequest is the body of a rotation; both fields are optional.
type rotateRequest struct {
	// OverlapSeconds is how long the old key keeps working (default one
	// day, at most MaxRotationOverlap).
	OverlapSeconds *int64 `json:"overlap_seconds"`
	// ExpiresAt is the new key's expiry (default -identity.credential-ttl
	// from now).
	ExpiresAt *time.Time `json:"expires_at"`
}

func (d *Directory) rotateOwnKey(c echo.Context) error {
	p, _ := PrincipalOf(c)
	keyID, err := httpserver.PathUUID(c, "key")
	if err != nil {
		return err
	}
	var in rotateRequest
	if c.Request().ContentLength != 0 {
		if err := httpserver.Bind(c, &in); err != nil {
			return err
		}
	}
	overlap := 24 * time.Hour
	if in.OverlapSeconds != nil {
		overlap = time.Duration(*in.OverlapSeconds) * time.Second
		if *in.OverlapSeconds < 0 || overlap > MaxRotationOverlap {
			return apperr.Fields("bad overlap", apperr.FieldError{Field: "overlap_seconds", Message: fmt.Sprintf("must be 0 to %d", int64(MaxRotationOverlap/time.Second))})
		}
	}
	expires, err := d.expiry(in.ExpiresAt, time.Now())
	if err != nil {
		return err
	}
	r, err := d.RotateAPIKey(c.Request().Context(), p.OrganizationID, keyID, overlap, expires)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, r)
}
