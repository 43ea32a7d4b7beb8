package marketplace_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/vouchers"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/services/attest"
	"github.com/tani-platform/tani/services/ingest"
	"github.com/tani-platform/tani/services/marketplace"
)

// benchSize reads a size from the environment (smaller runs for a quick
// look), else the figure.
func benchSize(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkPortalAtScale loads the scale — 100,000 farmers with
// 1,000,000 verified plots (and their verified crop cycles) in attest's
// tables, and a distributor with 2,000 products, 250,000 orders (500,000
// lines, 250,000 journal revisions) and 100,000 verified deliveries — then
// times every portal page (200 requests each, through echo and the
// templates, the session guard replaced by one that sets the principal)
// and the demand outlook: its plan's rebuild, the update of the plan per
// attested record, publishing from the plan, and the read. The reference
// for pages is one order fetched by primary key through the pool; the
// outlook has its own (a GROUP BY over the plan, a count of the verified
// plots), each measured in the same run, interleaved.
//
//	TANI_BENCH_FARMERS=100000 TANI_BENCH_PLOTS=1000000 TANI_BENCH_ORDERS=250000 \
//	  go test -run '^$' -bench BenchmarkPortalAtScale -benchtime 1x -timeout 60m ./services/marketplace
func BenchmarkPortalAtScale(b *testing.B) {
	farmers := benchSize("TANI_BENCH_FARMERS", 100_000)
	plots := benchSize("TANI_BENCH_PLOTS", 1_000_000)
	orders := benchSize("TANI_BENCH_ORDERS", 250_000)
	ctx := context.Background()
	pool := pgtest.MustDB(b, ledger.Migrations, identity.Migrations, mobileapi.Migrations, ingest.Migrations, consent.Migrations,
		attest.Migrations, events.Migrations, vouchers.Migrations, marketplace.Migrations)
	org := uuid.NewString()
	began := time.Now()
	for _, q := range []string{
		`INSERT INTO attest.farmers (farmer_id, record_id, agent_id, region, national_id_hmac, phone_hmac, captured_at)
		 SELECT md5('f' || i)::uuid, md5('fr' || i)::uuid, md5('a' || (i % 500))::uuid, 'District ' || lpad((i % 60)::text, 2, '0'), '\x00', '\x00', now()
		 FROM generate_series(1, $1::int) i WHERE $2::int > 0`,
		`INSERT INTO attest.plots (plot_id, farmer_id, record_id, agent_id, boundary, area_ha, declared_area_ha, valid, captured_at)
		 SELECT md5('p' || i)::uuid, md5('f' || (i % $1::int + 1))::uuid, md5('pr' || i)::uuid, md5('a' || (i % 500))::uuid,
		        ST_MakeEnvelope(x, y, x + 0.001, y + 0.001, 4326)::geography, 0.3 + (i % 20) / 10.0, 1, true, now()
		 FROM generate_series(1, $2::int) i, LATERAL (SELECT 106 + (i % 60) * 0.1 + (i % 997) * 0.0001 AS x, -7.9 + (i % 37) * 0.02 AS y) c`,
		`INSERT INTO attest.crop_cycles (record_id, farmer_id, plot_id, crop, planted_on, expected_harvest_on)
		 SELECT md5('c' || i)::uuid, md5('f' || (i % $1::int + 1))::uuid, md5('p' || i)::uuid,
		        (ARRAY['rice', 'rice', 'maize', 'coffee', 'cocoa', 'oil_palm'])[i % 6 + 1], current_date - (i % 360), current_date - (i % 360) + 110
		 FROM generate_series(1, $2::int) i`,
		`INSERT INTO attest.records (record_id, type, farmer_id, agent_id, device_id, captured_at, sealed_record, signature_ref, status, leaf_index, decided_at)
		 SELECT md5(k || i)::uuid, t, md5('f' || (i % $1::int + 1))::uuid, md5('a' || (i % 500))::uuid, md5('d')::uuid, now(), '\x00', 'bench', 'verified', i, now()
		 FROM generate_series(1, $2::int) i, (VALUES ('pr', 'plot.mapped'), ('c', 'crop.planted')) AS kinds(k, t)`,
	} {
		if _, err := pool.Exec(ctx, q, farmers, plots); err != nil {
			b.Fatalf("load attest: %v", err)
		}
	}
	for _, q := range []string{
		`INSERT INTO marketplace.products (product_id, distributor_id, sku, name, category, crop, pack_size, pack_unit, unit_price, currency, regions, stock)
		 SELECT md5('prod' || i)::uuid, $1, 'SKU-' || i, 'Product <' || i || '> & co', (ARRAY['seed','fertilizer','crop_protection','tools'])[i % 4 + 1],
		        NULL, 5 + i % 50, 'kg', 100000 + i * 100, 'IDR', ARRAY['District 01', 'District 02'], 1000000
		 FROM generate_series(1, 2000) i WHERE $2::int > 0`,
		`INSERT INTO marketplace.orders (order_id, distributor_id, farmer_id, region, source, agent_id, payment, voucher_id, currency, total, status, revision, leaf_index, placed_at)
		 SELECT md5('o' || i)::uuid, $1, md5('f' || (i % 100000 + 1))::uuid, 'District ' || lpad((i % 60)::text, 2, '0'), 'agent', md5('a')::uuid,
		        CASE WHEN i % 3 = 0 THEN 'voucher' ELSE 'cash' END, CASE WHEN i % 3 = 0 THEN md5('v' || i)::uuid END, 'IDR', 300000,
		        (ARRAY['placed','accepted','shipped','delivered','rejected'])[i % 5 + 1], 1, i, now() - (i || ' seconds')::interval
		 FROM generate_series(1, $2::int) i`,
		`INSERT INTO marketplace.order_lines (order_id, line, product_id, quantity, unit_price, delivered)
		 SELECT md5('o' || i)::uuid, l, md5('prod' || ((i * 7 + l) % 2000 + 1))::uuid, 2, 100000, CASE WHEN i % 5 = 3 THEN 2 ELSE 0 END
		 FROM generate_series(1, $2::int) i, generate_series(0, 1) l WHERE $1::uuid IS NOT NULL`,
		`INSERT INTO marketplace.order_revisions (order_id, revision, kind, payload, signature_ref, occurred_at, leaf_index)
		 SELECT md5('o' || i)::uuid, 1, 'order.placed', '\x7b7d', 'bench', now(), i FROM generate_series(1, $2::int) i WHERE $1::uuid IS NOT NULL`,
		`INSERT INTO marketplace.deliveries (record_id, order_id, distributor_id, farmer_id, agent_id, items, value, currency, received_on, captured_at,
		                                    lat, lon, photo_hash, leaf_index, receipt, receipt_sha256, voucher_id, redemption)
		 SELECT md5('d' || i)::uuid, md5('o' || i)::uuid, $1, md5('f' || (i % 100000 + 1))::uuid, md5('a')::uuid,
		        '[{"product_id":"00000000-0000-4000-8000-000000000001","quantity":2}]', 400000, 'IDR', current_date, now(), -7.25, 110.4,
		        repeat('a', 64), i, '{}', repeat('b', 64), CASE WHEN i % 3 = 0 THEN md5('v' || i)::uuid END, CASE WHEN i % 3 = 0 THEN 'redeemed' ELSE 'none' END
		 FROM generate_series(1, $2::int) i WHERE i % 5 = 3`,
	} {
		if _, err := pool.Exec(ctx, q, org, orders); err != nil {
			b.Fatalf("load marketplace: %v", err)
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d farmers, %d plots and cycles, %d orders in %s", farmers, plots, orders, time.Since(began).Round(time.Second))

	p := identity.Principal{OrganizationID: org, Kind: identity.Distributor, UserID: uuid.NewString(), Role: "admin"}
	svc, err := marketplace.New(marketplace.Config{}, marketplace.Deps{Pool: pool, Gate: consent.NewGate(pool), Journal: ledgertest.MustJournal(b),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), Portal: &marketplace.PortalAuth{
			Require: func(next echo.HandlerFunc) echo.HandlerFunc {
				return func(c echo.Context) error { identity.WithPrincipal(c, p); return next(c) }
			},
			CSRFToken: func(echo.Context) string { return "bench-token" },
		}})
	if err != nil {
		b.Fatal(err)
	}
	var hc httpserver.Config
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	hc.RegisterFlags(fs)
	srv := httpserver.New(hc, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	svc.Routes(httpserver.Router{Portal: srv.Echo.Group("/portal")})
	srv.Open()

	start := time.Now()
	run, err := svc.RefreshDemand(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("first demand refresh (builds the plan): %s (%d candidate cells, %d published)", time.Since(start).Round(time.Millisecond), run.Cells, run.Cells-run.Suppressed)

	const n = 200
	timeIt := func(fn func()) []time.Duration {
		out := make([]time.Duration, n)
		for i := range n {
			t0 := time.Now()
			fn()
			out[i] = time.Since(t0)
		}
		slices.Sort(out)
		return out
	}
	var oid string
	ref := timeIt(func() {
		if err := pool.QueryRow(ctx, `SELECT order_id::text FROM marketplace.orders WHERE order_id = md5('o' || 4242)::uuid`).Scan(&oid); err != nil {
			b.Fatal(err)
		}
	})
	refMed := ref[n/2]
	b.Logf("reference (one order by primary key): min %s median %s max %s", ms(ref[0]), ms(refMed), ms(ref[n-1]))
	css := fetch(b, srv, "/portal/static/app.css")
	b.Logf("%-34s %8s %8s %8s %8s %8s %10s %12s", "page", "min", "median", "p95", "max", "p95/ref", "bytes", "with css")
	pages := []string{"/portal/orders", "/portal/orders?status=shipped", "/portal/orders?cursor=" + strconv.FormatInt(int64(orders/2), 36),
		"/portal/orders/" + oid, "/portal/catalog", "/portal/deliveries", "/portal/vouchers", "/portal/settlements", "/portal/demand", "/portal/demand?district=District+07"}
	for _, page := range pages {
		var size int
		d := timeIt(func() { size = len(fetch(b, srv, page)) })
		name := page
		if len(name) > 34 {
			name = name[:34]
		}
		b.Logf("%-34s %8s %8s %8s %8s %8.0f %10d %12d", name, ms(d[0]), ms(d[n/2]), ms(d[n*95/100]), ms(d[n-1]),
			float64(d[n*95/100])/float64(refMed), size, size+len(css))
		b.ReportMetric(float64(d[n*95/100].Microseconds())/1000, "p95-ms"+metricName(page))
	}
	// The outlook kept by the consumer: a new verified crop cycle on an
	// existing plot, as attest announces it, applied to the plan.
	const updates = 200
	perRecord := make([]time.Duration, updates)
	for i := range updates {
		plot := i*4999%plots + 1
		rec := uuid.NewString()
		if _, err := pool.Exec(ctx, `
			WITH c AS (INSERT INTO attest.crop_cycles (record_id, farmer_id, plot_id, crop, planted_on, expected_harvest_on)
			           SELECT $1, farmer_id, plot_id, 'maize', current_date - 20, current_date + 90 FROM attest.plots WHERE plot_id = md5('p' || $2::int)::uuid
			           RETURNING farmer_id, plot_id)
			INSERT INTO attest.records (record_id, type, farmer_id, plot_id, agent_id, device_id, captured_at, sealed_record, signature_ref, status, leaf_index, decided_at)
			SELECT $1, 'crop.planted', farmer_id, plot_id, md5('a')::uuid, md5('d')::uuid, now(), '\x00', 'bench', 'verified', $3, now() FROM c`,
			rec, plot, 10_000_000+i); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := svc.ApplyDemandRecords(ctx, rec); err != nil {
			b.Fatal(err)
		}
		perRecord[i] = time.Since(t0)
	}
	slices.Sort(perRecord)
	b.Logf("demand plan update per record (%d new crop cycles): min %s median %s p95 %s max %s; ratio to the reference median: %.0f",
		updates, ms(perRecord[0]), ms(perRecord[updates/2]), ms(perRecord[updates*95/100]), ms(perRecord[updates-1]),
		float64(perRecord[updates/2])/float64(refMed))

	// Publishing the outlook from the plan, interleaved with two
	// references in the same run: one GROUP BY over the farmers' parts of
	// the cells (what publishing would cost without the kept sums) and
	// one pass counting the verified plots (what the old refresh read
	// about 19 times over).
	const rounds = 5
	refresh, groupBy, scan := make([]time.Duration, rounds), make([]time.Duration, rounds), make([]time.Duration, rounds)
	for i := range rounds {
		t0 := time.Now()
		r, err := svc.RefreshDemand(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if r.Rebuilt {
			b.Fatal("a steady refresh rebuilt the plan")
		}
		refresh[i] = time.Since(t0)
		t0 = time.Now()
		var c int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT district, crop, category, month, count(*), sum(area_m2), sum(grams)
			FROM marketplace.demand_farmer_cells GROUP BY 1, 2, 3, 4) g`).Scan(&c); err != nil {
			b.Fatal(err)
		}
		groupBy[i] = time.Since(t0)
		t0 = time.Now()
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM attest.verified_plots`).Scan(&c); err != nil {
			b.Fatal(err)
		}
		scan[i] = time.Since(t0)
	}
	for _, d := range [][]time.Duration{refresh, groupBy, scan} {
		slices.Sort(d)
	}
	var farmerCells int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM marketplace.demand_farmer_cells`).Scan(&farmerCells); err != nil {
		b.Fatal(err)
	}
	b.Logf("demand outlook published from the plan over %d plots (%d farmer parts of cells): min %s median %s max %s", plots, farmerCells,
		ms(refresh[0]), ms(refresh[rounds/2]), ms(refresh[rounds-1]))
	b.Logf("  reference GROUP BY over the farmer parts: min %s median %s max %s (published/reference: %.2f)",
		ms(groupBy[0]), ms(groupBy[rounds/2]), ms(groupBy[rounds-1]), float64(refresh[rounds/2])/float64(groupBy[rounds/2]))
	b.Logf("  reference count of the verified plots: min %s median %s max %s (published/reference: %.3f)",
		ms(scan[0]), ms(scan[rounds/2]), ms(scan[rounds-1]), float64(refresh[rounds/2])/float64(scan[rounds/2]))
	b.ReportMetric(float64(refresh[rounds/2].Microseconds())/1000, "demand-publish-ms")

	// The rebuild, against the same reference; the plan it computes must
	// equal the one the updates kept.
	sums := func() []string {
		rows, err := pool.Query(ctx, `
			SELECT concat_ws('|', district, crop, category, month, farmers, area_m2, grams) FROM marketplace.demand_cell_sums
			UNION ALL SELECT concat_ws('|', district, farmers, plots, lat_e6_sum, lon_e6_sum) FROM marketplace.demand_district_sums ORDER BY 1`)
		if err != nil {
			b.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	kept := sums()
	const rebuilds = 3
	rebuild, rebuildScan := make([]time.Duration, rebuilds), make([]time.Duration, rebuilds)
	for i := range rebuilds {
		t0 := time.Now()
		if _, err := svc.RebuildDemand(ctx); err != nil {
			b.Fatal(err)
		}
		rebuild[i] = time.Since(t0)
		if i == 0 && !slices.Equal(kept, sums()) {
			b.Errorf("the plan kept by %d updates differs from the rebuild", updates)
		}
		t0 = time.Now()
		var c int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM attest.verified_plots`).Scan(&c); err != nil {
			b.Fatal(err)
		}
		rebuildScan[i] = time.Since(t0)
	}
	slices.Sort(rebuild)
	slices.Sort(rebuildScan)
	b.Logf("demand plan rebuild over %d plots (plots, farmers' parts, sums; last season's prediction kept within the season): min %s median %s max %s; reference (count the verified plots): median %s, ratio %.1f",
		plots, ms(rebuild[0]), ms(rebuild[rebuilds/2]), ms(rebuild[rebuilds-1]), ms(rebuildScan[rebuilds/2]), float64(rebuild[rebuilds/2])/float64(rebuildScan[rebuilds/2]))
	read := timeIt(func() {
		if _, err := svc.Demand(ctx, marketplace.DemandFilter{}); err != nil {
			b.Fatal(err)
		}
	})
	b.Logf("demand outlook read: min %s median %s p95 %s max %s", ms(read[0]), ms(read[n/2]), ms(read[n*95/100]), ms(read[n-1]))
}

func fetch(b *testing.B, srv *httpserver.Server, path string) []byte {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Accept", "text/html")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("GET %s = %d: %s", path, rec.Code, rec.Body.String())
	}
	return rec.Body.Bytes()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func metricName(page string) string {
	out := []byte{}
	for _, r := range page[len("/portal"):] {
		if r >= 'a' && r <= 'z' {
			out = append(out, byte(r))
		}
		if len(out) >= 12 {
			break
		}
	}
	return "-" + string(out)
}
