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

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
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
	var kind Kind
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
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
		return tx.QueryRow(ctx, `
			INSERT INTO identity.api_keys (id, organization_id, name, secret_hash, scopes, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
			k.ID, k.OrganizationID, k.Name, hash[:], k.Scopes, k.ExpiresAt).Scan(&k.CreatedAt)
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
