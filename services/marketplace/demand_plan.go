package marketplace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres"
)

// The outlook's plan (docs/marketplace.md, "How the outlook is kept"):
// each farmer's part of each cell of the season, kept in
// marketplace.demand_farmer_cells with the cells' sums beside it. The
// rebuild computes it from attest's verified plots and cycles; an
// announcement of a plot, crop cycle or farmer record recomputes the
// farmer it concerns from the same tables with the same statement, after
// taking that farmer's old part out of the sums. Recomputing from the
// source rather than applying the record makes the update idempotent and
// order-free (a redelivery, a review that rejects a verified record, a
// re-mapped plot all come out right), and integer quantities make the
// kept sums equal, to the gram, to what a rebuild computes.

// demandRecordTypes are the records whose decisions move the plan.
var demandRecordTypes = map[string]bool{"farmer.registered": true, "plot.mapped": true, "crop.planted": true}

// planLock serializes the plan's writers (the consumer's updates, a
// rebuild, an erasure): the sums are read-modify-write.
const planLock = `SELECT pg_advisory_xact_lock(hashtext('marketplace.demand_plan'))`

// farmerCellsSQL computes farmers' parts of the cells of the season
// starting at $1 (cycles planted before it): annual crops repeat each
// verified cycle planted in the 12 months before the season one year
// after its planting month; perennials are fertilized from the
// rainy-season month ($2) on; each plot counts with its area, each part
// is rounded to m² and grams per plot. %[1]s filters the plots, %[2]s the
// cycles (a rebuild has no filter; an update names its farmers in $11).
const farmerCellsSQL = `
WITH r AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::float8[], $6::float8[], $7::int[]) AS r(crop, category, kg_per_ha, share, offs)),
plots AS (SELECT plot_id, farmer_id, district, area_ha FROM marketplace.demand_plan_plots %[1]s),
cycles AS (SELECT c.record_id, c.plot_id, c.crop, c.planted_on FROM attest.verified_crop_cycles c %[2]s),
annual AS (
    SELECT DISTINCT plot_id, crop, (date_trunc('month', planted_on) + interval '1 year')::date AS anchor
    FROM cycles WHERE planted_on >= ($1::date - interval '12 months') AND planted_on < $1::date AND crop = ANY($8::text[])),
perennial AS (
    SELECT l.plot_id, l.crop, a.anchor
    FROM (SELECT DISTINCT ON (plot_id) plot_id, crop FROM cycles WHERE planted_on < $1::date
          ORDER BY plot_id, planted_on DESC, record_id DESC) l
    CROSS JOIN (VALUES (make_date(extract(year FROM $1::date)::int - 1, $2, 1)), (make_date(extract(year FROM $1::date)::int, $2, 1))) AS a(anchor)
    WHERE l.crop = ANY($9::text[])),
anchored AS (SELECT * FROM annual UNION ALL SELECT * FROM perennial),
spread AS (
    SELECT p.farmer_id, p.district, a.crop, r.category, (a.anchor + make_interval(months => r.offs))::date AS month,
           round(p.area_ha * 10000)::bigint AS area_m2, round(p.area_ha * r.kg_per_ha * r.share * 1000)::bigint AS grams
    FROM anchored a
    JOIN plots p ON p.plot_id = a.plot_id
    JOIN r ON r.crop = a.crop)
SELECT farmer_id, district, crop, category, month, sum(area_m2)::bigint, sum(grams)::bigint
FROM spread
WHERE month >= $1::date AND month < ($1::date + make_interval(months => $10))
GROUP BY 1, 2, 3, 4, 5`

const farmerCellColumns = `farmer_id, district, crop, category, month, area_m2, grams`

// The plan's statements over a set of farmers ($1).
const (
	planPlotsOf = `
		INSERT INTO marketplace.demand_plan_plots (plot_id, farmer_id, district, area_ha, lat_e6, lon_e6)
		SELECT plot_id, farmer_id, region, area_ha, round(lat * 1e6)::bigint, round(lon * 1e6)::bigint
		FROM attest.verified_plots v WHERE region <> ''
		AND NOT EXISTS (SELECT 1 FROM marketplace.erasures e WHERE e.farmer_id = v.farmer_id) %s`
	subtractCells = `
		UPDATE marketplace.demand_cell_sums s SET farmers = s.farmers - o.farmers, area_m2 = s.area_m2 - o.area_m2, grams = s.grams - o.grams
		FROM (SELECT district, crop, category, month, count(*)::int AS farmers, sum(area_m2)::bigint AS area_m2, sum(grams)::bigint AS grams
		      FROM marketplace.demand_farmer_cells WHERE farmer_id = ANY($1::uuid[]) GROUP BY 1, 2, 3, 4) o
		WHERE s.district = o.district AND s.crop = o.crop AND s.category = o.category AND s.month = o.month`
	addCells = `
		INSERT INTO marketplace.demand_cell_sums AS s (district, crop, category, month, farmers, area_m2, grams)
		SELECT district, crop, category, month, count(*), sum(area_m2), sum(grams)
		FROM marketplace.demand_farmer_cells WHERE farmer_id = ANY($1::uuid[]) GROUP BY 1, 2, 3, 4
		ON CONFLICT (district, crop, category, month) DO UPDATE SET
		    farmers = s.farmers + excluded.farmers, area_m2 = s.area_m2 + excluded.area_m2, grams = s.grams + excluded.grams`
	subtractDistricts = `
		UPDATE marketplace.demand_district_sums s SET farmers = s.farmers - o.farmers, plots = s.plots - o.plots,
		    lat_e6_sum = s.lat_e6_sum - o.lat, lon_e6_sum = s.lon_e6_sum - o.lon
		FROM (SELECT district, count(DISTINCT farmer_id)::int AS farmers, count(*) AS plots, sum(lat_e6)::bigint AS lat, sum(lon_e6)::bigint AS lon
		      FROM marketplace.demand_plan_plots WHERE farmer_id = ANY($1::uuid[]) GROUP BY 1) o
		WHERE s.district = o.district`
	addDistricts = `
		INSERT INTO marketplace.demand_district_sums AS s (district, farmers, plots, lat_e6_sum, lon_e6_sum)
		SELECT district, count(DISTINCT farmer_id), count(*), sum(lat_e6), sum(lon_e6)
		FROM marketplace.demand_plan_plots WHERE farmer_id = ANY($1::uuid[]) GROUP BY 1
		ON CONFLICT (district) DO UPDATE SET farmers = s.farmers + excluded.farmers, plots = s.plots + excluded.plots,
		    lat_e6_sum = s.lat_e6_sum + excluded.lat_e6_sum, lon_e6_sum = s.lon_e6_sum + excluded.lon_e6_sum`
)

// rateArgs are the rate table as the arrays farmerCellsSQL takes, with
// the crops on a seasonal and a yearly basis.
type rateArgs struct {
	crop, category   []string
	kg, share        []float64
	offs             []int32
	seasonal, yearly []string
}

func rateArrays(rates Rates) rateArgs {
	var a rateArgs
	seasonal, yearly := map[string]bool{}, map[string]bool{}
	for _, r := range rates.Rows {
		if r.KgPerHa <= 0 {
			continue
		}
		for i, sh := range r.MonthShares {
			if sh <= 0 {
				continue
			}
			a.crop, a.category = append(a.crop, r.Crop), append(a.category, r.Category)
			a.kg, a.share, a.offs = append(a.kg, r.KgPerHa), append(a.share, sh), append(a.offs, int32(i))
		}
		if r.Basis == "season" {
			seasonal[r.Crop] = true
		} else {
			yearly[r.Crop] = true
		}
	}
	a.seasonal, a.yearly = keys(seasonal), keys(yearly)
	return a
}

// args are farmerCellsSQL's arguments for the season starting at start.
func (a rateArgs) args(start time.Time, extra ...any) []any {
	return append([]any{start, RainySeasonMonth, a.crop, a.category, a.kg, a.share, a.offs, a.seasonal, a.yearly, OutlookMonths}, extra...)
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// planState is what the plan was built for.
type planState struct {
	season       time.Time
	ratesVersion int
	backtestPred []predicted
	builtAt      time.Time
}

// predicted is the outlook method's prediction of one district × category
// × month of last season, for the backtest.
type predicted struct {
	District string  `json:"district"`
	Category string  `json:"category"`
	Month    string  `json:"month"`
	Farmers  int     `json:"farmers"` // the largest crop's: a lower bound of the distinct farmers
	Kg       float64 `json:"kg"`
}

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func loadPlanState(ctx context.Context, q rowQuerier) (planState, bool, error) {
	var st planState
	var pred []byte
	err := q.QueryRow(ctx, `SELECT season_start, rates_version, backtest_pred, built_at FROM marketplace.demand_plan_state`).
		Scan(&st.season, &st.ratesVersion, &pred, &st.builtAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return planState{}, false, nil
	}
	if err != nil {
		return planState{}, false, fmt.Errorf("demand plan state: %w", err)
	}
	if err := json.Unmarshal(pred, &st.backtestPred); err != nil {
		return planState{}, false, fmt.Errorf("demand plan state: %w", err)
	}
	return st, true, nil
}

// rebuildPlan computes the plan of the season starting at start from
// scratch, in one transaction, and last season's prediction for the
// backtest (kept from the plan it replaces when that was for the same
// season and rate table: it is about cycles planted before last season).
// It runs as the batch it is: hash joins over the tables rather than a
// million index probes.
func (s *Service) rebuildPlan(ctx context.Context, rates Rates, start time.Time) error {
	began := time.Now()
	ra := rateArrays(rates)
	var took [4]time.Duration // plots, cells, sums, prediction
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := postgres.MarkNotSyncedDown(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL enable_nestloop = off; SET LOCAL work_mem = '64MB'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, planLock); err != nil {
			return err
		}
		prev, had, err := loadPlanState(ctx, tx)
		if err != nil {
			return err
		}
		step := time.Now()
		lap := func(i int) { took[i], step = time.Since(step), time.Now() }
		if _, err := tx.Exec(ctx, `TRUNCATE marketplace.demand_plan_plots, marketplace.demand_farmer_cells,
			marketplace.demand_cell_sums, marketplace.demand_district_sums`); err != nil {
			return fmt.Errorf("rebuild demand plan: %w", err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(planPlotsOf, "")); err != nil {
			return fmt.Errorf("rebuild demand plan: plots: %w", err)
		}
		lap(0)
		if _, err := tx.Exec(ctx, `INSERT INTO marketplace.demand_farmer_cells (`+farmerCellColumns+`) `+fmt.Sprintf(farmerCellsSQL, "", ""),
			ra.args(start)...); err != nil {
			return fmt.Errorf("rebuild demand plan: cells: %w", err)
		}
		lap(1)
		for _, q := range []string{
			`INSERT INTO marketplace.demand_cell_sums (district, crop, category, month, farmers, area_m2, grams)
			 SELECT district, crop, category, month, count(*), sum(area_m2), sum(grams) FROM marketplace.demand_farmer_cells GROUP BY 1, 2, 3, 4`,
			`INSERT INTO marketplace.demand_district_sums (district, farmers, plots, lat_e6_sum, lon_e6_sum)
			 SELECT district, count(DISTINCT farmer_id), count(*), sum(lat_e6), sum(lon_e6) FROM marketplace.demand_plan_plots GROUP BY 1`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("rebuild demand plan: sums: %w", err)
			}
		}
		lap(2)
		pred := prev.backtestPred
		if !had || !prev.season.Equal(start) || prev.ratesVersion != rates.Version {
			if pred, err = predictLastSeason(ctx, tx, ra, start.AddDate(-1, 0, 0)); err != nil {
				return err
			}
		}
		lap(3)
		predJSON, _ := json.Marshal(pred)
		_, err = tx.Exec(ctx, `
			INSERT INTO marketplace.demand_plan_state (season_start, rates_version, backtest_pred, built_at, build_ms) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (singleton) DO UPDATE SET season_start = excluded.season_start, rates_version = excluded.rates_version,
			    backtest_pred = excluded.backtest_pred, built_at = excluded.built_at, build_ms = excluded.build_ms`,
			start, rates.Version, predJSON, s.now(), time.Since(began).Milliseconds())
		if err != nil {
			return fmt.Errorf("demand plan state: %w", err)
		}
		return nil
	})
	if err == nil {
		s.logger.InfoContext(ctx, "demand plan rebuilt", "season", start.Format(time.DateOnly), "rates_version", rates.Version,
			"took_ms", time.Since(began).Milliseconds(), "plots_ms", took[0].Milliseconds(), "cells_ms", took[1].Milliseconds(),
			"sums_ms", took[2].Milliseconds(), "prediction_ms", took[3].Milliseconds())
	}
	return err
}

// predictLastSeason runs the method on the season starting at last, with
// the plots as the plan holds them and the cycles planted before it, by
// district × category × month (the backtest's grain).
func predictLastSeason(ctx context.Context, tx pgx.Tx, ra rateArgs, last time.Time) ([]predicted, error) {
	rows, err := tx.Query(ctx, `
		SELECT district, category, to_char(month, 'YYYY-MM'), max(farmers)::int, sum(grams)::float8 / 1000
		FROM (SELECT district, crop, category, month, count(*) AS farmers, sum(grams) AS grams
		      FROM (`+fmt.Sprintf(farmerCellsSQL, "", "")+`) AS fc(farmer_id, district, crop, category, month, area_m2, grams)
		      GROUP BY 1, 2, 3, 4) AS cells
		GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, ra.args(last)...)
	if err != nil {
		return nil, fmt.Errorf("predict last season: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (predicted, error) {
		var p predicted
		return p, r.Scan(&p.District, &p.Category, &p.Month, &p.Farmers, &p.Kg)
	})
	if err != nil {
		return nil, fmt.Errorf("predict last season: %w", err)
	}
	if out == nil {
		out = []predicted{}
	}
	return out, nil
}

// ApplyDemandRecords brings the plan up to date with attest's decisions
// on farmer.registered, plot.mapped and crop.planted records, whatever
// the decisions: the records' farmers (and the owners of their plots) are
// recomputed from attest's verified plots and cycles. A record attest no
// longer holds (its farmer erased) changes nothing here: the erasure does.
func (s *Service) ApplyDemandRecords(ctx context.Context, recordIDs ...string) error {
	for _, id := range recordIDs {
		if !validLowerUUID(id) {
			return apperr.Errorf(apperr.Invalid, "demand plan: bad record id %q", id)
		}
	}
	rows, err := s.pool.Query(ctx, `
		WITH e AS (SELECT farmer_id, plot_id FROM attest.evidence WHERE record_id = ANY($1::uuid[]))
		SELECT farmer_id::text FROM e WHERE farmer_id IS NOT NULL
		UNION SELECT p.farmer_id::text FROM e JOIN attest.verified_plots p ON p.plot_id = e.plot_id
		UNION SELECT p.farmer_id::text FROM e JOIN marketplace.demand_plan_plots p ON p.plot_id = e.plot_id`, recordIDs)
	if err != nil {
		return fmt.Errorf("demand plan: %d records: %w", len(recordIDs), err)
	}
	farmers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("demand plan: %d records: %w", len(recordIDs), err)
	}
	if len(farmers) == 0 {
		return nil
	}
	return s.UpdateDemandFarmers(ctx, farmers...)
}

// UpdateDemandFarmers queues farmers whose records attest decided and
// recomputes their parts of the plan from attest's verified plots and
// cycles, unless another writer holds the plan: a rebuild (which drains
// the queue when done), another update, a publish (which drains it
// first). The consumer never waits for a rebuild.
func (s *Service) UpdateDemandFarmers(ctx context.Context, farmers ...string) error {
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO marketplace.demand_pending (farmer_id) SELECT unnest($1::uuid[])
		ON CONFLICT (farmer_id) DO UPDATE SET seq = excluded.seq`, farmers); err != nil {
		return fmt.Errorf("queue demand plan update: %w", err)
	}
	_, err := s.drainDemandPending(ctx, false)
	return err
}

// drainBatch is how many queued farmers one transaction recomputes.
const drainBatch = 500

// drainDemandPending recomputes queued farmers until the queue is empty;
// with wait false it returns at once when another writer holds the plan.
func (s *Service) drainDemandPending(ctx context.Context, wait bool) (int, error) {
	total := 0
	for {
		n, locked, err := s.drainOnce(ctx, wait)
		total += n
		if err != nil || !locked || n < drainBatch {
			return total, err
		}
	}
}

func (s *Service) drainOnce(ctx context.Context, wait bool) (n int, locked bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := postgres.MarkNotSyncedDown(ctx, tx); err != nil {
			return err
		}
		// Plans for the farmers at hand (index probes): a generic plan of
		// these prepared statements could scan the tables instead.
		if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_custom_plan`); err != nil {
			return err
		}
		if wait {
			if _, err := tx.Exec(ctx, planLock); err != nil {
				return err
			}
			locked = true
		} else if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtext('marketplace.demand_plan'))`).Scan(&locked); err != nil || !locked {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT farmer_id::text, seq FROM marketplace.demand_pending ORDER BY seq LIMIT $1`, drainBatch)
		if err != nil {
			return err
		}
		var farmers []string
		var seqs []int64
		_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
			var f string
			var q int64
			err := r.Scan(&f, &q)
			farmers, seqs = append(farmers, f), append(seqs, q)
			return struct{}{}, err
		})
		if err != nil || len(farmers) == 0 {
			return err
		}
		n = len(farmers)
		b := &pgx.Batch{}
		// Only the entries seen: a farmer queued again since is recomputed
		// again.
		b.Queue(`DELETE FROM marketplace.demand_pending p USING unnest($1::uuid[], $2::bigint[]) AS d(farmer_id, seq)
			WHERE p.farmer_id = d.farmer_id AND p.seq = d.seq`, farmers, seqs)
		st, ok, err := loadPlanState(ctx, tx)
		if err != nil {
			return err
		}
		rates, err := LoadRates(ctx, tx)
		if err != nil {
			return err
		}
		if ok && rates.Version == st.ratesVersion {
			queueRecompute(b, rateArrays(rates), st.season, farmers)
		} // else no plan for this rate table yet: the build that is due reads these farmers' records
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("update demand plan: %w", err)
		}
		return nil
	})
	return n, locked, err
}

// queueRecompute takes farmers' parts out of the sums, recomputes them
// for the season starting at season, and adds them back.
func queueRecompute(b *pgx.Batch, ra rateArgs, season time.Time, farmers []string) {
	b.Queue(subtractCells, farmers)
	b.Queue(subtractDistricts, farmers)
	b.Queue(`DELETE FROM marketplace.demand_farmer_cells WHERE farmer_id = ANY($1::uuid[])`, farmers)
	b.Queue(`DELETE FROM marketplace.demand_plan_plots WHERE farmer_id = ANY($1::uuid[])`, farmers)
	b.Queue(fmt.Sprintf(planPlotsOf, `AND farmer_id = ANY($1::uuid[])`), farmers)
	b.Queue(`INSERT INTO marketplace.demand_farmer_cells (`+farmerCellColumns+`) `+fmt.Sprintf(farmerCellsSQL,
		`WHERE farmer_id = ANY($11::uuid[])`,
		`WHERE c.plot_id = ANY(ARRAY(SELECT plot_id FROM marketplace.demand_plan_plots WHERE farmer_id = ANY($11::uuid[])))`),
		ra.args(season, farmers)...)
	b.Queue(addCells, farmers)
	b.Queue(addDistricts, farmers)
	queueDropEmpty(b)
}

func queueDropEmpty(b *pgx.Batch) {
	b.Queue(`DELETE FROM marketplace.demand_cell_sums WHERE farmers = 0`)
	b.Queue(`DELETE FROM marketplace.demand_district_sums WHERE farmers = 0`)
}

// EraseDemand takes an erased farmer out of the plan and returns how many
// of the plan's rows held them (the marketplace's part of an erasure:
// published cells hold no farmer-level figure and stay until the next
// refresh moves them under the k-anonymity rules).
func (s *Service) EraseDemand(ctx context.Context, farmerID string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := postgres.MarkNotSyncedDown(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, planLock); err != nil {
			return err
		}
		farmers := []string{farmerID}
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM marketplace.demand_pending WHERE farmer_id = $1`, farmerID)
		b.Queue(subtractCells, farmers)
		b.Queue(subtractDistricts, farmers)
		b.Queue(`DELETE FROM marketplace.demand_farmer_cells WHERE farmer_id = ANY($1::uuid[])`, farmers).Exec(func(ct pgconn.CommandTag) error {
			n += ct.RowsAffected()
			return nil
		})
		b.Queue(`DELETE FROM marketplace.demand_plan_plots WHERE farmer_id = ANY($1::uuid[])`, farmers).Exec(func(ct pgconn.CommandTag) error {
			n += ct.RowsAffected()
			return nil
		})
		queueDropEmpty(b)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("erase farmer from demand plan: %w", err)
		}
		return nil
	})
	return n, err
}
