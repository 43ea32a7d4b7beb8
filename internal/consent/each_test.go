package consent_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/services/ingest"
)

// TestReadEach: many farmers in one read; each gets its own access-log
// row, allowed or denied; only the allowed are handed to the read.
func TestReadEach(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t, identity.Migrations, ingest.Migrations, consent.Migrations)
	gate := consent.NewGate(pool)
	bank := uuid.NewString()
	live, expired, other, none := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	liveConsent := grant(t, pool, live, bank, []string{"plots", "credit"}, time.Now().Add(time.Hour), nil)
	grant(t, pool, expired, bank, []string{"plots", "credit"}, time.Now().Add(-time.Hour), nil)
	grant(t, pool, other, uuid.NewString(), []string{"plots", "credit"}, time.Now().Add(time.Hour), nil)
	p := identity.Principal{OrganizationID: bank, Kind: identity.Bank, APIKeyID: uuid.NewString(), Scopes: []string{"plots", "credit"}}
	farmers := []string{live, expired, other, none}
	a := consent.Access{Scopes: []consent.Scope{consent.Credit, consent.Plots}, Purpose: "re-scoring", RequestID: "each"}
	t.Run("OK", func(t *testing.T) {
		var got map[string]consent.Grant
		if err := gate.ReadEach(ctx, p, a, farmers, func(ctx context.Context, tx pgx.Tx, allowed map[string]consent.Grant) error {
			got = allowed
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[live].ConsentID != liveConsent {
			t.Errorf("allowed %v, want only %s under %s", got, live, liveConsent)
		}
		var allowed, denied int
		pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE allowed), count(*) FILTER (WHERE NOT allowed) FROM consent.access_log WHERE request_id = 'each'`).Scan(&allowed, &denied)
		if allowed != 1 || denied != 3 {
			t.Errorf("logged %d allowed and %d denied, want 1 and 3", allowed, denied)
		}
	})
	t.Run("ErrKeyNotScopedDeniesAll", func(t *testing.T) {
		narrow := p
		narrow.Scopes = []string{"plots"}
		a := a
		a.RequestID = "narrow"
		called := 0
		if err := gate.ReadEach(ctx, narrow, a, farmers, func(ctx context.Context, tx pgx.Tx, allowed map[string]consent.Grant) error {
			called = len(allowed)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var denied int
		pool.QueryRow(ctx, `SELECT count(*) FROM consent.access_log WHERE request_id = 'narrow' AND NOT allowed AND reason LIKE '%not scoped%'`).Scan(&denied)
		if called != 0 || denied != 4 {
			t.Errorf("%d allowed, %d denied for the key's scope, want 0 and 4", called, denied)
		}
	})
	t.Run("ErrBadFarmerID", func(t *testing.T) {
		if err := gate.ReadEach(ctx, p, a, []string{live, "NOT-A-UUID"}, noRead2); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("got %v, want Invalid", err)
		}
	})
}

func noRead2(context.Context, pgx.Tx, map[string]consent.Grant) error { return nil }
