package identity_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

func TestRequire(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t, identity.Migrations)
	dir, err := identity.New(identity.Config{DefaultKeyTTL: time.Hour}, identity.Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	org := func(kind identity.Kind) string {
		id := uuid.NewString()
		if _, err := pool.Exec(ctx, `INSERT INTO identity.organizations (id, name, kind) VALUES ($1, $2, $3)`, id, "org "+id, kind); err != nil {
			t.Fatal(err)
		}
		return id
	}
	bank, distributor, field := org(identity.Bank), org(identity.Distributor), org(identity.Field)
	key := func(orgID string, expires time.Time) (identity.APIKey, string) {
		k, token, err := dir.CreateAPIKey(ctx, identity.NewAPIKey{OrganizationID: orgID, Name: "scoring", ExpiresAt: expires})
		if err != nil {
			t.Fatal(err)
		}
		return k, token
	}
	bankKey, bankToken := key(bank, time.Now().Add(time.Hour))
	_, distributorToken := key(distributor, time.Now().Add(time.Hour))
	revoked, revokedToken := key(bank, time.Now().Add(time.Hour))
	if _, err := pool.Exec(ctx, `UPDATE identity.api_keys SET revoked_at = now() WHERE id = $1`, revoked.ID); err != nil {
		t.Fatal(err)
	}
	rotating, rotatingToken := key(bank, time.Now().Add(time.Hour))
	if _, err := pool.Exec(ctx, `UPDATE identity.api_keys SET revoked_at = now() + interval '1 hour' WHERE id = $1`, rotating.ID); err != nil {
		t.Fatal(err)
	}
	expired, expiredToken := key(bank, time.Now().Add(time.Hour))
	if _, err := pool.Exec(ctx, `UPDATE identity.api_keys SET expires_at = now() - interval '1 second' WHERE id = $1`, expired.ID); err != nil {
		t.Fatal(err)
	}
	wrongSecret := bankToken[:len(bankToken)-4] + "0000"
	if wrongSecret == bankToken {
		wrongSecret = bankToken[:len(bankToken)-4] + "1111"
	}

	cases := map[string]struct {
		header string
		want   apperr.Code // "" means allowed
	}{
		"OK":                 {"Bearer " + bankToken, ""},
		"OKRotatingOverlap":  {"Bearer " + rotatingToken, ""},
		"ErrMissing":         {"", apperr.Unauthorized},
		"ErrNotBearer":       {"Basic " + bankToken, apperr.Unauthorized},
		"ErrMalformed":       {"Bearer tani_nothex", apperr.Unauthorized},
		"ErrWrongSecret":     {"Bearer " + wrongSecret, apperr.Unauthorized},
		"ErrRevoked":         {"Bearer " + revokedToken, apperr.Unauthorized},
		"ErrExpired":         {"Bearer " + expiredToken, apperr.Unauthorized},
		"ErrDistributorsKey": {"Bearer " + distributorToken, apperr.Forbidden},
		"ErrUnknownKey":      {"Bearer tani_" + strings.ReplaceAll(uuid.NewString(), "-", "") + bankToken[len(bankToken)-65:], apperr.Unauthorized},
	}
	e := echo.New()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/bank/v1/x", nil)
			if tc.header != "" {
				req.Header.Set(echo.HeaderAuthorization, tc.header)
			}
			c := e.NewContext(req, httptest.NewRecorder())
			var got identity.Principal
			err := dir.Require(identity.Bank)(func(c echo.Context) error {
				got, _ = identity.PrincipalOf(c)
				return nil
			})(c)
			if tc.want == "" {
				if err != nil || got.OrganizationID != bank || got.Kind != identity.Bank || got.APIKeyID == "" {
					t.Errorf("got %v, %+v, want bank %s", err, got, bank)
				}
				return
			}
			if !apperr.Is(err, tc.want) || got.OrganizationID != "" {
				t.Errorf("got %v (principal %+v), want %s", err, got, tc.want)
			}
		})
	}
	if len(bankKey.Scopes) != 8 {
		t.Errorf("got default scopes %v, want every consent scope", bankKey.Scopes)
	}
	t.Run("ErrKeyForFieldOrganization", func(t *testing.T) {
		_, _, err := dir.CreateAPIKey(ctx, identity.NewAPIKey{OrganizationID: field, Name: "x", ExpiresAt: time.Now().Add(time.Hour)})
		if !apperr.Is(err, apperr.Invalid) {
			t.Errorf("got %v, want Invalid", err)
		}
	})
}
