package marketplace

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres"
)

// The demand outlook (docs/marketplace.md, "Regional demand"): expected
// kilograms of seed and fertilizer by district × crop × category × month
// for the coming months, from verified plots and crop cycles and the rate
// table. It never stores or shows a figure about fewer than K farmers.

// OutlookMonths is how far the outlook looks ahead.
const OutlookMonths = 6

// RainySeasonMonth anchors perennials' fertilizer splits: Indonesia's
// rainy season starts in October-November over most of the country (BMKG
// seasonal outlooks), when smallholders apply the first split.
const RainySeasonMonth = 10

// Cell is one published cell of the outlook.
type Cell struct {
	District   string  `json:"district"`
	Crop       string  `json:"crop"`
	Category   string  `json:"category"`
	Month      string  `json:"month"` // YYYY-MM
	Farmers    int     `json:"farmers"`
	AreaHa     float64 `json:"area_ha"`
	QuantityKg float64 `json:"quantity_kg"`
}

// DistrictPoint is where a district's verified plots are, for the map.
type DistrictPoint struct {
	District string  `json:"district"`
	Farmers  int     `json:"farmers"`
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
}

// Backtest is the outlook method's error on last season: what it would
// have predicted from the crop cycles before that season, against the
// seed and fertilizer farmers recorded (verified input.applied records),
// by district × category × month.
type Backtest struct {
	SeasonStart string  `json:"season_start"`
	Cells       int     `json:"cells"`
	PredictedKg float64 `json:"predicted_kg"`
	RecordedKg  float64 `json:"recorded_kg"`
	// WAPE is Σ|predicted − recorded| / Σ recorded over the compared
	// cells; MAPE the mean of |predicted − recorded| / recorded.
	WAPE *float64 `json:"wape,omitempty"`
	MAPE *float64 `json:"mape,omitempty"`
	Note string   `json:"note"`
}

// Run is one refresh of the outlook.
type Run struct {
	ID           int64     `json:"run_id"`
	ComputedAt   time.Time `json:"computed_at"`
	SeasonStart  string    `json:"season_start"`
	Months       int       `json:"months"`
	RatesVersion int       `json:"rates_version"`
	K            int       `json:"k"`
	Farmers      int64     `json:"farmers"`
	Plots        int64     `json:"plots"`
	Cells        int       `json:"candidate_cells"`
	Suppressed   int       `json:"suppressed_cells"`
	Held         int       `json:"held_cells"`
	Backtest     Backtest  `json:"backtest"`
	TookMS       int64     `json:"took_ms"`
	// Rebuilt says the run rebuilt the plan from attest's tables rather
	// than publishing what the consumer kept.
	Rebuilt bool `json:"rebuilt"`
}

// Outlook is the published outlook: the latest run's figures, every cell
// of at least K farmers, totals computed from those cells only, and the
// map's district points.
type Outlook struct {
	Run       *Run            `json:"run,omitempty"`
	Cells     []Cell          `json:"cells"`
	Totals    []MonthTotal    `json:"totals"`
	Districts []DistrictPoint `json:"districts"`
	Method    string          `json:"method"`
}

// MonthTotal sums the published cells of a month and category.
type MonthTotal struct {
	Month      string  `json:"month"`
	Category   string  `json:"category"`
	QuantityKg float64 `json:"quantity_kg"`
}

// MethodNote is the outlook's method in one paragraph (the whole of it is
// docs/marketplace.md).
const MethodNote = "Verified plot area (PostGIS) × the crop's rate (rate table, cited sources) spread over the months the rate gives; " +
	"annual crops repeat last year's verified planting months, perennials are fertilized from the rainy season (October). " +
	"Cells of fewer than 10 farmers are never shown; totals add up shown cells only; a cell changes only when at least 10 farmers changed."

// seasonStart is the first day of the month after now.
func seasonStart(now time.Time) time.Time {
	y, m, _ := now.UTC().Date()
	return time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
}

type candidate struct {
	Cell
	month time.Time
}

// RefreshDemand publishes the outlook from the plan the consumer keeps
// (demand_plan.go), under the k-anonymity rules, with the backtest. It
// rebuilds the plan first when there is none yet, when the season or the
// rate table changed since it was built, or when it is older than
// Config.DemandRebuildInterval (a reconciliation with attest's tables).
func (s *Service) RefreshDemand(ctx context.Context) (Run, error) {
	return s.refreshDemand(ctx, false)
}

// RebuildDemand rebuilds the plan from attest's verified plots and crop
// cycles, then publishes the outlook.
func (s *Service) RebuildDemand(ctx context.Context) (Run, error) {
	return s.refreshDemand(ctx, true)
}

func (s *Service) refreshDemand(ctx context.Context, rebuild bool) (Run, error) {
	began := time.Now()
	rates, err := LoadRates(ctx, s.pool)
	if err != nil {
		return Run{}, err
	}
	start := seasonStart(s.now())
	st, ok, err := loadPlanState(ctx, s.pool)
	if err != nil {
		return Run{}, err
	}
	stale := s.cfg.DemandRebuildInterval > 0 && s.now().Sub(st.builtAt) > s.cfg.DemandRebuildInterval
	if rebuild || !ok || !st.season.Equal(start) || st.ratesVersion != rates.Version || stale {
		if err := s.rebuildPlan(ctx, rates, start); err != nil {
			return Run{}, err
		}
		if st, _, err = loadPlanState(ctx, s.pool); err != nil {
			return Run{}, err
		}
		rebuild = true
	}
	// What the consumer queued while the plan was held (by a rebuild,
	// say) is in the plan before it is published.
	if _, err := s.drainDemandPending(ctx, true); err != nil {
		return Run{}, err
	}
	bt, err := s.recentBacktest(ctx, rates, start, st.backtestPred)
	if err != nil {
		return Run{}, err
	}
	return s.publishDemand(ctx, rates, start, bt, rebuild, began)
}

// publishDemand publishes the plan's cell sums: a cell of fewer than K
// farmers is withheld, a published one moves only when at least K
// farmers changed, and the map's districts follow the same rules.
func (s *Service) publishDemand(ctx context.Context, rates Rates, start time.Time, bt Backtest, rebuilt bool, began time.Time) (Run, error) {
	run := Run{SeasonStart: start.Format(time.DateOnly), Months: OutlookMonths, RatesVersion: rates.Version, K: K, Backtest: bt, Rebuilt: rebuilt}
	var cands []candidate
	var points []DistrictPoint
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := postgres.MarkNotSyncedDown(ctx, tx); err != nil {
			return err
		}
		// One publisher at a time across processes: the held-cell rule
		// compares with what the previous publish left.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('marketplace.demand_cells'))`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT district, crop, category, month, farmers, area_m2, grams FROM marketplace.demand_cell_sums
			WHERE farmers > 0 AND month >= $1 AND month < ($1::date + make_interval(months => $2))`, start, OutlookMonths)
		if err != nil {
			return fmt.Errorf("demand cells: %w", err)
		}
		cands, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
			var c candidate
			var m2, grams int64
			err := r.Scan(&c.District, &c.Crop, &c.Category, &c.month, &c.Farmers, &m2, &grams)
			c.Month, c.AreaHa, c.QuantityKg = c.month.Format("2006-01"), float64(m2)/10000, float64(grams)/1000
			return c, err
		})
		if err != nil {
			return fmt.Errorf("demand cells: %w", err)
		}
		// The map's points and the run's counts (a farmer has one home
		// region, so districts' farmers add up).
		rows, err = tx.Query(ctx, `SELECT district, farmers, plots, lat_e6_sum, lon_e6_sum FROM marketplace.demand_district_sums WHERE farmers > 0`)
		if err != nil {
			return fmt.Errorf("district points: %w", err)
		}
		_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
			var d DistrictPoint
			var plots, lat, lon int64
			if err := r.Scan(&d.District, &d.Farmers, &plots, &lat, &lon); err != nil {
				return struct{}{}, err
			}
			run.Farmers += int64(d.Farmers)
			run.Plots += plots
			if d.Farmers >= K {
				d.Lat, d.Lon = roundTo20th(float64(lat)/float64(plots)/1e6), roundTo20th(float64(lon)/float64(plots)/1e6)
				points = append(points, d)
			}
			return struct{}{}, nil
		})
		if err != nil {
			return fmt.Errorf("district points: %w", err)
		}
		run.Cells = len(cands)
		return s.publishCells(ctx, tx, &run, start, cands, points, began)
	})
	if err != nil {
		return Run{}, fmt.Errorf("publish demand outlook: %w", err)
	}
	s.logger.InfoContext(ctx, "demand outlook refreshed", "run", run.ID, "rebuilt", run.Rebuilt, "cells", run.Cells,
		"suppressed", run.Suppressed, "held", run.Held, "took_ms", run.TookMS)
	return run, nil
}

// roundTo20th rounds a coordinate to 0.05° (~5.5 km), half away from zero.
func roundTo20th(x float64) float64 { return math.Round(x*20) / 20 }

// publishCells writes the run and the cells and districts it publishes,
// in tx (which holds the publishers' lock).
func (s *Service) publishCells(ctx context.Context, tx pgx.Tx, run *Run, start time.Time, cands []candidate, points []DistrictPoint, began time.Time) error {
	btJSON, _ := json.Marshal(run.Backtest)
	if err := tx.QueryRow(ctx, `
		INSERT INTO marketplace.demand_runs (season_start, months, rates_version, k, farmers, plots, cells, suppressed, held, backtest, took_ms, computed_at, rebuilt)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, 0, $9, $10) RETURNING run_id, computed_at`,
		start, OutlookMonths, run.RatesVersion, K, run.Farmers, run.Plots, run.Cells, btJSON, s.now(), run.Rebuilt).Scan(&run.ID, &run.ComputedAt); err != nil {
		return fmt.Errorf("demand run: %w", err)
	}
	// Months that have begun are no longer the outlook.
	if _, err := tx.Exec(ctx, `DELETE FROM marketplace.demand_cells WHERE month < $1`, start); err != nil {
		return err
	}
	published := map[[4]string]int{}
	rows, err := tx.Query(ctx, `SELECT district, crop, category, to_char(month, 'YYYY-MM'), farmers FROM marketplace.demand_cells`)
	if err != nil {
		return err
	}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var k [4]string
		var n int
		err := r.Scan(&k[0], &k[1], &k[2], &k[3], &n)
		published[k] = n
		return struct{}{}, err
	})
	if err != nil {
		return err
	}
	keep := map[[4]string]bool{}
	b := &pgx.Batch{}
	for _, c := range cands {
		k := [4]string{c.District, c.Crop, c.Category, c.Month}
		old, was := published[k]
		switch {
		case c.Farmers < K:
			run.Suppressed++
			continue // and deleted below if it was published
		case was && abs(c.Farmers-old) < K:
			run.Held++
			keep[k] = true
			continue
		}
		keep[k] = true
		b.Queue(`
			INSERT INTO marketplace.demand_cells (district, crop, category, month, farmers, area_ha, quantity_kg, run_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (district, crop, category, month) DO UPDATE SET farmers = excluded.farmers, area_ha = excluded.area_ha,
			    quantity_kg = excluded.quantity_kg, run_id = excluded.run_id`,
			c.District, c.Crop, c.Category, c.month, c.Farmers, c.AreaHa, c.QuantityKg, run.ID)
	}
	for k := range published {
		if !keep[k] {
			b.Queue(`DELETE FROM marketplace.demand_cells WHERE district = $1 AND crop = $2 AND category = $3 AND to_char(month, 'YYYY-MM') = $4`, k[0], k[1], k[2], k[3])
		}
	}
	// District points follow the same rule: moved only when at least
	// K farmers changed.
	b.Queue(`DELETE FROM marketplace.demand_districts WHERE NOT (district = ANY($1))`, districtNames(points))
	for _, d := range points {
		b.Queue(`
			INSERT INTO marketplace.demand_districts (district, farmers, lat, lon, run_id) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (district) DO UPDATE SET farmers = excluded.farmers, lat = excluded.lat, lon = excluded.lon, run_id = excluded.run_id
			WHERE abs(demand_districts.farmers - excluded.farmers) >= $6`, d.District, d.Farmers, d.Lat, d.Lon, run.ID, K)
	}
	run.TookMS = time.Since(began).Milliseconds()
	b.Queue(`UPDATE marketplace.demand_runs SET suppressed = $2, held = $3, took_ms = $4 WHERE run_id = $1`, run.ID, run.Suppressed, run.Held, run.TookMS)
	return tx.SendBatch(ctx, b).Close()
}

func districtNames(ds []DistrictPoint) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.District
	}
	return out
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// BacktestMaxAge is how long a backtest serves later refreshes of the same
// season with the same rate table: last season's records change little
// within a day. (Its prediction is computed once per build of the plan;
// what is recomputed after a day is the recorded side.)
const BacktestMaxAge = 24 * time.Hour

// recentBacktest returns the backtest of a run of the last BacktestMaxAge
// for the same season and rate table, or computes it from pred, the
// plan's prediction of last season.
func (s *Service) recentBacktest(ctx context.Context, rates Rates, start time.Time, pred []predicted) (Backtest, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `
		SELECT backtest FROM marketplace.demand_runs
		WHERE season_start = $1 AND rates_version = $2 AND computed_at > $3 ORDER BY run_id DESC LIMIT 1`,
		start, rates.Version, s.now().Add(-BacktestMaxAge)).Scan(&raw)
	switch {
	case err == nil:
		var bt Backtest
		if err := json.Unmarshal(raw, &bt); err != nil {
			return Backtest{}, fmt.Errorf("stored backtest: %w", err)
		}
		return bt, nil
	case err != pgx.ErrNoRows:
		return Backtest{}, fmt.Errorf("stored backtest: %w", err)
	}
	return s.backtest(ctx, start, pred)
}

// backtestSQL: recorded seed and fertilizer (kg) of verified input.applied
// records by district × category × month, with the farmers behind each.
const backtestSQL = `
SELECT fr.region, i.category, date_trunc('month', i.applied_on)::date, count(DISTINCT i.farmer_id)::int, sum(i.quantity)
FROM ingest.input_records i
JOIN attest.record_status st ON st.id = i.record_id AND st.status = 'verified'
JOIN attest.farmer_regions fr ON fr.farmer_id = i.farmer_id
WHERE i.unit = 'kg' AND i.category IN ('seed', 'fertilizer') AND i.applied_on >= $1 AND i.applied_on < ($1::date + make_interval(months => $2))
GROUP BY 1, 2, 3`

// backtest compares the plan's prediction of last season (the same
// months a year before start, from the cycles known before it) with what
// was recorded. Only cells of at least K farmers on both sides are
// compared, so the error itself is computed from k-anonymous figures.
func (s *Service) backtest(ctx context.Context, start time.Time, predictions []predicted) (Backtest, error) {
	last := start.AddDate(-1, 0, 0)
	bt := Backtest{SeasonStart: last.Format(time.DateOnly)}
	type key struct{ district, category, month string }
	pred := map[key]float64{}
	predFarmers := map[key]int{}
	for _, p := range predictions {
		k := key{p.District, p.Category, p.Month}
		pred[k], predFarmers[k] = p.Kg, p.Farmers
	}
	rows, err := s.readPool.Query(ctx, backtestSQL, last, OutlookMonths)
	if err != nil {
		return bt, fmt.Errorf("recorded inputs: %w", err)
	}
	type rec struct {
		k       key
		farmers int
		kg      float64
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rec, error) {
		var x rec
		var month time.Time
		err := r.Scan(&x.k.district, &x.k.category, &month, &x.farmers, &x.kg)
		x.k.month = month.Format("2006-01")
		return x, err
	})
	if err != nil {
		return bt, fmt.Errorf("recorded inputs: %w", err)
	}
	var absErr, sumPct float64
	for _, x := range recs {
		if x.farmers < K || predFarmers[x.k] < K || x.kg <= 0 {
			continue
		}
		p := pred[x.k]
		bt.Cells++
		bt.PredictedKg += p
		bt.RecordedKg += x.kg
		absErr += math.Abs(p - x.kg)
		sumPct += math.Abs(p-x.kg) / x.kg
	}
	if bt.Cells == 0 {
		bt.Note = "no district × category × month of last season has recorded inputs and a prediction from at least 10 farmers each: nothing to compare yet"
		return bt, nil
	}
	wape, mape := absErr/bt.RecordedKg, sumPct/float64(bt.Cells)
	bt.WAPE, bt.MAPE = &wape, &mape
	bt.Note = fmt.Sprintf("%d cells of last season compared (district × category × month, at least %d farmers each)", bt.Cells, K)
	return bt, nil
}

// DemandFilter narrows the published outlook; it selects whole cells only,
// so no filter can single out part of a cell.
type DemandFilter struct {
	District string
	Crop     string
	Category string
}

// Demand returns the published outlook.
func (s *Service) Demand(ctx context.Context, f DemandFilter) (Outlook, error) {
	if f.Category != "" && f.Category != "seed" && f.Category != "fertilizer" {
		return Outlook{}, apperr.Fields("bad filter", apperr.FieldError{Field: "category", Message: "must be seed or fertilizer"})
	}
	out := Outlook{Method: MethodNote, Cells: []Cell{}, Totals: []MonthTotal{}, Districts: []DistrictPoint{}}
	var run Run
	var bt []byte
	err := s.readPool.QueryRow(ctx, `
		SELECT run_id, computed_at, season_start::text, months, rates_version, k, farmers, plots, cells, suppressed, held, backtest, took_ms
		FROM marketplace.demand_runs ORDER BY run_id DESC LIMIT 1`).
		Scan(&run.ID, &run.ComputedAt, &run.SeasonStart, &run.Months, &run.RatesVersion, &run.K, &run.Farmers, &run.Plots, &run.Cells,
			&run.Suppressed, &run.Held, &bt, &run.TookMS)
	if err == pgx.ErrNoRows {
		return out, nil
	}
	if err != nil {
		return Outlook{}, fmt.Errorf("demand run: %w", err)
	}
	if err := json.Unmarshal(bt, &run.Backtest); err != nil {
		return Outlook{}, fmt.Errorf("demand run backtest: %w", err)
	}
	out.Run = &run
	rows, err := s.readPool.Query(ctx, `
		SELECT district, crop, category, to_char(month, 'YYYY-MM'), farmers, area_ha, quantity_kg FROM marketplace.demand_cells
		WHERE month >= $1 AND ($2 = '' OR district = $2) AND ($3 = '' OR crop = $3) AND ($4 = '' OR category = $4)
		ORDER BY month, district, crop, category`, run.SeasonStart, f.District, f.Crop, f.Category)
	if err != nil {
		return Outlook{}, fmt.Errorf("demand cells: %w", err)
	}
	out.Cells, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Cell, error) {
		var c Cell
		return c, r.Scan(&c.District, &c.Crop, &c.Category, &c.Month, &c.Farmers, &c.AreaHa, &c.QuantityKg)
	})
	if err != nil {
		return Outlook{}, fmt.Errorf("demand cells: %w", err)
	}
	totals := map[[2]string]float64{}
	for _, c := range out.Cells {
		totals[[2]string{c.Month, c.Category}] += c.QuantityKg
	}
	for k, v := range totals {
		out.Totals = append(out.Totals, MonthTotal{Month: k[0], Category: k[1], QuantityKg: v})
	}
	sort.Slice(out.Totals, func(i, j int) bool {
		a, b := out.Totals[i], out.Totals[j]
		return a.Month < b.Month || a.Month == b.Month && a.Category < b.Category
	})
	rows, err = s.readPool.Query(ctx, `SELECT district, farmers, lat, lon FROM marketplace.demand_districts ORDER BY district`)
	if err != nil {
		return Outlook{}, fmt.Errorf("demand districts: %w", err)
	}
	out.Districts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DistrictPoint, error) {
		var d DistrictPoint
		return d, r.Scan(&d.District, &d.Farmers, &d.Lat, &d.Lon)
	})
	if err != nil {
		return Outlook{}, fmt.Errorf("demand districts: %w", err)
	}
	if out.Cells == nil {
		out.Cells = []Cell{}
	}
	if out.Districts == nil {
		out.Districts = []DistrictPoint{}
	}
	return out, nil
}
