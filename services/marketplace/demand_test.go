package marketplace_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/services/marketplace"
)

// TestDemand_KAnonymity: cells of fewer than 10 farmers are never
// published, totals add up published cells only, and a published cell
// changes only when at least 10 farmers changed, so that neither a cell
// nor the difference of two versions of one describes a single farmer.
func TestDemand_KAnonymity(t *testing.T) {
	e := mustEnv(t, nil)
	ctx := context.Background()
	// Planted in the month after next, a year ago: next season's first
	// month of rice (the outlook starts next month).
	start := time.Date(e.now.Year(), e.now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	planted := start.AddDate(-1, 1, 3)
	add := func(region string, n int, areaHa float64) {
		for range n {
			e.verifiedPlot(t, uuid.NewString(), region, areaHa, 110.4, -7.25, "rice", planted)
		}
	}
	add("Kabupaten Garut", 12, 1)
	add("Kabupaten Cianjur", 9, 1) // one short of k
	run, err := e.svc.RefreshDemand(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.svc.Demand(ctx, marketplace.DemandFilter{})
	if err != nil {
		t.Fatal(err)
	}
	month := planted.AddDate(1, 0, 0).Format("2006-01")
	var seedKg float64
	for _, c := range o.Cells {
		if c.District == "Kabupaten Cianjur" {
			t.Errorf("published a cell of %d farmers: %+v", c.Farmers, c)
		}
		if c.Farmers < marketplace.K {
			t.Errorf("cell of %d farmers", c.Farmers)
		}
		if c.District == "Kabupaten Garut" && c.Category == "seed" && c.Month == month {
			seedKg = c.QuantityKg
		}
	}
	if math.Abs(seedKg-12*25) > 12*25*0.02 { // 12 ha of rice at 25 kg/ha (PostGIS areas within 2 %)
		t.Errorf("Garut rice seed in %s = %.1f kg, want about 300", month, seedKg)
	}
	if run.Suppressed == 0 {
		t.Errorf("run = %+v, want suppressed cells (Cianjur)", run)
	}
	if len(o.Districts) != 1 || o.Districts[0].District != "Kabupaten Garut" {
		t.Errorf("map districts = %+v, want Garut only", o.Districts)
	}
	sum := 0.0
	for _, c := range o.Cells {
		sum += c.QuantityKg
	}
	total := 0.0
	for _, tot := range o.Totals {
		total += tot.QuantityKg
	}
	if math.Abs(sum-total) > 1e-6 {
		t.Errorf("totals %.3f kg differ from the published cells' %.3f kg: a total would reveal a withheld cell", total, sum)
	}

	t.Run("HeldUntilKFarmersChanged", func(t *testing.T) {
		add("Kabupaten Garut", 3, 1) // 15 farmers: 3 changed, fewer than k
		if _, err := e.svc.RefreshDemand(ctx); err != nil {
			t.Fatal(err)
		}
		o2, _ := e.svc.Demand(ctx, marketplace.DemandFilter{District: "Kabupaten Garut", Category: "seed"})
		for _, c := range o2.Cells {
			if c.Month == month && (c.Farmers != 12 || c.QuantityKg != seedKg) {
				t.Errorf("cell moved with 3 new farmers: %+v (was 12 farmers, %.1f kg)", c, seedKg)
			}
		}
		add("Kabupaten Garut", 7, 1) // 22 farmers: 10 changed since published
		if _, err := e.svc.RefreshDemand(ctx); err != nil {
			t.Fatal(err)
		}
		o3, _ := e.svc.Demand(ctx, marketplace.DemandFilter{District: "Kabupaten Garut", Category: "seed"})
		found := false
		for _, c := range o3.Cells {
			if c.Month == month {
				found = true
				if c.Farmers != 22 {
					t.Errorf("cell after 10 new farmers: %+v, want 22 farmers", c)
				}
			}
		}
		if !found {
			t.Error("Garut's seed cell disappeared")
		}
		add("Kabupaten Cianjur", 1, 1) // 10 farmers: now publishable
		if _, err := e.svc.RefreshDemand(ctx); err != nil {
			t.Fatal(err)
		}
		o4, _ := e.svc.Demand(ctx, marketplace.DemandFilter{District: "Kabupaten Cianjur"})
		if len(o4.Cells) == 0 {
			t.Error("Cianjur not published at 10 farmers")
		}
	})
	t.Run("ErrBadCategory", func(t *testing.T) {
		if _, err := e.svc.Demand(ctx, marketplace.DemandFilter{Category: "snacks"}); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("got %v", err)
		}
	})
}

// TestDemand_Backtest predicts last season from the crop cycles before it
// and compares with the seed farmers recorded (verified input.applied).
func TestDemand_Backtest(t *testing.T) {
	e := mustEnv(t, nil)
	ctx := context.Background()
	// Mid-month, so that a day later is still the same season.
	e.now = time.Date(e.now.Year(), e.now.Month(), 10, 12, 0, 0, 0, time.UTC)
	start := time.Date(e.now.Year(), e.now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	last := start.AddDate(-1, 0, 0)
	plantedBefore := last.AddDate(-1, 0, 5) // repeats in last season's first month
	for range 11 {
		farmer := uuid.NewString()
		plot := e.verifiedPlot(t, farmer, "Kabupaten Garut", 1, 110.4, -7.25, "rice", plantedBefore)
		// Each recorded 30 kg of seed in that month (the method predicts 25).
		rec := uuid.NewString()
		if _, err := e.pool.Exec(ctx, `INSERT INTO ingest.input_applications (record_id, farmer_id, plot_id, product, category, quantity, unit, applied_on)
			VALUES ($1, $2, $3, 'Inpari 32', 'seed', 30, 'kg', $4)`, rec, farmer, plot, last.AddDate(0, 0, 6)); err != nil {
			t.Fatal(err)
		}
		e.verified(t, rec, "input.applied", farmer, uuid.NewString())
	}
	run, err := e.svc.RefreshDemand(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bt := run.Backtest
	if bt.Cells != 1 || bt.WAPE == nil {
		t.Fatalf("backtest = %+v, want one compared cell", bt)
	}
	// predicted ≈ 11 × 25 = 275 kg against 330 recorded: WAPE ≈ 1/6.
	if math.Abs(*bt.WAPE-1.0/6) > 0.02 {
		t.Errorf("WAPE = %.3f, want about 0.167 (predicted %.0f kg, recorded %.0f kg)", *bt.WAPE, bt.PredictedKg, bt.RecordedKg)
	}
	t.Run("ReusedWithinADay", func(t *testing.T) {
		if _, err := e.pool.Exec(ctx, `UPDATE ingest.input_applications SET quantity = quantity * 2`); err != nil {
			t.Fatal(err)
		}
		again, err := e.svc.RefreshDemand(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if again.Backtest.RecordedKg != bt.RecordedKg {
			t.Errorf("backtest recomputed within a day: recorded %.0f kg, was %.0f kg", again.Backtest.RecordedKg, bt.RecordedKg)
		}
		e.now = e.now.Add(marketplace.BacktestMaxAge + time.Minute)
		later, err := e.svc.RefreshDemand(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if later.Backtest.RecordedKg != 2*bt.RecordedKg {
			t.Errorf("backtest a day later: recorded %.0f kg, want %.0f kg", later.Backtest.RecordedKg, 2*bt.RecordedKg)
		}
	})
}

// planSnapshot is the outlook's plan as stored: every farmer's part of
// every cell, the cells' sums and the districts' sums.
type planSnapshot struct {
	FarmerCells, Cells, Districts, Plots []string
}

func snapshotPlan(t *testing.T, e *env) planSnapshot {
	t.Helper()
	rows := func(sql string) []string {
		r, err := e.pool.Query(context.Background(), sql)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(r, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return planSnapshot{
		FarmerCells: rows(`SELECT concat_ws('|', farmer_id, district, crop, category, month, area_m2, grams) FROM marketplace.demand_farmer_cells ORDER BY 1`),
		Cells:       rows(`SELECT concat_ws('|', district, crop, category, month, farmers, area_m2, grams) FROM marketplace.demand_cell_sums ORDER BY 1`),
		Districts:   rows(`SELECT concat_ws('|', district, farmers, plots, lat_e6_sum, lon_e6_sum) FROM marketplace.demand_district_sums ORDER BY 1`),
		Plots:       rows(`SELECT concat_ws('|', plot_id, farmer_id, district, area_ha, lat_e6, lon_e6) FROM marketplace.demand_plan_plots ORDER BY 1`),
	}
}

// TestDemand_IncrementalEqualsRebuild: the plan the consumer keeps from a
// stream of attest decisions — new plots and cycles, a plot re-mapped, a
// re-mapping flagged, a crop replaced, a cycle rejected on review, a
// farmer registered after their plots, an erasure, redeliveries, updates
// queued while a rebuild held the plan — is,
// to the gram and the farmer, the plan a rebuild computes from attest's
// tables, and so is what the next refresh publishes.
func TestDemand_IncrementalEqualsRebuild(t *testing.T) {
	e := mustEnv(t, nil)
	ctx := context.Background()
	start := time.Date(e.now.Year(), e.now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	rice := start.AddDate(-1, 1, 3)  // repeats in the season's second month
	maize := start.AddDate(-1, 0, 9) // repeats in its first month
	perennial := start.AddDate(-3, 0, 0)
	apply := func(records ...string) {
		t.Helper()
		for _, rec := range records {
			if err := e.svc.ApplyDemandRecords(ctx, rec); err != nil {
				t.Fatalf("apply %s: %v", rec, err)
			}
		}
	}
	// Before the first build: stored in attest, picked up by the build.
	for i := range 15 {
		e.verifiedPlot(t, uuid.NewString(), "Kabupaten Garut", 0.5+float64(i%4)*0.25, 107.9+float64(i)*0.001, -7.2, "rice", rice)
	}
	if _, err := e.svc.RefreshDemand(ctx); err != nil {
		t.Fatal(err)
	}
	// The stream: new farmers, several plots each, three crops, two districts.
	type farmerPlot struct{ farmer, plot string }
	var plots []farmerPlot
	for i := range 24 {
		farmer := uuid.NewString()
		region := []string{"Kabupaten Garut", "Kabupaten Jember"}[i%2]
		for j := range 1 + i%3 {
			crop, planted := []string{"rice", "maize", "coffee"}[(i+j)%3], rice
			switch crop {
			case "maize":
				planted = maize
			case "coffee":
				planted = perennial
			}
			p := e.verifiedPlot(t, farmer, region, 0.3+float64(j)*0.4+float64(i)*0.01, 113.6+float64(i)*0.003, -8.1-float64(j)*0.002, crop, planted)
			plots = append(plots, farmerPlot{farmer, p})
		}
	}
	agent := uuid.NewString()
	t.Run("ReMapped", func(t *testing.T) {
		// A new boundary of a plot, verified: the plot counts with its new area.
		p := plots[0]
		rec := uuid.NewString()
		if _, err := e.pool.Exec(ctx, `
			UPDATE attest.plots SET record_id = $2, boundary = g, area_ha = ST_Area(g) / 10000, captured_at = now()
			FROM ST_GeogFromText('SRID=4326;' || $3) AS g WHERE plot_id = $1`, p.plot, rec, polygonWKT(113.6, -8.1, 0.02)); err != nil {
			t.Fatal(err)
		}
		e.decided(t, rec, "plot.mapped", p.farmer, p.plot, agent, "verified")
		apply(rec, rec) // and redelivered
	})
	t.Run("ReMappingFlagged", func(t *testing.T) {
		// A re-mapping attest flagged: the plot is not verified any more.
		p := plots[5]
		rec := uuid.NewString()
		if _, err := e.pool.Exec(ctx, `UPDATE attest.plots SET record_id = $2, captured_at = now() WHERE plot_id = $1`, p.plot, rec); err != nil {
			t.Fatal(err)
		}
		e.decided(t, rec, "plot.mapped", p.farmer, p.plot, agent, "flagged")
		apply(rec)
	})
	t.Run("CropReplaced", func(t *testing.T) {
		// A plot of rice replanted with cocoa: its latest cycle is now a perennial.
		p := plots[3]
		rec := uuid.NewString()
		if _, err := e.pool.Exec(ctx, `INSERT INTO attest.crop_cycles VALUES ($1, $2, $3, 'cocoa', $4, $5)`,
			rec, p.farmer, p.plot, start.AddDate(0, -1, 0), start.AddDate(2, 0, 0)); err != nil {
			t.Fatal(err)
		}
		e.decided(t, rec, "crop.planted", p.farmer, p.plot, agent, "verified")
		apply(rec)
	})
	t.Run("CycleRejectedOnReview", func(t *testing.T) {
		// A verified cycle rejected on review: attest deletes its projection.
		var rec, plot, farmer string
		if err := e.pool.QueryRow(ctx, `
			SELECT c.record_id::text, c.plot_id::text, c.farmer_id::text FROM attest.crop_cycles c WHERE c.plot_id = $1`, plots[8].plot).
			Scan(&rec, &plot, &farmer); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pool.Exec(ctx, `UPDATE attest.records SET status = 'rejected', decision = decision + 1 WHERE record_id = $1;`, rec); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pool.Exec(ctx, `DELETE FROM attest.crop_cycles WHERE record_id = $1`, rec); err != nil {
			t.Fatal(err)
		}
		apply(rec)
	})
	t.Run("FarmerRegisteredAfterPlots", func(t *testing.T) {
		// Plots whose farmer attest did not know yet have no district; the
		// farmer's registration brings them in.
		farmer := uuid.NewString()
		for i := range 3 {
			p, _ := storeVerifiedPlot(t, e.pool, farmer, "", 1, 113.7+float64(i)*0.001, -8.2, "maize", maize)
			plots = append(plots, farmerPlot{farmer, p})
		}
		if _, err := e.pool.Exec(ctx, `DELETE FROM attest.farmers WHERE farmer_id = $1`, farmer); err != nil {
			t.Fatal(err)
		}
		rec := uuid.NewString()
		if _, err := e.pool.Exec(ctx, `
			INSERT INTO attest.farmers (farmer_id, record_id, agent_id, region, national_id_hmac, phone_hmac, captured_at)
			VALUES ($1, $2, $3, 'Kabupaten Jember', '\x00', '\x00', now())`, farmer, rec, agent); err != nil {
			t.Fatal(err)
		}
		e.decided(t, rec, "farmer.registered", farmer, "", agent, "verified")
		apply(rec)
	})
	t.Run("ManyAtOnce", func(t *testing.T) {
		// A consumer batch: twelve farmers' plots and cycles decided, and
		// the plan updated by one call for all their records.
		var records, batch []string
		for i := range 12 {
			farmer := uuid.NewString()
			p, recs := storeVerifiedPlot(t, e.pool, farmer, "Kabupaten Jember", 0.6+float64(i)*0.05, 113.9+float64(i)*0.002, -8.4, []string{"rice", "maize"}[i%2], []time.Time{rice, maize}[i%2])
			plots, batch = append(plots, farmerPlot{farmer, p}), append(batch, p)
			records = append(records, recs...)
		}
		if err := e.svc.ApplyDemandRecords(ctx, records...); err != nil {
			t.Fatal(err)
		}
		if n := e.count(t, `SELECT count(*) FROM marketplace.demand_plan_plots WHERE plot_id = ANY($1::uuid[])`, batch); n != len(batch) {
			t.Errorf("%d of the batch's %d plots in the plan", n, len(batch))
		}
	})
	t.Run("Erased", func(t *testing.T) {
		// attest erases the farmer's projections and the marketplace its plan rows.
		farmer := plots[10].farmer
		for _, q := range []string{`DELETE FROM attest.crop_cycles WHERE farmer_id = $1`, `DELETE FROM attest.plots WHERE farmer_id = $1`,
			`DELETE FROM attest.records WHERE farmer_id = $1`, `DELETE FROM attest.farmers WHERE farmer_id = $1`} {
			if _, err := e.pool.Exec(ctx, q, farmer); err != nil {
				t.Fatal(err)
			}
		}
		n, err := e.svc.EraseDemand(ctx, farmer)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Error("erased no plan rows of a farmer with verified plots")
		}
		if got := e.count(t, `SELECT count(*) FROM marketplace.demand_farmer_cells WHERE farmer_id = $1`, farmer) +
			e.count(t, `SELECT count(*) FROM marketplace.demand_plan_plots WHERE farmer_id = $1`, farmer); got != 0 {
			t.Errorf("%d plan rows of the erased farmer left", got)
		}
	})
	t.Run("QueuedWhileThePlanIsHeld", func(t *testing.T) {
		// A rebuild holds the plan: the consumer queues the farmer and
		// returns at once; the next publish drains the queue.
		hold, err := e.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer hold.Rollback(ctx)
		if _, err := hold.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('marketplace.demand_plan'))`); err != nil {
			t.Fatal(err)
		}
		farmer := uuid.NewString()
		_, records := storeVerifiedPlot(t, e.pool, farmer, "Kabupaten Jember", 2, 113.8, -8.3, "coffee", perennial)
		quick, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for _, rec := range records {
			if err := e.svc.ApplyDemandRecords(quick, rec); err != nil {
				t.Fatalf("apply while the plan is held: %v", err)
			}
		}
		if n := e.count(t, `SELECT count(*) FROM marketplace.demand_pending WHERE farmer_id = $1`, farmer); n != 1 {
			t.Errorf("farmer queued %d times, want 1", n)
		}
		if n := e.count(t, `SELECT count(*) FROM marketplace.demand_plan_plots WHERE farmer_id = $1`, farmer); n != 0 {
			t.Errorf("plan updated while held by another writer")
		}
		if err := hold.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	})

	runInc, err := e.svc.RefreshDemand(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM marketplace.demand_pending`); n != 0 {
		t.Errorf("%d farmers still queued after a publish", n)
	}
	incremental := snapshotPlan(t, e)
	if runInc.Rebuilt {
		t.Fatal("the refresh rebuilt the plan: nothing was left to compare")
	}
	if len(incremental.Cells) == 0 || len(incremental.Districts) != 2 {
		t.Fatalf("plan has %d cells and %d districts, want cells in 2 districts", len(incremental.Cells), len(incremental.Districts))
	}
	runFull, err := e.svc.RebuildDemand(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := snapshotPlan(t, e)
	if diff := cmp.Diff(rebuilt, incremental); diff != "" {
		t.Errorf("kept plan differs from the rebuild (-rebuild +kept):\n%s", diff)
	}
	if !runFull.Rebuilt || runFull.Cells != runInc.Cells || runFull.Suppressed != runInc.Suppressed || runFull.Farmers != runInc.Farmers || runFull.Plots != runInc.Plots {
		t.Errorf("runs differ: kept %+v, rebuilt %+v", runInc, runFull)
	}
}
