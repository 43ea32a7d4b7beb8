package consent_test

import (
	"context"
	"errors"
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

// TestGate_ReadBatch: the read queued behind the check runs only when a
// live consent allows it; the denial is logged and answered as Read's,
// whether the farmer exists or not; then's writes commit with the
// access-log row, and its error rolls both back.
func TestGate_ReadBatch(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t, identity.Migrations, ingest.Migrations, consent.Migrations)
	gate := consent.NewGate(pool)
	bankA, bankB := uuid.NewString(), uuid.NewString()
	farmer := uuid.NewString()
	past := time.Now().Add(-time.Hour)
	live := grant(t, pool, farmer, bankA, []string{"plots", "harvests"}, time.Now().Add(24*time.Hour), nil)
	expired, revoked := uuid.NewString(), uuid.NewString()
	grant(t, pool, expired, bankA, []string{"plots"}, past, nil)
	grant(t, pool, revoked, bankA, []string{"plots"}, time.Now().Add(time.Hour), &past)
	if _, err := pool.Exec(ctx, `CREATE TABLE public.scratch (request_id text)`); err != nil {
		t.Fatal(err)
	}
	keyA := identity.Principal{OrganizationID: bankA, Kind: identity.Bank, APIKeyID: uuid.NewString(), Scopes: []string{"plots", "harvests", "credit"}}
	logged := func(request string) (rows int, allowed bool, consentID *string, reason *string) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT count(*) OVER (), allowed, consent_id::text, reason FROM consent.access_log WHERE request_id = $1`, request).
			Scan(&rows, &allowed, &consentID, &reason); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return rows, allowed, consentID, reason
	}
	// read queues a read of the farmer's consents; ran says whether its
	// rows reached this process.
	read := func(f string, ran *bool) func(b *pgx.Batch) {
		return func(b *pgx.Batch) {
			b.Queue(`SELECT count(*) FROM ingest.consents WHERE farmer_id = $1`, f).QueryRow(func(row pgx.Row) error {
				var n int
				*ran = true
				return row.Scan(&n)
			})
		}
	}

	for name, tc := range map[string]struct {
		p       identity.Principal
		farmer  string
		scopes  []consent.Scope
		allowed bool
	}{
		"OK":                {keyA, farmer, []consent.Scope{consent.Plots}, true},
		"OKBothScopes":      {keyA, farmer, []consent.Scope{consent.Harvests, consent.Plots}, true},
		"ErrOneScopeAbsent": {keyA, farmer, []consent.Scope{consent.Plots, consent.Credit}, false},
		"ErrAnotherBank":    {identity.Principal{OrganizationID: bankB, Kind: identity.Bank, UserID: uuid.NewString()}, farmer, []consent.Scope{consent.Plots}, false},
		"ErrNoSuchFarmer":   {keyA, uuid.NewString(), []consent.Scope{consent.Plots}, false},
		"ErrExpired":        {keyA, expired, []consent.Scope{consent.Plots}, false},
		"ErrRevoked":        {keyA, revoked, []consent.Scope{consent.Plots}, false},
		"ErrKeyNotScoped":   {identity.Principal{OrganizationID: bankA, Kind: identity.Bank, APIKeyID: uuid.NewString(), Scopes: []string{"credit"}}, farmer, []consent.Scope{consent.Plots}, false},
	} {
		for _, withThen := range []bool{false, true} {
			request := name
			var then func(context.Context, consent.Grant, *pgx.Batch) error
			if withThen {
				request += "/then"
				then = func(_ context.Context, _ consent.Grant, finish *pgx.Batch) error {
					finish.Queue(`INSERT INTO public.scratch VALUES ($1)`, request)
					return nil
				}
			}
			t.Run(request, func(t *testing.T) {
				var ran bool
				g, err := gate.ReadBatch(ctx, tc.p, consent.Access{FarmerID: tc.farmer, Scopes: tc.scopes, Purpose: "credit profile", RequestID: request}, read(tc.farmer, &ran), then)
				rows, allowed, consentID, reason := logged(request)
				var wrote int
				pool.QueryRow(ctx, `SELECT count(*) FROM public.scratch WHERE request_id = $1`, request).Scan(&wrote)
				if tc.allowed {
					if err != nil || !ran || rows != 1 || !allowed || consentID == nil || *consentID != live || g.ConsentID != live || len(g.Scopes) != 2 {
						t.Errorf("got err %v, read ran %v, %d rows (allowed %v, consent %v), grant %+v; want the read, one allowed row naming %s", err, ran, rows, allowed, consentID, g, live)
					}
					if withThen && wrote != 1 {
						t.Errorf("then's write: %d rows, want 1", wrote)
					}
					return
				}
				// The same answer as Read's, whatever the reason; the read
				// never ran; one denied row with the reason.
				if !errors.Is(err, consent.Denied) || ran || rows != 1 || allowed || reason == nil || wrote != 0 {
					t.Errorf("got err %v, read ran %v, %d rows (allowed %v, reason %v), then wrote %d; want Denied, no read, one denied row", err, ran, rows, allowed, reason, wrote)
				}
			})
		}
	}

	t.Run("ErrThenRollsBack", func(t *testing.T) {
		boom := errors.New("boom")
		var ran bool
		_, err := gate.ReadBatch(ctx, keyA, consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p", RequestID: "then-fails"}, read(farmer, &ran),
			func(_ context.Context, _ consent.Grant, finish *pgx.Batch) error {
				finish.Queue(`INSERT INTO public.scratch VALUES ('then-fails')`)
				return boom
			})
		rows, _, _, _ := logged("then-fails")
		var wrote int
		pool.QueryRow(ctx, `SELECT count(*) FROM public.scratch WHERE request_id = 'then-fails'`).Scan(&wrote)
		if !errors.Is(err, boom) || rows != 0 || wrote != 0 {
			t.Errorf("got %v, %d log rows, %d writes; want boom and nothing stored", err, rows, wrote)
		}
	})
	t.Run("ErrQueryFailsRollsBack", func(t *testing.T) {
		_, err := gate.ReadBatch(ctx, keyA, consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p", RequestID: "query-fails"},
			func(b *pgx.Batch) { b.Queue(`SELECT 1 / 0`) }, nil)
		rows, _, _, _ := logged("query-fails")
		if err == nil || errors.Is(err, consent.Denied) || rows != 0 {
			t.Errorf("got %v and %d log rows; want the query's error and none", err, rows)
		}
		// The pool still serves reads after failed ones.
		for range 20 {
			var ran bool
			if _, err := gate.ReadBatch(ctx, keyA, consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p"}, read(farmer, &ran), nil); err != nil || !ran {
				t.Fatalf("got %v (ran %v)", err, ran)
			}
		}
	})
	t.Run("ReadOnly", func(t *testing.T) {
		for _, g := range []*consent.Gate{gate, consent.NewGate(pool).WithDurableLog(false)} {
			_, err := g.ReadBatch(ctx, keyA, consent.Access{FarmerID: farmer, Scopes: []consent.Scope{consent.Plots}, Purpose: "p", RequestID: "ro-write", ReadOnly: true},
				func(b *pgx.Batch) { b.Queue(`INSERT INTO public.scratch VALUES ('ro-write')`) }, nil)
			rows, _, _, _ := logged("ro-write")
			if err == nil || rows != 0 {
				t.Errorf("a write in a read-only access: got %v and %d log rows; want an error and none", err, rows)
			}
		}
	})
	t.Run("ErrBadInput", func(t *testing.T) {
		var ran bool
		if _, err := gate.ReadBatch(ctx, keyA, consent.Access{FarmerID: "FARMER", Scopes: []consent.Scope{consent.Plots}, Purpose: "p"}, read(farmer, &ran), nil); !apperr.Is(err, apperr.Invalid) || ran {
			t.Errorf("got %v (ran %v), want Invalid", err, ran)
		}
	})
}
