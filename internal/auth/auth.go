package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/keyfile"
)

// Config locates the keys. Every process of a deployment must use the same
// files (`tani keys init`); only target all generates missing ones into its
// data directory.
type Config struct {
	SigningKeyFile    string
	OperatorToken     string
	OperatorTokenFile string
	AccessTokenTTL    time.Duration
	RefreshTokenTTL   time.Duration
}

// RegisterFlags registers the auth.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.SigningKeyFile, "auth.signing-key-file", "", "Ed25519 PEM key that signs access tokens; every mobile-api process must use the same one (`tani keys init`); default <data-dir>/auth-signing.pem, generated only by target all")
	fs.StringVar(&c.OperatorToken, "auth.operator-token", "", "bearer token for /admin/v1 (or -auth.operator-token-file)")
	fs.StringVar(&c.OperatorTokenFile, "auth.operator-token-file", "", "file holding the bearer token for /admin/v1 (`tani keys init`); default <data-dir>/operator-token, generated only by target all")
	fs.DurationVar(&c.AccessTokenTTL, "auth.access-ttl", 15*time.Minute, "lifetime of access tokens")
	fs.DurationVar(&c.RefreshTokenTTL, "auth.refresh-ttl", 30*24*time.Hour, "lifetime of refresh tokens (a phone may stay offline for weeks)")
}

// Keys sign and verify agents' access tokens.
type Keys struct {
	cfg     Config
	signing ed25519.PrivateKey
}

// New builds the keys from the contents of a signing key file
// (SigningKeyKind).
func New(cfg Config, signingKeyFile []byte) (*Keys, error) {
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = 15 * time.Minute
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = 30 * 24 * time.Hour
	}
	signing, err := parseSigningKey(signingKeyFile)
	if err != nil {
		return nil, fmt.Errorf("access-token signing key: %w", err)
	}
	return &Keys{cfg: cfg, signing: signing}, nil
}

// ID is a fingerprint of the signing key (of its public half), safe to
// store and show: processes with the same key have the same ID.
func (k *Keys) ID() string {
	sum := sha256.Sum256(k.signing.Public().(ed25519.PublicKey))
	return hex.EncodeToString(sum[:16])
}

// SigningKeyKind is the access-token signing key file: an Ed25519 private
// key, PKCS #8 in PEM.
var SigningKeyKind = keyfile.Kind{
	Name: "access-token signing key",
	Flag: "auth.signing-key-file",
	File: "auth-signing.pem",
	New: func() ([]byte, error) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	},
	Check: func(data []byte) error {
		_, err := parseSigningKey(data)
		return err
	},
}

func parseSigningKey(data []byte) (ed25519.PrivateKey, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("unexpected data after the PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS #8 private key")
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return key, nil
}

// MinOperatorTokenLength is the shortest operator token a file may hold:
// the token guards every administrative route.
const MinOperatorTokenLength = 32

// OperatorTokenKind is the operator token file: one line, a random
// base64url token.
var OperatorTokenKind = keyfile.Kind{
	Name: "operator token",
	Flag: "auth.operator-token-file",
	File: "operator-token",
	New:  func() ([]byte, error) { return []byte(RandomToken() + "\n"), nil },
	Check: func(data []byte) error {
		_, err := ParseOperatorToken(data)
		return err
	},
}

// ParseOperatorToken reads the token from an operator token file.
func ParseOperatorToken(data []byte) (string, error) {
	token := strings.TrimSpace(string(data))
	if len(token) < MinOperatorTokenLength {
		return "", fmt.Errorf("the token must be at least %d characters, found %d", MinOperatorTokenLength, len(token))
	}
	if strings.IndexFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return "", errors.New("the token must be one line without spaces or control characters")
	}
	return token, nil
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

// RequireOperator accepts only requests bearing the operator token.
func RequireOperator(operatorToken string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := CheckOperator(c, operatorToken); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// CheckOperator returns nil if the request bears the operator token,
// compared in constant time, and an Unauthorized error otherwise.
func CheckOperator(c echo.Context, operatorToken string) error {
	token, ok := bearer(c)
	if !ok {
		return apperr.Errorf(apperr.Unauthorized, "missing bearer token")
	}
	if operatorToken == "" || subtle.ConstantTimeCompare([]byte(token), []byte(operatorToken)) != 1 {
		return apperr.Errorf(apperr.Unauthorized, "invalid operator token")
	}
	return nil
}

func bearer(c echo.Context) (string, bool) {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	token, ok := strings.CutPrefix(h, "Bearer ")
	return strings.TrimSpace(token), ok && token != ""
}
