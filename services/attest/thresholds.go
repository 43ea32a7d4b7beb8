package attest

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Threshold is one row of attest.thresholds: the bounds for a crop in a
// region, in one version of the table.
type Threshold struct {
	Version             int
	Crop, Region        string
	YieldMinTHa         *float64
	YieldMaxTHa         *float64
	YieldBasis          string
	SeasonMinDays       *int
	SeasonMaxDays       *int
	PlantingMonths      []int
	PlotMinHa           float64
	PlotMaxHa           float64
	AreaTolerance       float64
	PlotGPSAccuracyMaxM float64
	CaptureAccuracyMaxM float64
	CaptureDistanceMaxM float64
	OverlapTolerance    float64
	AreaValidSeasons    int
	// DeliveryDistanceMaxM is how far from the farmer's nearest plot a
	// delivery may be confirmed (from thresholds v2; nil before).
	DeliveryDistanceMaxM *float64
}

// Thresholds is one version of the table, indexed for lookup.
type Thresholds struct {
	Version int
	rows    map[[2]string]Threshold // crop, region
}

// For returns the bounds for crop in region: the exact row, else the
// crop's national row, else the general row ("*", "*"). A crop without
// its own row gets no yield or calendar bounds, so those rules flag.
func (t Thresholds) For(crop, region string) (Threshold, error) {
	for _, k := range [][2]string{{crop, region}, {crop, "*"}, {"*", region}, {"*", "*"}} {
		if k[0] == "" {
			continue
		}
		if th, ok := t.rows[k]; ok {
			return th, nil
		}
	}
	return Threshold{}, fmt.Errorf("thresholds v%d have no general row (crop *, region *)", t.Version)
}

// loadThresholds reads the newest version of the table.
func loadThresholds(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (Thresholds, error) {
	rows, err := q.Query(ctx, `
		SELECT version, crop, region, yield_min_t_ha, yield_max_t_ha, yield_basis, season_min_days, season_max_days,
		       planting_months, plot_min_ha, plot_max_ha, area_tolerance, plot_gps_accuracy_max_m, capture_accuracy_max_m,
		       capture_distance_max_m, overlap_tolerance, area_valid_seasons, delivery_distance_max_m
		FROM attest.thresholds WHERE version = (SELECT max(version) FROM attest.thresholds)`)
	if err != nil {
		return Thresholds{}, fmt.Errorf("load thresholds: %w", err)
	}
	out := Thresholds{rows: map[[2]string]Threshold{}}
	for rows.Next() {
		var t Threshold
		var months []int32
		if err := rows.Scan(&t.Version, &t.Crop, &t.Region, &t.YieldMinTHa, &t.YieldMaxTHa, &t.YieldBasis, &t.SeasonMinDays, &t.SeasonMaxDays,
			&months, &t.PlotMinHa, &t.PlotMaxHa, &t.AreaTolerance, &t.PlotGPSAccuracyMaxM, &t.CaptureAccuracyMaxM,
			&t.CaptureDistanceMaxM, &t.OverlapTolerance, &t.AreaValidSeasons, &t.DeliveryDistanceMaxM); err != nil {
			return Thresholds{}, fmt.Errorf("scan thresholds: %w", err)
		}
		for _, m := range months {
			t.PlantingMonths = append(t.PlantingMonths, int(m))
		}
		out.Version = t.Version
		out.rows[[2]string{t.Crop, t.Region}] = t
	}
	if err := rows.Err(); err != nil {
		return Thresholds{}, fmt.Errorf("load thresholds: %w", err)
	}
	if len(out.rows) == 0 {
		return Thresholds{}, fmt.Errorf("attest.thresholds is empty")
	}
	return out, nil
}
