package marketplace_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/vouchers"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/services/attest"
	"github.com/tani-platform/tani/services/ingest"
	"github.com/tani-platform/tani/services/marketplace"
)

type env struct {
	svc     *marketplace.Service
	pool    *pgxpool.Pool
	journal *ledger.Journal
	a, b    identity.Principal // two distributors
	now     time.Time
}

// mustEnv starts the marketplace on a fresh database with every schema it
// reads, a journal, and two distributors with API keys.
func mustEnv(t *testing.T, redeemer marketplace.Vouchers) *env {
	t.Helper()
	pool := pgtest.MustDB(t, ledger.Migrations, identity.Migrations, mobileapi.Migrations, ingest.Migrations, consent.Migrations,
		attest.Migrations, events.Migrations, vouchers.Migrations, marketplace.Migrations)
	journal := ledgertest.MustJournal(t)
	e := &env{pool: pool, journal: journal, now: time.Now().UTC()}
	for _, p := range []*identity.Principal{&e.a, &e.b} {
		*p = identity.Principal{OrganizationID: uuid.NewString(), Kind: identity.Distributor, APIKeyID: uuid.NewString(),
			Scopes: []string{"identity", "plots", "crops", "inputs", "harvests", "sales", "credit", "orders"}}
		if _, err := pool.Exec(context.Background(), `INSERT INTO identity.organizations (id, name, kind) VALUES ($1, $2, 'distributor')`,
			p.OrganizationID, "Distributor "+p.OrganizationID[:8]); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := marketplace.New(marketplace.Config{}, marketplace.Deps{Pool: pool, Gate: consent.NewGate(pool), Journal: journal,
		Logger: slog.New(slog.DiscardHandler), Vouchers: redeemer, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

// grant stores a farmer's consent to org, as ingest does from a signed
// consent.granted record.
func (e *env) grant(t *testing.T, farmer, org string, scopes ...string) {
	t.Helper()
	_, err := e.pool.Exec(context.Background(), `
		INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at)
		VALUES ($1, $2, $3, $4, now() + interval '30 days', $5, now())`, uuid.NewString(), farmer, org, scopes, uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) product(t *testing.T, org, name, category, crop string, packKg float64, price, stock int64) marketplace.Product {
	t.Helper()
	p, err := e.svc.CreateProduct(context.Background(), org, marketplace.ProductInput{SKU: uuid.NewString()[:12], Name: name, Category: category, Crop: crop,
		PackSize: packKg, PackUnit: "kg", UnitPrice: marketplace.Money{Amount: price, Currency: "IDR"}, Regions: []string{"Central Java"}, Stock: stock})
	if err != nil {
		t.Fatalf("create product: %v", err)
	}
	return p
}

func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// verifiedPlot stores, as attest would, a verified plot of about areaHa
// around (lon, lat) with a verified crop cycle planted on planted, and
// hands the marketplace attest's decisions on them as its consumer would.
func (e *env) verifiedPlot(t *testing.T, farmer, region string, areaHa, lon, lat float64, crop string, planted time.Time) string {
	t.Helper()
	plot, records := storeVerifiedPlot(t, e.pool, farmer, region, areaHa, lon, lat, crop, planted)
	for _, rec := range records {
		if err := e.svc.ApplyDemandRecords(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	return plot
}

// verifiedPlot stores a verified plot and cycle in pool (see env.verifiedPlot).
func verifiedPlot(t testing.TB, pool *pgxpool.Pool, farmer, region string, areaHa, lon, lat float64, crop string, planted time.Time) string {
	t.Helper()
	plot, _ := storeVerifiedPlot(t, pool, farmer, region, areaHa, lon, lat, crop, planted)
	return plot
}

// storeVerifiedPlot stores a verified plot and cycle in pool and returns
// the plot and the records attest decided.
func storeVerifiedPlot(t testing.TB, pool *pgxpool.Pool, farmer, region string, areaHa, lon, lat float64, crop string, planted time.Time) (string, []string) {
	t.Helper()
	ctx := context.Background()
	e := &env{pool: pool}
	agent := uuid.NewString()
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO attest.farmers (farmer_id, record_id, agent_id, region, national_id_hmac, phone_hmac, captured_at)
		VALUES ($1, $2, $3, $4, '\x00', '\x00', now()) ON CONFLICT DO NOTHING`, farmer, uuid.NewString(), agent, region); err != nil {
		t.Fatal(err)
	}
	plot, plotRec := uuid.NewString(), uuid.NewString()
	d := math.Sqrt(areaHa*10000) / 111320 // degrees of a square of that area near the equator
	wkt := polygonWKT(lon, lat, d)
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO attest.plots (plot_id, farmer_id, record_id, agent_id, boundary, area_ha, declared_area_ha, valid, captured_at)
		SELECT $1, $2, $3, $4, g, ST_Area(g) / 10000, $6, true, now() FROM ST_GeogFromText('SRID=4326;' || $5) AS g`,
		plot, farmer, plotRec, agent, wkt, areaHa); err != nil {
		t.Fatal(err)
	}
	e.decided(t, plotRec, "plot.mapped", farmer, plot, agent, "verified")
	records := []string{plotRec}
	if crop != "" {
		cyc := uuid.NewString()
		if _, err := e.pool.Exec(ctx, `INSERT INTO attest.crop_cycles VALUES ($1, $2, $3, $4, $5, $6)`,
			cyc, farmer, plot, crop, planted, planted.AddDate(0, 4, 0)); err != nil {
			t.Fatal(err)
		}
		e.decided(t, cyc, "crop.planted", farmer, plot, agent, "verified")
		records = append(records, cyc)
	}
	return plot, records
}

func polygonWKT(lon, lat, d float64) string {
	pts := [][2]float64{{lon, lat}, {lon + d, lat}, {lon + d, lat - d}, {lon, lat - d}, {lon, lat}}
	var b strings.Builder
	b.WriteString("POLYGON((")
	for i, p := range pts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.TrimSpace(strings.Join([]string{ftoa(p[0]), ftoa(p[1])}, " ")))
	}
	b.WriteString("))")
	return b.String()
}

func ftoa(f float64) string { b, _ := json.Marshal(f); return string(b) }

// verified stores attest's verified decision on a record.
func (e *env) verified(t testing.TB, recordID, typ, farmer, agent string) {
	t.Helper()
	e.decided(t, recordID, typ, farmer, "", agent, "verified")
}

// decided stores attest's decision on a record about farmer (and plot,
// unless empty).
func (e *env) decided(t testing.TB, recordID, typ, farmer, plot, agent, status string) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), `
		INSERT INTO attest.records (record_id, type, farmer_id, plot_id, agent_id, device_id, captured_at, sealed_record, signature_ref, status, leaf_index, decided_at)
		VALUES ($1, $2, $3, nullif($4, '')::uuid, $5, $6, now(), '\x00', 'test', $7, CASE WHEN $7 = 'verified' THEN 1 END, now())`,
		recordID, typ, farmer, plot, agent, uuid.NewString(), status); err != nil {
		t.Fatal(err)
	}
}

// journalRecord journals a farm record as attest does when it verified it,
// and returns its id.
func (e *env) journalRecord(t *testing.T, typ record.Type, lon, lat float64, payload any) string {
	t.Helper()
	body, _ := json.Marshal(payload)
	id := uuid.NewString()
	env := map[string]any{"id": id, "type": typ, "captured_at": e.now.Add(-time.Minute).Format(time.RFC3339), "device_id": uuid.NewString(),
		"location": map[string]any{"lat": lat, "lon": lon, "accuracy_m": 5, "mock": false}, "payload": json.RawMessage(body),
		"signature": base64.StdEncoding.EncodeToString(make([]byte, 64))}
	raw, _ := json.Marshal(env)
	canonical, err := record.Canonical(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.journal.Append(context.Background(), ledger.Revision{RecordID: id, Kind: string(typ), Revision: 1, Payload: canonical,
		OccurredAt: e.now, SignatureRef: "test"}); err != nil {
		t.Fatal(err)
	}
	return id
}

func productInput(name, category, unit string, size float64) marketplace.ProductInput {
	return marketplace.ProductInput{SKU: uuid.NewString()[:12], Name: name, Category: category, PackSize: size, PackUnit: unit,
		UnitPrice: marketplace.Money{Amount: 45000000, Currency: "IDR"}, Regions: []string{"Central Java"}, Stock: 10}
}

func transition(a string) marketplace.Transition { return marketplace.Transition(a) }
