package marketplace_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

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
