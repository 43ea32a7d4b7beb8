package consent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/services/ingest"
)

// grant stores a consent as ingest does from a signed consent.granted
// record.
func grant(t *testing.T, pool *pgxpool.Pool, farmer, org string, scopes []string, expires time.Time, revoked *time.Time) string {
	t.Helper()
	id := uuid.NewString()
	_, err := pool.Exec(context.Background(), `
		INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, now(), $7)`, id, farmer, org, scopes, expires, uuid.NewString(), revoked)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestGate(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t, identity.Migrations, ingest.Migrations, consent.Migrations)
	gate := consent.NewGate(pool)
	bankA, bankB := uuid.NewString(), uuid.NewString()
	farmer := uuid.NewString()
	past := time.Now().Add(-time.Hour)
	live := grant(t, pool, farmer, bankA, []string{"plots", "harvests"}, time.Now().Add(24*time.Hour), nil)

	keyA := identity.Principal{OrganizationID: bankA, Kind: identity.Bank, APIKeyID: uuid.NewString(), Scopes: []string{"plots", "harvests", "credit"}}
	cases := map[string]struct {
		p       identity.Principal
		farmer  string
		scopes  []consent.Scope
		allowed bool
	}{
		"OK":                {keyA, farmer, []consent.Scope{consent.Plots}, true},
		"OKBothScopes":      {keyA, farmer, []consent.Scope{consent.Harvests, consent.Plots}, true},
		"ErrWrongScope":     {keyA, farmer, []consent.Scope{consent.Sales}, false},
		"ErrOneScopeAbsent": {keyA, farmer, []consent.Scope{consent.Plots, consent.Credit}, false},
		"ErrAnotherBank":    {identity.Principal{OrganizationID: bankB, Kind: identity.Bank, UserID: uuid.NewString()}, farmer, []consent.Scope{consent.Plots}, false},
		"ErrNoConsent":      {keyA, uuid.NewString(), []consent.Scope{consent.Plots}, false},
		"ErrKeyNotScoped":   {identity.Principal{OrganizationID: bankA, Kind: identity.Bank, APIKeyID: uuid.NewString(), Scopes: []string{"credit"}}, farmer, []consent.Scope{consent.Plots}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var before int
			pool.QueryRow(ctx, `SELECT count(*) FROM consent.access_log`).Scan(&before)
			called := false
			err := gate.Read(ctx, tc.p, consent.Access{FarmerID: tc.farmer, Scopes: tc.scopes, Purpose: "credit profile", RequestID: name},
				func(ctx context.Context, tx pgx.Tx, g consent.Grant) error {
					called = true
					if g.ConsentID != live {
						t.Errorf("got consent %s, want %s", g.ConsentID, live)
					}
					return nil
				})
			var allowed bool
			var consentID *string
			if err := pool.QueryRow(ctx, `SELECT allowed, consent_id::text FROM consent.access_log WHERE request_id = $1`, name).Scan(&allowed, &consentID); err != nil {
				t.Fatalf("access-log row: %v", err)
			}
			if allowed != tc.allowed || called != tc.allowed {
				t.Errorf("got logged allowed=%v, read called=%v, want %v", allowed, called, tc.allowed)
			}
			if tc.allowed && (err != nil || consentID == nil || *consentID != live) {
				t.Errorf("got err %v, consent %v, want nil and %s", err, consentID, live)
			}
			if !tc.allowed && !apperr.Is(err, apperr.Forbidden) {
				t.Errorf("got err %v, want Forbidden", err)
			}
		})
	}

	t.Run("ErrExpired", func(t *testing.T) {
		f := uuid.NewString()
		grant(t, pool, f, bankA, []string{"plots"}, past, nil)
		if err := gate.Read(ctx, keyA, consent.Access{FarmerID: f, Scopes: []consent.Scope{consent.Plots}, Purpose: "p"}, noRead); !apperr.Is(err, apperr.Forbidden) {
			t.Errorf("got %v, want Forbidden", err)
		}
	})
	t.Run("ErrRevoked", func(t *testing.T) {
		f := uuid.NewString()
		grant(t, pool, f, bankA, []string{"plots"}, time.Now().Add(time.Hour), &past)
		if err := gate.Read(ctx, keyA, consent.Access{FarmerID: f, Scopes: []consent.Scope{consent.Plots}, Purpose: "p"}, noRead); !apperr.Is(err, apperr.Forbidden) {
			t.Errorf("got %v, want Forbidden", err)
		}
	})
	t.Run("ErrReadFailsRollsBackLog", func(t *testing.T) {
		boom := errors.New("boom")
		err := gate.Read(ctx, keyA, consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p", RequestID: "rollback"},
			func(context.Context, pgx.Tx, consent.Grant) error { return boom })
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM consent.access_log WHERE request_id = 'rollback'`).Scan(&n)
		if !errors.Is(err, boom) || n != 0 {
			t.Errorf("got err %v and %d rows, want boom and 0", err, n)
		}
	})
	t.Run("OKDurableLog", func(t *testing.T) {
		durable := consent.NewGate(pool).WithDurableLog(true)
		if err := durable.Read(ctx, keyA, consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p", RequestID: "durable"}, noRead); err != nil {
			t.Fatal(err)
		}
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM consent.access_log WHERE request_id = 'durable' AND allowed`).Scan(&n)
		if n != 1 {
			t.Errorf("got %d rows, want 1", n)
		}
	})
	t.Run("ReadOnly", func(t *testing.T) {
		read := consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p", RequestID: "readonly", ReadOnly: true}
		if err := gate.Read(ctx, keyA, read, func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
			var n int
			return tx.QueryRow(ctx, `SELECT count(*) FROM ingest.consents WHERE farmer_id = $1`, farmer).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		// A read-only access cannot write (its commit does not wait for
		// the flush): the write fails and nothing stays, not even the log row.
		read.RequestID = "readonly-write"
		err := gate.Read(ctx, keyA, read, func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
			_, err := tx.Exec(ctx, `UPDATE ingest.consents SET scopes = scopes WHERE farmer_id = $1`, farmer)
			return err
		})
		var ok, written int
		pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE request_id = 'readonly'), count(*) FILTER (WHERE request_id = 'readonly-write') FROM consent.access_log`).Scan(&ok, &written)
		if err == nil || ok != 1 || written != 0 {
			t.Errorf("got %v, rows %d and %d; want an error, 1 row for the read and none for the write", err, ok, written)
		}
		// A read that writes (not ReadOnly) commits its write with the row.
		read.ReadOnly, read.RequestID = false, "writes"
		if err := gate.Read(ctx, keyA, read, func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
			_, err := tx.Exec(ctx, `UPDATE ingest.consents SET scopes = scopes WHERE farmer_id = $1`, farmer)
			return err
		}); err != nil {
			t.Errorf("a writing access: %v", err)
		}
	})
	t.Run("ErrNestedTransaction", func(t *testing.T) {
		err := gate.Read(ctx, keyA, consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p", RequestID: "nested"},
			func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
				_, err := tx.Begin(ctx)
				return err
			})
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM consent.access_log WHERE request_id = 'nested'`).Scan(&n)
		if err == nil || n != 0 {
			t.Errorf("got %v and %d rows, want an error and none", err, n)
		}
		// The pool still serves reads after failed ones.
		for range 20 {
			if err := gate.Read(ctx, keyA, consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p"}, noRead); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("ErrBadInput", func(t *testing.T) {
		for _, a := range []consent.Access{
			{FarmerID: "FARMER", Scopes: []consent.Scope{consent.Plots}, Purpose: "p"},
			{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: ""},
		} {
			if err := gate.Read(ctx, keyA, a, noRead); !apperr.Is(err, apperr.Invalid) {
				t.Errorf("%+v: got %v, want Invalid", a, err)
			}
		}
		if err := gate.Read(ctx, identity.Principal{OrganizationID: bankA, Kind: identity.Field, UserID: "u"},
			consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p"}, noRead); !apperr.Is(err, apperr.Forbidden) {
			t.Errorf("field organization: got %v, want Forbidden", err)
		}
	})
}

func noRead(context.Context, pgx.Tx, consent.Grant) error { return nil }

func TestGate_Allows(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t, identity.Migrations, ingest.Migrations, consent.Migrations)
	gate := consent.NewGate(pool)
	bankA, bankB, farmer, other := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	past := time.Now().Add(-time.Hour)
	grant(t, pool, farmer, bankA, []string{"plots", "harvests"}, time.Now().Add(24*time.Hour), nil)
	grant(t, pool, other, bankA, []string{"plots"}, time.Now().Add(24*time.Hour), &past)
	grant(t, pool, other, bankB, []string{"plots"}, past, nil)
	checks := []consent.Check{
		{bankA, farmer, consent.Plots},    // OK
		{bankA, farmer, consent.Harvests}, // OK
		{bankA, farmer, consent.Sales},    // not covered
		{bankB, farmer, consent.Plots},    // another organization
		{bankA, other, consent.Plots},     // revoked
		{bankB, other, consent.Plots},     // expired
		{bankA, "not-a-uuid", consent.Plots},
		{bankA, farmer, "everything"},
	}
	want := []bool{true, true, false, false, false, false, false, false}
	got, err := gate.AllowsAll(ctx, checks)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("check %d %+v: got %v, want %v", i, checks[i], got[i], want[i])
		}
		one, err := gate.Allows(ctx, checks[i].OrganizationID, checks[i].FarmerID, checks[i].Scope)
		if err != nil || one != want[i] {
			t.Errorf("Allows %d: got %v (%v), want %v", i, one, err, want[i])
		}
	}
	var logged int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM consent.access_log`).Scan(&logged); err != nil || logged != 0 {
		t.Errorf("Allows logged %d accesses (%v): it reads no data", logged, err)
	}
}
