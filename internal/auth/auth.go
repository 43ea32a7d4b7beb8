package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/tani-platform/tani/internal/apperr"
)

// Config locates the keys. Empty paths mean "generate into the data
// directory on first run", which suits one process; split deployments share
// the files (or mount the same secret).
type Config struct {
	SigningKeyFile  string
	OperatorToken   string
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
}

// RegisterFlags registers the auth.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.SigningKeyFile, "auth.signing-key-file", "", "Ed25519 PEM key that signs access tokens; default <data-dir>/auth-signing.pem, generated if missing")
	fs.StringVar(&c.OperatorToken, "auth.operator-token", "", "bearer token for /admin/v1; default: generated into <data-dir>/operator-token")
	fs.DurationVar(&c.AccessTokenTTL, "auth.access-ttl", 15*time.Minute, "lifetime of access tokens")
	fs.DurationVar(&c.RefreshTokenTTL, "auth.refresh-ttl", 30*24*time.Hour, "lifetime of refresh tokens (a phone may stay offline for weeks)")
}

// Keys are the loaded secrets.
type Keys struct {
	cfg           Config
	signing       ed25519.PrivateKey
	operatorToken string
}

// Load reads the keys, generating missing ones under dataDir.
func Load(cfg Config, dataDir string) (*Keys, error) {
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = 15 * time.Minute
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = 30 * 24 * time.Hour
	}
	keyFile := cfg.SigningKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(dataDir, "auth-signing.pem")
	}
	signing, err := loadOrCreateKey(keyFile)
	if err != nil {
		return nil, err
	}
	token := cfg.OperatorToken
	if token == "" {
		if token, err = loadOrCreateToken(filepath.Join(dataDir, "operator-token")); err != nil {
			return nil, err
		}
	}
	return &Keys{cfg: cfg, signing: signing, operatorToken: token}, nil
}

// OperatorToken returns the /admin/v1 token (to print at start-up in dev).
func (k *Keys) OperatorToken() string { return k.operatorToken }

func loadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := writeSecret(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("signing key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not an Ed25519 key", path)
	}
	return key, nil
}

func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read operator token: %w", err)
	}
	token := RandomToken()
	return token, writeSecret(path, []byte(token+"\n"))
}

// writeSecret creates path with owner-only permissions; it never overwrites.
func writeSecret(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// RandomToken returns 32 random bytes, base64url.
func RandomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is how opaque tokens are stored: never in clear.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// HashPassword hashes a password for storage.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// CheckPassword compares in constant time. A missing hash still costs a
// bcrypt comparison, so timing does not reveal which usernames exist.
func CheckPassword(hash, password string) bool {
	if hash == "" {
		hash = dummyHash
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil && hash != dummyHash
}

var dummyHash, _ = HashPassword("not a real password")

// Claims are what an access token says about its bearer.
type Claims struct {
	jwt.RegisteredClaims
	Org    string `json:"org"`
	Region string `json:"region,omitempty"`
	Role   string `json:"role"` // agent
	// Epoch is the subject's token epoch when the token was issued; the
	// service that issued it refuses it once the epoch has moved on
	// (mobile-api: all of an agent's tokens revoked at once).
	Epoch int64 `json:"epoch,omitempty"`
}

// Issue signs an access token for subject with the given claims.
func (k *Keys) Issue(c Claims, now time.Time) (string, time.Time, error) {
	exp := now.Add(k.cfg.AccessTokenTTL)
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(exp)
	c.Issuer = "tani"
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(k.signing)
	return s, exp, err
}

// RefreshTTL is how long a new refresh token lives.
func (k *Keys) RefreshTTL() time.Duration { return k.cfg.RefreshTokenTTL }

// Parse verifies an access token and returns its claims.
func (k *Keys) Parse(token string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		return k.signing.Public(), nil
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer("tani"), jwt.WithExpirationRequired())
	if err != nil {
		return nil, apperr.Wrap(apperr.Unauthorized, err, "invalid or expired access token")
	}
	return &c, nil
}

// RequireRole accepts only requests bearing a valid access token with the
// given role, and puts its claims in the echo context.
func (k *Keys) RequireRole(role string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := bearer(c)
			if !ok {
				return apperr.Errorf(apperr.Unauthorized, "missing bearer token")
			}
			claims, err := k.Parse(token)
			if err != nil {
				return err
			}
			if claims.Role != role {
				return apperr.Errorf(apperr.Forbidden, "this API is for %ss", role)
			}
			c.Set("claims", claims)
			return next(c)
		}
	}
}

// ClaimsOf returns the claims RequireRole stored.
func ClaimsOf(c echo.Context) *Claims {
	claims, _ := c.Get("claims").(*Claims)
	return claims
}

// RequireOperator accepts only the operator token.
func (k *Keys) RequireOperator() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := bearer(c)
			if !ok {
				return apperr.Errorf(apperr.Unauthorized, "missing bearer token")
			}
			if subtle.ConstantTimeCompare([]byte(token), []byte(k.operatorToken)) != 1 {
				return apperr.Errorf(apperr.Unauthorized, "invalid operator token")
			}
			return next(c)
		}
	}
}

func bearer(c echo.Context) (string, bool) {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	token, ok := strings.CutPrefix(h, "Bearer ")
	return strings.TrimSpace(token), ok && token != ""
}
