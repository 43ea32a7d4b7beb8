package lending_test

import (
	"context"
	"encoding/json"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/ledger"
)

// farmer seeds one farmer's attested records the way ingest and attest
// leave them: the normalized rows in ingest's tables, attest's decision
// and provenance, and — for verified records — the journal entry whose
// leaf attest records. The lending service reads only their public views.
type farmer struct {
	e      *env
	ID     string
	Region string
	Agent  string
	n      int
}

func (e *env) farmer(region string) *farmer {
	e.tb.Helper()
	f := &farmer{e: e, ID: uuid.NewString(), Region: region, Agent: uuid.NewString()}
	ctx := context.Background()
	rec := uuid.NewString()
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO attest.farmers (farmer_id, record_id, agent_id, region, national_id_hmac, phone_hmac, captured_at)
		VALUES ($1, $2, $3, $4, $5, $6, now() - interval '400 days')`, f.ID, rec, f.Agent, region, []byte(rec), []byte(f.ID)); err != nil {
		e.tb.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO ingest.farmers (farmer_id, name, national_id_hmac, phone_enc, phone_hmac, village, gender, birth_year, agent_id, record_id, captured_at)
		VALUES ($1, 'Siti Aminah', $2, $3, $4, 'Sukamaju', 'female', 1980, $5, $6, now() - interval '400 days')`,
		f.ID, []byte(rec), []byte("sealed"), []byte(f.ID), f.Agent, rec); err != nil {
		e.tb.Fatal(err)
	}
	f.attest(rec, "farmer.registered", "", "verified", time.Now().AddDate(0, 0, -400), map[string]string{"identity": "self_reported"}, nil)
	return f
}

// consent grants org the scopes (default: every scope a score reads).
func (f *farmer) consent(org string, scopes ...string) string {
	f.e.tb.Helper()
	if len(scopes) == 0 {
		scopes = []string{"plots", "crops", "inputs", "harvests", "sales", "credit", "identity"}
	}
	id := uuid.NewString()
	if _, err := f.e.pool.Exec(context.Background(), `
		INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at)
		VALUES ($1, $2, $3, $4, now() + interval '365 days', $5, now())`, id, f.ID, org, scopes, uuid.NewString()); err != nil {
		f.e.tb.Fatal(err)
	}
	return id
}

// revoke revokes every consent of the farmer.
func (f *farmer) revoke() {
	f.e.tb.Helper()
	if _, err := f.e.pool.Exec(context.Background(), `UPDATE ingest.consents SET revoked_at = now() WHERE farmer_id = $1`, f.ID); err != nil {
		f.e.tb.Fatal(err)
	}
}

// attest stores attest's decision on a record and, when verified,
// journals it and records its leaf. methods maps attributes to
// provenance methods; expires applies to area_ha and boundary.
func (f *farmer) attest(rec, typ, plot, status string, captured time.Time, methods map[string]string, expires *time.Time) {
	f.e.tb.Helper()
	ctx := context.Background()
	var plotID *string
	if plot != "" {
		plotID = &plot
	}
	var reason *string
	if status == "flagged" {
		r := "plot.area_tolerance: declared area differs from the measured area by 40%"
		reason = &r
	}
	if _, err := f.e.pool.Exec(ctx, `
		INSERT INTO attest.records (record_id, type, farmer_id, plot_id, agent_id, device_id, captured_at, sealed_record, signature_ref, status, reason, decided_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'sealed', 'device:x', $8, $9, now())`,
		rec, typ, f.ID, plotID, f.Agent, uuid.NewString(), captured, status, reason); err != nil {
		f.e.tb.Fatal(err)
	}
	if status != "verified" {
		return
	}
	for attr, method := range methods {
		var exp *time.Time
		if attr == "area_ha" || attr == "boundary" {
			exp = expires
		}
		if _, err := f.e.pool.Exec(ctx, `INSERT INTO attest.provenance (record_id, attribute, method, verifier, verified_at, expires_at) VALUES ($1, $2, $3, $4, now(), $5)`,
			rec, attr, method, "agent:"+f.Agent, exp); err != nil {
			f.e.tb.Fatal(err)
		}
	}
	payload, _ := json.Marshal(map[string]any{"id": rec, "type": typ, "payload": map[string]any{"farmer_id": f.ID}})
	app, err := f.e.journal.Append(ctx, ledger.Revision{RecordID: rec, Kind: typ, Revision: 1, Payload: payload, OccurredAt: captured, SignatureRef: "device:x"})
	if err != nil {
		f.e.tb.Fatal(err)
	}
	if _, err := f.e.pool.Exec(ctx, `UPDATE attest.records SET leaf_index = $2 WHERE record_id = $1`, rec, app[0].LeafIndex); err != nil {
		f.e.tb.Fatal(err)
	}
}

// levels a seeded plot may have.
const (
	walked       = "gps_walk"
	corroborated = "second_agent_visit"
	reviewed     = "supervisor_review"
	expired      = "expired"
	flagged      = "flagged"
)

// plot maps a square plot of about areaHa hectares, verified at level.
func (f *farmer) plot(areaHa float64, level string) (plotID, recordID string) {
	f.e.tb.Helper()
	f.n++
	plotID, recordID = uuid.NewString(), uuid.NewString()
	side := math.Sqrt(areaHa*10000) / 110_574 // degrees of latitude, near the equator
	lon, lat := 110.0+float64(f.n)*0.01, -7.0-math.Mod(float64(len(f.ID)*f.n), 50)*0.001
	wkt := squareWKT(lon, lat, side)
	captured := time.Now().AddDate(0, 0, -100)
	if _, err := f.e.pool.Exec(context.Background(), `
		INSERT INTO ingest.plots (plot_id, farmer_id, boundary, area_ha, declared_area_ha, tenure, gps_accuracy_m, mock_location, agent_id, record_id, captured_at)
		SELECT $1, $2, g, ST_Area(g) / 10000, $4, 'owned', 3, false, $5, $6, $7 FROM ST_GeogFromText('SRID=4326;' || $3) AS g`,
		plotID, f.ID, wkt, areaHa, f.Agent, recordID, captured); err != nil {
		f.e.tb.Fatal(err)
	}
	exp := time.Now().AddDate(1, 0, 0)
	status, method := "verified", level
	switch level {
	case flagged:
		status = "flagged"
	case expired:
		method = walked
		exp = time.Now().AddDate(0, 0, -1)
	}
	f.attest(recordID, "plot.mapped", plotID, status, captured, map[string]string{"boundary": method, "area_ha": method, "tenure": "self_reported"}, &exp)
	return plotID, recordID
}

func squareWKT(lon, lat, d float64) string {
	p := func(x, y float64) string { return ftoa(x) + " " + ftoa(y) }
	return "POLYGON((" + p(lon, lat) + "," + p(lon+d, lat) + "," + p(lon+d, lat-d) + "," + p(lon, lat-d) + "," + p(lon, lat) + "))"
}

func ftoa(x float64) string { b, _ := json.Marshal(math.Round(x*1e8) / 1e8); return string(b) }

// cycle records a verified planting.
func (f *farmer) cycle(plot, crop string, planted, harvest time.Time) string {
	f.e.tb.Helper()
	rec := uuid.NewString()
	if _, err := f.e.pool.Exec(context.Background(), `
		INSERT INTO ingest.crop_cycles (record_id, farmer_id, plot_id, crop, planted_on, expected_harvest_on) VALUES ($1, $2, $3, $4, $5, $6)`,
		rec, f.ID, plot, crop, planted, harvest); err != nil {
		f.e.tb.Fatal(err)
	}
	f.attest(rec, "crop.planted", plot, "verified", planted, map[string]string{"crop": "self_reported"}, nil)
	return rec
}

// harvest records a verified harvest.
func (f *farmer) harvest(plot, crop string, kg float64, on time.Time) string {
	f.e.tb.Helper()
	rec := uuid.NewString()
	if _, err := f.e.pool.Exec(context.Background(), `
		INSERT INTO ingest.harvests (record_id, farmer_id, plot_id, crop, quantity_kg, quality_grade, harvested_on) VALUES ($1, $2, $3, $4, $5, 'A', $6)`,
		rec, f.ID, plot, crop, kg, on); err != nil {
		f.e.tb.Fatal(err)
	}
	f.attest(rec, "harvest.recorded", plot, "verified", on, map[string]string{"quantity": "self_reported"}, nil)
	return rec
}

// sale records a verified sale.
func (f *farmer) sale(crop string, amount int64, on time.Time) string {
	f.e.tb.Helper()
	rec := uuid.NewString()
	if _, err := f.e.pool.Exec(context.Background(), `
		INSERT INTO ingest.sales (record_id, farmer_id, buyer, crop, quantity_kg, price_minor, currency, sold_on) VALUES ($1, $2, 'KUD Makmur', $3, 2000, $4, 'IDR', $5)`,
		rec, f.ID, crop, amount, on); err != nil {
		f.e.tb.Fatal(err)
	}
	f.attest(rec, "sale.recorded", "", "verified", on, map[string]string{"quantity": "self_reported"}, nil)
	return rec
}

// input records a verified input application.
func (f *farmer) input(plot string, on time.Time) string {
	f.e.tb.Helper()
	rec := uuid.NewString()
	if _, err := f.e.pool.Exec(context.Background(), `
		INSERT INTO ingest.input_applications (record_id, farmer_id, plot_id, product, category, quantity, unit, applied_on) VALUES ($1, $2, $3, 'Urea', 'fertilizer', 50, 'kg', $4)`,
		rec, f.ID, plot, on); err != nil {
		f.e.tb.Fatal(err)
	}
	f.attest(rec, "input.applied", plot, "verified", on, map[string]string{"quantity": "self_reported"}, nil)
	return rec
}

// typical seeds a farmer with one walked hectare of rice planted 30 days
// ago (harvest in 90), a past harvest at the benchmark, a sale and inputs.
func (e *env) typical(region string) (*farmer, string) {
	f := e.farmer(region)
	plot, _ := f.plot(1.0, walked)
	now := time.Now()
	f.cycle(plot, "rice", now.AddDate(0, 0, -30), now.AddDate(0, 0, 90))
	f.harvest(plot, "rice", 5600, now.AddDate(0, 0, -150))
	f.sale("rice", 20_000_000_00, now.AddDate(0, 0, -140))
	f.input(plot, now.AddDate(0, 0, -28))
	return f, plot
}
