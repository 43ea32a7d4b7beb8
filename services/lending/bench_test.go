package lending_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
)

// The book the benchmarks run on: TANI_BENCH_LENDING_FARMERS farmers
// (default 2,000; the targets are set for 100,000), each with ten
// attested, journaled records — two GPS-walked plots, two plantings, two
// input applications, two harvests, two sales: 1,000,000 records at the
// target size — a consent to the bank, and a disbursed loan. Seeded with
// COPY straight into the tables ingest, attest and the ledger own (the
// journal's entries by Journal.Append, so that receipts are real).

type benchBook struct {
	e       *env
	bank    *bank
	product string
	farmers []string
	loans   []string
	plots   map[string]string // farmer -> first plot
}

func benchSize() int {
	if v := os.Getenv("TANI_BENCH_LENDING_FARMERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil && n > 0 {
			return n
		}
	}
	return 2000
}

// benchKeepDB names, from TANI_BENCH_LENDING_KEEP_DB, a database that
// outlives the run: the first run seeds the book into it (renaming its
// fresh test database when the benchmark ends), later runs reuse the book
// it holds instead of seeding for minutes. Drop it (and the journal's key
// directory, benchKeyDir) when done:
//
//	psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE NAME'
func benchKeepDB() string { return os.Getenv("TANI_BENCH_LENDING_KEEP_DB") }

func benchKeyDir(db string) string { return filepath.Join(os.TempDir(), db+"-ledger") }

func mustBenchBook(b *testing.B, n int) *benchBook {
	b.Helper()
	keep := benchKeepDB()
	if keep != "" {
		if bk := reuseBenchBook(b, keep); bk != nil {
			return bk
		}
	}
	start := time.Now()
	var e *env
	if keep == "" {
		e = mustEnv(b)
	} else {
		db := pgtest.MustDatabase(b, app.Migrations()[1:]...)
		if err := os.MkdirAll(benchKeyDir(keep), 0o700); err != nil {
			b.Fatal(err)
		}
		e = mustEnvOn(b, db, benchKeyDir(keep))
		// Cleanups run last-registered first: this one runs before the
		// test database is dropped, which then finds nothing to drop.
		b.Cleanup(func() {
			e.pool.Close()
			c, err := pgx.Connect(context.Background(), pgtest.URL(b, "postgres"))
			if err != nil {
				b.Logf("keep %s: %v", keep, err)
				return
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(context.Background(), fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", db, pgx.Identifier{keep}.Sanitize())); err != nil {
				b.Logf("keep %s: %v", keep, err)
			}
		})
	}
	bk := e.bank("Bench bank")
	p := bk.product("Padi", nil, nil, "bullet")
	ctx := context.Background()
	book := &benchBook{e: e, bank: bk, product: p.ID, plots: map[string]string{}}
	now := time.Now().UTC()
	rng := rand.New(rand.NewPCG(1, 2))
	var (
		farmerRows, consentRows, plotRows, cycleRows, inputRows, harvestRows, saleRows, recordRows, provRows, loanRows [][]any
		revs                                                                                                           []ledger.Revision
	)
	var size int64
	if cp, err := e.journal.SignCheckpoint(ctx); err == nil && cp != nil {
		size = cp.Size
	}
	rec := func(farmer, typ string, plot *string, captured time.Time, attrs map[string]string, expires *time.Time) string {
		id := uuid.NewString()
		leaf := size + int64(len(revs))
		revs = append(revs, ledger.Revision{RecordID: id, Kind: typ, Revision: 1, Payload: []byte(`{"id":"` + id + `","farmer_id":"` + farmer + `"}`), OccurredAt: captured, SignatureRef: "device:bench"})
		recordRows = append(recordRows, []any{id, typ, farmer, plot, farmer, farmer, captured, []byte("sealed"), "device:bench", "verified", leaf, now})
		for attr, method := range attrs {
			var exp *time.Time
			if attr == "area_ha" || attr == "boundary" {
				exp = expires
			}
			provRows = append(provRows, []any{id, attr, method, "agent:bench", now, exp})
		}
		return id
	}
	valid := now.AddDate(1, 0, 0)
	for i := range n {
		f := uuid.NewString()
		book.farmers = append(book.farmers, f)
		farmerRows = append(farmerRows, []any{f, uuid.NewString(), f, "Central Java", []byte(f), []byte(f), now.AddDate(-1, 0, 0)})
		consentRows = append(consentRows, []any{uuid.NewString(), f, bk.ID, []string{"plots", "crops", "inputs", "harvests", "sales", "credit"}, now.AddDate(1, 0, 0), uuid.NewString(), now})
		for k := range 2 {
			plot := uuid.NewString()
			if k == 0 {
				book.plots[f] = plot
			}
			lon, lat := 100+float64(i%1000)*0.01+float64(k)*0.005, -7-float64(i/1000)*0.01
			d := 0.003 + rng.Float64()*0.006
			wkt := fmt.Sprintf("SRID=4326;POLYGON((%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f))", lon, lat, lon+d, lat, lon+d, lat-d, lon, lat-d, lon, lat)
			captured := now.AddDate(0, 0, -200)
			pr := rec(f, "plot.mapped", &plot, captured, map[string]string{"boundary": "gps_walk", "area_ha": "gps_walk", "tenure": "self_reported"}, &valid)
			plotRows = append(plotRows, []any{plot, f, wkt, 1.0, "owned", pr, captured})
			planted := now.AddDate(0, 0, -30-k*180)
			cy := rec(f, "crop.planted", &plot, planted, map[string]string{"crop": "self_reported"}, nil)
			cycleRows = append(cycleRows, []any{cy, f, plot, "rice", planted, planted.AddDate(0, 0, 120)})
			applied := planted.AddDate(0, 0, 10)
			in := rec(f, "input.applied", &plot, applied, map[string]string{"quantity": "self_reported"}, nil)
			inputRows = append(inputRows, []any{in, f, plot, "Urea", "fertilizer", 50.0, "kg", applied})
			harvested := now.AddDate(0, 0, -150-k*180)
			h := rec(f, "harvest.recorded", &plot, harvested, map[string]string{"quantity": "self_reported"}, nil)
			harvestRows = append(harvestRows, []any{h, f, plot, "rice", 2000 + rng.Float64()*5000, "A", harvested})
			sold := harvested.AddDate(0, 0, 7)
			s := rec(f, "sale.recorded", nil, sold, map[string]string{"quantity": "self_reported"}, nil)
			saleRows = append(saleRows, []any{s, f, "KUD", "rice", 2000.0, int64(5_000_000_00 + rng.IntN(20_000_000_00)), "IDR", sold})
		}
		loan := uuid.NewString()
		book.loans = append(book.loans, loan)
		loanRows = append(loanRows, []any{loan, bk.ID, p.ID, f, "bank", "Central Java", "rice", int64(5_000_000_00), "IDR", "bench", "disbursed",
			int64(5_000_000_00), int64(5_000_000), int64(100_000_00), int64(1_000_000_000_00), "0", now, now.AddDate(0, 6, 0), now, now})
	}
	copyIn := func(table string, cols []string, rows [][]any) {
		b.Helper()
		if _, err := e.pool.CopyFrom(ctx, pgx.Identifier{table[:len(table)-len(afterDot(table))-1], afterDot(table)}, cols, pgx.CopyFromRows(rows)); err != nil {
			b.Fatalf("copy %s: %v", table, err)
		}
	}
	// The journal first: the leaf indexes above assume its entries land in
	// this order right after the current tree.
	for i := 0; i < len(revs); i += 10_000 {
		app, err := e.journal.Append(ctx, revs[i:min(i+10_000, len(revs))]...)
		if err != nil {
			b.Fatal(err)
		}
		if app[0].LeafIndex != size+int64(i) {
			b.Fatalf("journal placed revision %d at leaf %d, want %d", i, app[0].LeafIndex, size+int64(i))
		}
	}
	if _, err := e.journal.SignCheckpoint(ctx); err != nil {
		b.Fatal(err)
	}
	copyIn("attest.farmers", []string{"farmer_id", "record_id", "agent_id", "region", "national_id_hmac", "phone_hmac", "captured_at"}, farmerRows)
	copyIn("ingest.consents", []string{"consent_id", "farmer_id", "grantee_org_id", "scopes", "expires_at", "granted_record_id", "granted_at"}, consentRows)
	if _, err := e.pool.Exec(ctx, `CREATE UNLOGGED TABLE public.bench_plots (plot_id uuid, farmer_id uuid, wkt text, declared double precision, tenure text, record_id uuid, captured_at timestamptz)`); err != nil {
		b.Fatal(err)
	}
	copyIn("public.bench_plots", []string{"plot_id", "farmer_id", "wkt", "declared", "tenure", "record_id", "captured_at"}, plotRows)
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO ingest.plots (plot_id, farmer_id, boundary, area_ha, declared_area_ha, tenure, gps_accuracy_m, mock_location, agent_id, record_id, captured_at)
		SELECT plot_id, farmer_id, g, ST_Area(g) / 10000, declared, tenure, 3, false, farmer_id, record_id, captured_at
		FROM public.bench_plots, ST_GeogFromText(wkt) AS g;
		DROP TABLE public.bench_plots`); err != nil {
		b.Fatal(err)
	}
	copyIn("ingest.crop_cycles", []string{"record_id", "farmer_id", "plot_id", "crop", "planted_on", "expected_harvest_on"}, cycleRows)
	copyIn("ingest.input_applications", []string{"record_id", "farmer_id", "plot_id", "product", "category", "quantity", "unit", "applied_on"}, inputRows)
	copyIn("ingest.harvests", []string{"record_id", "farmer_id", "plot_id", "crop", "quantity_kg", "quality_grade", "harvested_on"}, harvestRows)
	copyIn("ingest.sales", []string{"record_id", "farmer_id", "buyer", "crop", "quantity_kg", "price_minor", "currency", "sold_on"}, saleRows)
	copyIn("attest.records", []string{"record_id", "type", "farmer_id", "plot_id", "agent_id", "device_id", "captured_at", "sealed_record", "signature_ref", "status", "leaf_index", "decided_at"}, recordRows)
	copyIn("attest.provenance", []string{"record_id", "attribute", "method", "verifier", "verified_at", "expires_at"}, provRows)
	copyIn("lending.loans", []string{"id", "organization_id", "product_id", "farmer_id", "channel", "region", "crop", "requested_amount", "currency", "purpose", "state",
		"principal", "fee", "interest", "total_due", "terms_sha256", "disbursed_at", "due_on", "created_at", "updated_at"}, loanRows)
	if _, err := e.pool.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d farmers, %d attested journaled records, %d loans in %s", n, len(recordRows), len(loanRows), time.Since(start).Round(time.Second))
	return book
}

// reuseBenchBook opens the book kept in database db by an earlier run, or
// returns nil when there is none yet.
func reuseBenchBook(b *testing.B, db string) *benchBook {
	b.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgtest.URL(b, "postgres"))
	if err != nil {
		b.Fatal(err)
	}
	var exists bool
	err = c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&exists)
	c.Close(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if !exists {
		return nil
	}
	e := mustEnvOn(b, db, benchKeyDir(db))
	bk := &benchBook{e: e, plots: map[string]string{}}
	var org string
	if err := e.pool.QueryRow(ctx, `SELECT p.id, p.organization_id FROM lending.products p ORDER BY p.created_at LIMIT 1`).Scan(&bk.product, &org); err != nil {
		b.Fatal(err)
	}
	_, token, err := e.dir.CreateAPIKey(ctx, identity.NewAPIKey{OrganizationID: org, Name: "bench", ExpiresAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	bk.bank = &bank{ID: org, Token: token, e: e}
	rows, _ := e.pool.Query(ctx, `SELECT farmer_id::text, id::text FROM lending.loans WHERE organization_id = $1 AND purpose = 'bench' ORDER BY created_at, farmer_id`, org)
	var f, l string
	if _, err := pgx.ForEachRow(rows, []any{&f, &l}, func() error {
		bk.farmers, bk.loans = append(bk.farmers, f), append(bk.loans, l)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.Logf("reusing the book kept in %s: %d farmers", db, len(bk.farmers))
	return bk
}

func afterDot(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return s[i+1:]
		}
	}
	return s
}

// refRead is the reference: the same rows the profile and the score read,
// by plain SQL in one transaction, without HTTP, the consent gate, JSON or
// receipts.
func (bk *benchBook) refRead(ctx context.Context, farmers []string) error {
	return pgx.BeginFunc(ctx, bk.e.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, q := range []string{
			`SELECT record_id, type, status, leaf_index FROM attest.evidence WHERE farmer_id = ANY($1::uuid[])`,
			`SELECT p.record_id, p.attribute, p.method FROM attest.evidence e JOIN attest.evidence_provenance p USING (record_id) WHERE e.farmer_id = ANY($1::uuid[])`,
			`SELECT plot_id, area_ha FROM ingest.plot_facts WHERE farmer_id = ANY($1::uuid[])`,
			`SELECT record_id, crop FROM ingest.crop_cycle_facts WHERE farmer_id = ANY($1::uuid[])`,
			`SELECT record_id, quantity FROM ingest.input_facts WHERE farmer_id = ANY($1::uuid[])`,
			`SELECT record_id, quantity_kg FROM ingest.harvest_facts WHERE farmer_id = ANY($1::uuid[])`,
			`SELECT record_id, price_minor FROM ingest.sale_facts WHERE farmer_id = ANY($1::uuid[])`,
		} {
			batch.Queue(q, farmers).Query(func(rows pgx.Rows) error {
				for rows.Next() {
				}
				return rows.Err()
			})
		}
		return tx.SendBatch(ctx, batch).Close()
	})
}

// stats are a figure's distribution over rounds.
type stats struct{ min, median, max float64 }

func over(xs []float64) stats {
	s := slices.Clone(xs)
	slices.Sort(s)
	return stats{s[0], s[len(s)/2], s[len(s)-1]}
}

func p99(lat []time.Duration) float64 { return quantile(lat, 99) }

func quantile(lat []time.Duration, pct int) float64 {
	s := slices.Clone(lat)
	slices.Sort(s)
	return float64(s[len(s)*pct/100].Microseconds()) / 1000
}

const rounds = 5

// latencyBench runs req and, interleaved, the reference on the same
// farmer, for rounds rounds of per requests, and reports the p99 of each
// round (min/median/max) and the ratio to the reference's p99.
func latencyBench(b *testing.B, bk *benchBook, per int, req func(farmer string) error) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	var p99s, refs, ratios, p50s, ref50s []float64
	b.ResetTimer()
	for b.Loop() {
		p99s, refs, ratios, p50s, ref50s = nil, nil, nil, nil, nil
		for range rounds {
			var lat, ref []time.Duration
			for range per {
				f := bk.farmers[rng.IntN(len(bk.farmers))]
				t0 := time.Now()
				if err := req(f); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				t0 = time.Now()
				if err := bk.refRead(ctx, []string{f}); err != nil {
					b.Fatal(err)
				}
				ref = append(ref, time.Since(t0))
			}
			p, r := p99(lat), p99(ref)
			p99s, refs, ratios = append(p99s, p), append(refs, r), append(ratios, p/r)
			p50s, ref50s = append(p50s, quantile(lat, 50)), append(ref50s, quantile(ref, 50))
		}
	}
	s, r, q := over(p99s), over(refs), over(ratios)
	b.ReportMetric(s.min, "p99-min-ms")
	b.ReportMetric(s.median, "p99-med-ms")
	b.ReportMetric(s.max, "p99-max-ms")
	b.ReportMetric(r.median, "ref-p99-med-ms")
	b.ReportMetric(q.min, "ratio-min")
	b.ReportMetric(q.median, "ratio-med")
	b.ReportMetric(q.max, "ratio-max")
	// The median request, less at the mercy of a shared machine's stalls
	// than the p99 of 200.
	b.ReportMetric(over(p50s).median, "p50-med-ms")
	b.ReportMetric(over(ref50s).median, "ref-p50-med-ms")
}

// BenchmarkLending measures, on one seeded book (see benchBook):
//   - Profile: GET /farmers/{id}/profile with receipts, p99 (target ≤ 50 ms);
//   - Score: POST /farmers/{id}/score, journaled, p99 (target ≤ 20 ms);
//   - Rescore: POST /rescore over the whole book, farmers/s (target ≥ 2,000);
//   - Repayments: POST /repayments, 1,000 per request, repayments/s
//     (target ≥ 2,000);
//
// each against a reference measured in the same run: the same rows read
// (or, for repayments, inserted) by plain SQL.
//
//	TANI_BENCH_LENDING_FARMERS=100000 go test ./services/lending -run '^$' -bench Lending -benchtime 1x -timeout 60m
func BenchmarkLending(b *testing.B) {
	bk := mustBenchBook(b, benchSize())
	ctx := context.Background()
	b.Run("Profile", func(b *testing.B) {
		latencyBench(b, bk, 200, func(f string) error {
			status, raw := bk.bank.do("GET", "/bank/v1/farmers/"+f+"/profile", nil, nil)
			if status != http.StatusOK {
				return fmt.Errorf("profile = %d %s", status, raw)
			}
			return nil
		})
	})
	b.Run("Score", func(b *testing.B) {
		latencyBench(b, bk, 200, func(f string) error {
			status, raw := bk.bank.do("POST", "/bank/v1/farmers/"+f+"/score", map[string]any{"product_id": bk.product}, nil)
			if status != http.StatusOK {
				return fmt.Errorf("score = %d %s", status, raw)
			}
			return nil
		})
	})
	b.Run("Rescore", func(b *testing.B) {
		var rates, refRates []float64
		for b.Loop() {
			var res struct {
				Scored  int
				Seconds float64
			}
			bk.bank.must(http.StatusOK, "POST", "/bank/v1/rescore", map[string]any{"product_id": bk.product}, &res)
			if res.Scored != len(bk.farmers) {
				b.Fatalf("re-scored %d of %d", res.Scored, len(bk.farmers))
			}
			rates = append(rates, float64(res.Scored)/res.Seconds)
			t0 := time.Now()
			for i := 0; i < len(bk.farmers); i += 500 {
				if err := bk.refRead(ctx, bk.farmers[i:min(i+500, len(bk.farmers))]); err != nil {
					b.Fatal(err)
				}
			}
			refRates = append(refRates, float64(len(bk.farmers))/time.Since(t0).Seconds())
		}
		s := over(rates)
		b.ReportMetric(s.min, "farmers/s-min")
		b.ReportMetric(s.median, "farmers/s-med")
		b.ReportMetric(s.max, "farmers/s-max")
		b.ReportMetric(over(refRates).median, "ref-farmers/s")
		b.ReportMetric(s.median/over(refRates).median, "ratio")
	})
	b.Run("Repayments", func(b *testing.B) {
		if _, err := bk.e.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.bench_repayments (LIKE lending.repayments INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`); err != nil {
			b.Fatal(err)
		}
		const per = 1000
		var rates, refRates []float64
		next := 0
		for b.Loop() {
			rates, refRates = nil, nil
			for range rounds {
				var api, ref time.Duration
				for range 5 {
					batch := make([]map[string]any, per)
					ids, loans, refs := make([]string, per), make([]string, per), make([]string, per)
					for i := range batch {
						loan := bk.loans[(next+i)%len(bk.loans)]
						ref := fmt.Sprintf("BENCH-%d", next+i)
						batch[i] = map[string]any{"loan_id": loan, "payer_reference": ref, "amount": money(1000), "paid_on": today()}
						ids[i], loans[i], refs[i] = uuid.NewString(), loan, ref
					}
					next += per
					t0 := time.Now()
					status, raw := bk.bank.do("POST", "/bank/v1/repayments", map[string]any{"repayments": batch}, nil)
					api += time.Since(t0)
					if status != http.StatusOK {
						b.Fatalf("repayments = %d %.300s", status, raw)
					}
					t0 = time.Now()
					if _, err := bk.e.pool.Exec(ctx, `INSERT INTO public.bench_repayments (id, loan_id, organization_id, payer_reference, amount, currency, paid_on, channel)
						SELECT u.id, u.loan, $4, u.ref, 1000, 'IDR', current_date, 'bank' FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS u(id, loan, ref)`,
						ids, loans, refs, bk.bank.ID); err != nil {
						b.Fatal(err)
					}
					ref += time.Since(t0)
				}
				rates, refRates = append(rates, 5*per/api.Seconds()), append(refRates, 5*per/ref.Seconds())
			}
		}
		s, r := over(rates), over(refRates)
		b.ReportMetric(s.min, "repayments/s-min")
		b.ReportMetric(s.median, "repayments/s-med")
		b.ReportMetric(s.max, "repayments/s-max")
		b.ReportMetric(r.median, "ref-rows/s")
		b.ReportMetric(s.median/r.median, "ratio")
	})
}
