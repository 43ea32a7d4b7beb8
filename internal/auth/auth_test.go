package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
)

// mustKeyFile returns a fresh signing key file, as `tani keys init` writes.
func mustKeyFile(tb testing.TB) []byte {
	tb.Helper()
	data, err := auth.SigningKeyKind.New()
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// MustKeys returns keys with a fresh signing key and default lifetimes.
func MustKeys(tb testing.TB) *auth.Keys {
	tb.Helper()
	k, err := auth.New(auth.Config{}, mustKeyFile(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

var agent = auth.Claims{
	RegisteredClaims: jwt.RegisteredClaims{Subject: "agent-7"},
	Org:              "org-1", Region: "west-java", Role: "agent",
}

func TestIssueParse(t *testing.T) {
	// priv is k's signing key, for forging tokens with the real key.
	priv, k := mustKeysWithPrivate(t)
	now := time.Now()

	t.Run("OK_RoundTrip", func(t *testing.T) {
		token, exp, err := k.Issue(agent, now)
		if err != nil {
			t.Fatal(err)
		}
		if want := now.Add(15 * time.Minute); !exp.Equal(want) {
			t.Errorf("expires %v, want %v (the default 15 min)", exp, want)
		}
		c, err := k.Parse(token)
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "agent-7" || c.Org != "org-1" || c.Region != "west-java" || c.Role != "agent" || c.Issuer != "tani" {
			t.Errorf("got claims %+v, want the issued ones with issuer tani", c)
		}
	})
	t.Run("OK_ConfiguredLifetime", func(t *testing.T) {
		k, err := auth.New(auth.Config{AccessTokenTTL: time.Minute, RefreshTokenTTL: time.Hour}, mustKeyFile(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, exp, _ := k.Issue(agent, now); !exp.Equal(now.Add(time.Minute)) {
			t.Errorf("expires %v, want one minute after issue", exp)
		}
		if k.RefreshTTL() != time.Hour {
			t.Errorf("refresh TTL %v, want 1h", k.RefreshTTL())
		}
		if MustKeys(t).RefreshTTL() != 30*24*time.Hour {
			t.Error("the default refresh TTL is not 30 days")
		}
	})
	t.Run("ErrExpired", func(t *testing.T) {
		token, _, err := k.Issue(agent, now.Add(-16*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		assertUnauthorized(t, k, token)
	})
	t.Run("ErrOtherKey", func(t *testing.T) {
		token, _, _ := MustKeys(t).Issue(agent, now)
		assertUnauthorized(t, k, token)
	})
	t.Run("OK_SameKeyFileAcrossProcesses", func(t *testing.T) {
		// Two mobile-api processes given one key file accept each other's
		// tokens; with different files (ErrOtherKey) they would not.
		file := mustKeyFile(t)
		a, _ := auth.New(auth.Config{}, file)
		b, _ := auth.New(auth.Config{}, file)
		token, _, _ := a.Issue(agent, now)
		if _, err := b.Parse(token); err != nil {
			t.Errorf("a token of one process is refused by another with the same key: %v", err)
		}
	})
	t.Run("ErrTamperedClaims", func(t *testing.T) {
		token, _, _ := k.Issue(agent, now)
		parts := strings.Split(token, ".")
		claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
		forged := strings.Replace(string(claims), `"role":"agent"`, `"role":"operator"`, 1)
		if forged == string(claims) {
			t.Fatal("test setup: role claim not found")
		}
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
		assertUnauthorized(t, k, strings.Join(parts, "."))
	})
	t.Run("OK_HandMadeTokenWithTheKey", func(t *testing.T) {
		// The control for the forgeries below: with the right key, issuer
		// and expiry, a token made outside Issue is accepted, so each
		// refusal below is for the one thing that case changes.
		c := agent
		c.Issuer, c.ExpiresAt = "tani", jwt.NewNumericDate(now.Add(time.Minute))
		token, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(priv)
		if _, err := k.Parse(token); err != nil {
			t.Errorf("Parse: %v", err)
		}
	})
	t.Run("ErrAlgNone", func(t *testing.T) {
		c := agent
		c.Issuer, c.ExpiresAt = "tani", jwt.NewNumericDate(now.Add(time.Minute))
		token, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		assertUnauthorized(t, k, token)
	})
	t.Run("ErrAlgConfusionHMACWithPublicKey", func(t *testing.T) {
		// The classic confusion: an HS256 token whose HMAC secret is the
		// verifier's public key, which an attacker may know.
		c := agent
		c.Issuer, c.ExpiresAt = "tani", jwt.NewNumericDate(now.Add(time.Minute))
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(priv.Public().(ed25519.PublicKey)))
		if err != nil {
			t.Fatal(err)
		}
		assertUnauthorized(t, k, token)
	})
	t.Run("ErrWrongIssuer", func(t *testing.T) {
		c := agent
		c.Issuer, c.ExpiresAt = "someone-else", jwt.NewNumericDate(now.Add(time.Minute))
		token, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(priv)
		assertUnauthorized(t, k, token)
	})
	t.Run("ErrNoExpiry", func(t *testing.T) {
		c := agent
		c.Issuer = "tani"
		token, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(priv)
		assertUnauthorized(t, k, token)
	})
	t.Run("ErrGarbage", func(t *testing.T) {
		for _, token := range []string{"", "not-a-jwt", "a.b.c"} {
			assertUnauthorized(t, k, token)
		}
	})
}

// mustKeysWithPrivate returns keys and their private signing key, for
// tests that forge tokens with the real key.
func mustKeysWithPrivate(t *testing.T) (ed25519.PrivateKey, *auth.Keys) {
	t.Helper()
	file := mustKeyFile(t)
	block, _ := pem.Decode(file)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	k, err := auth.New(auth.Config{}, file)
	if err != nil {
		t.Fatal(err)
	}
	return key.(ed25519.PrivateKey), k
}

func assertUnauthorized(t *testing.T, k *auth.Keys, token string) {
	t.Helper()
	c, err := k.Parse(token)
	if !apperr.Is(err, apperr.Unauthorized) {
		t.Errorf("Parse = %+v, %v; want an unauthorized error", c, err)
	}
}

func TestNew_ErrMalformedKeyFile(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	good := mustKeyFile(t)
	for name, data := range map[string][]byte{
		"not PEM":            []byte("hello"),
		"a certificate":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
		"bad DER":            pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
		"an ECDSA key":       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}),
		"data after the key": append(append([]byte{}, good...), []byte("extra")...),
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if _, err := auth.New(auth.Config{}, data); err == nil {
				t.Error("accepted a malformed signing key file")
			}
			if err := auth.SigningKeyKind.Check(data); err == nil {
				t.Error("SigningKeyKind.Check accepts it")
			}
		})
	}
	t.Run("OK_GeneratedFileChecks", func(t *testing.T) {
		if err := auth.SigningKeyKind.Check(good); err != nil {
			t.Error(err)
		}
	})
}

func TestRequireRole(t *testing.T) {
	k := MustKeys(t)
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) { c.String(statusOf(err), string(apperr.CodeOf(err))) }
	var seen *auth.Claims
	e.GET("/agent", func(c echo.Context) error { seen = auth.ClaimsOf(c); return c.NoContent(http.StatusNoContent) }, k.RequireRole("agent"))
	agentToken, _, _ := k.Issue(agent, time.Now())
	reviewer := agent
	reviewer.Role = "reviewer"
	reviewerToken, _, _ := k.Issue(reviewer, time.Now())
	for name, c := range map[string]struct {
		header string
		want   int
	}{
		"OK":               {"Bearer " + agentToken, http.StatusNoContent},
		"ErrNoHeader":      {"", http.StatusUnauthorized},
		"ErrNotBearer":     {"Basic " + agentToken, http.StatusUnauthorized},
		"ErrEmptyBearer":   {"Bearer ", http.StatusUnauthorized},
		"ErrBadToken":      {"Bearer " + agentToken + "x", http.StatusUnauthorized},
		"ErrForbiddenRole": {"Bearer " + reviewerToken, http.StatusForbidden},
	} {
		t.Run(name, func(t *testing.T) {
			seen = nil
			if got := serve(e, "/agent", c.header); got != c.want {
				t.Errorf("got %d, want %d", got, c.want)
			}
			if c.want == http.StatusNoContent && (seen == nil || seen.Subject != "agent-7") {
				t.Errorf("handler saw claims %+v, want agent-7's", seen)
			}
		})
	}
}

func TestRequireOperator(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef-operator"
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) { c.String(statusOf(err), string(apperr.CodeOf(err))) }
	e.GET("/admin", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, auth.RequireOperator(token))
	e.GET("/unset", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, auth.RequireOperator(""))
	for name, c := range map[string]struct {
		path, header string
		want         int
	}{
		"OK":                   {"/admin", "Bearer " + token, http.StatusNoContent},
		"OK_SurroundingSpace":  {"/admin", "Bearer  " + token + " ", http.StatusNoContent},
		"ErrNoHeader":          {"/admin", "", http.StatusUnauthorized},
		"ErrPrefix":            {"/admin", "Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		"ErrLonger":            {"/admin", "Bearer " + token + "0", http.StatusUnauthorized},
		"ErrCase":              {"/admin", "Bearer " + strings.ToUpper(token), http.StatusUnauthorized},
		"ErrNoTokenConfigured": {"/unset", "Bearer x", http.StatusUnauthorized},
	} {
		t.Run(name, func(t *testing.T) {
			if got := serve(e, c.path, c.header); got != c.want {
				t.Errorf("got %d, want %d", got, c.want)
			}
		})
	}
}

func TestParseOperatorToken(t *testing.T) {
	t.Run("OK_GeneratedFile", func(t *testing.T) {
		data, err := auth.OperatorTokenKind.New()
		if err != nil {
			t.Fatal(err)
		}
		token, err := auth.ParseOperatorToken(data)
		if err != nil || token != strings.TrimSpace(string(data)) || strings.ContainsAny(token, "\n ") {
			t.Errorf("got %q, %v; want the file's one line", token, err)
		}
	})
	for name, data := range map[string]string{
		"too short":     "short-token\n",
		"inner space":   strings.Repeat("a", 20) + " " + strings.Repeat("b", 20),
		"two lines":     strings.Repeat("a", 20) + "\n" + strings.Repeat("b", 20),
		"control chars": strings.Repeat("a", 40) + "\x00",
	} {
		t.Run("Err_"+strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			_, err := auth.ParseOperatorToken([]byte(data))
			if err == nil {
				t.Fatal("accepted a malformed operator token file")
			}
			if strings.Contains(err.Error(), "aaaaaaaa") {
				t.Errorf("the error %q quotes the token", err)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	t.Run("OK_RandomTokensUnique", func(t *testing.T) {
		seen := map[string]bool{}
		for range 1000 {
			tok := auth.RandomToken()
			if b, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(b) != 32 {
				t.Fatalf("token %q is not 32 bytes of base64url (%v)", tok, err)
			}
			if seen[tok] {
				t.Fatalf("token %q repeated", tok)
			}
			seen[tok] = true
		}
	})
	t.Run("OK_HashTokenStable", func(t *testing.T) {
		tok := auth.RandomToken()
		a, b := auth.HashToken(tok), auth.HashToken(tok)
		if len(a) != 32 || string(a) != string(b) {
			t.Errorf("got %x and %x, want one 32-byte SHA-256", a, b)
		}
		if string(a) == string(auth.HashToken(tok+"x")) {
			t.Error("two refresh tokens share a hash")
		}
		if strings.Contains(string(a), tok) {
			t.Error("the stored form holds the token")
		}
	})
}

func TestPasswords(t *testing.T) {
	hash, err := auth.HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(hash, "correct horse") || !strings.HasPrefix(hash, "$2") {
		t.Fatalf("hash %q is not a bcrypt hash", hash)
	}
	for name, c := range map[string]struct {
		hash, password string
		want           bool
	}{
		"OK":                  {hash, "correct horse battery", true},
		"ErrWrongPassword":    {hash, "correct horse batterY", false},
		"ErrEmptyPassword":    {hash, "", false},
		"ErrNoHash":           {"", "correct horse battery", false},
		"ErrNoHashDummyMatch": {"", "not a real password", false}, // the timing dummy never lets anyone in
		"ErrMalformedHash":    {"$2a$10$short", "correct horse battery", false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := auth.CheckPassword(c.hash, c.password); got != c.want {
				t.Errorf("CheckPassword = %v, want %v", got, c.want)
			}
		})
	}
	t.Run("OK_Salted", func(t *testing.T) {
		again, _ := auth.HashPassword("correct horse battery")
		if again == hash {
			t.Error("two hashes of one password are identical")
		}
	})
}

func serve(e *echo.Echo, path, header string) int {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if header != "" {
		req.Header.Set(echo.HeaderAuthorization, header)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec.Code
}

func statusOf(err error) int {
	switch apperr.CodeOf(err) {
	case apperr.Unauthorized:
		return http.StatusUnauthorized
	case apperr.Forbidden:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func TestID(t *testing.T) {
	file := mustKeyFile(t)
	a, _ := auth.New(auth.Config{}, file)
	b, _ := auth.New(auth.Config{AccessTokenTTL: time.Hour}, file)
	if a.ID() == "" || a.ID() != b.ID() {
		t.Errorf("one key file, IDs %q and %q; want one non-empty ID", a.ID(), b.ID())
	}
	if MustKeys(t).ID() == a.ID() {
		t.Error("two keys share an ID")
	}
}
