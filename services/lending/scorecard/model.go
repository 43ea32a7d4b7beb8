package scorecard

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// v1 is the reviewed model file (see its header).
//
//go:embed v1.yaml
var v1 []byte

// Model is a parsed, checked scorecard file.
type Model struct {
	Version     string `yaml:"version"`
	Description string `yaml:"description"`
	// Digest is the SHA-256 of the file's bytes (hex): what a journaled
	// score names besides the version, so that a dispute can show which
	// file, byte for byte, made the decision.
	Digest     string     `yaml:"-"`
	Scaling    Scaling    `yaml:"scaling"`
	Bands      []Band     `yaml:"bands"`
	Confidence Confidence `yaml:"confidence"`
	Windows    Windows    `yaml:"windows"`
	Factors    []Factor   `yaml:"factors"`
	Benchmarks Benchmarks `yaml:"benchmarks"`
}

// Scaling turns points into a probability of default.
type Scaling struct {
	BasePoints  float64  `yaml:"base_points"`
	PDO         float64  `yaml:"pdo"`
	AnchorScore float64  `yaml:"anchor_score"`
	AnchorOdds  float64  `yaml:"anchor_odds"`
	Calibration string   `yaml:"calibration"`
	Sources     []string `yaml:"sources"`
}

// Band is a score range with its limit multiplier.
type Band struct {
	Name            string  `yaml:"name"`
	MinScore        int     `yaml:"min_score"`
	LimitMultiplier float64 `yaml:"limit_multiplier"`
}

// Confidence says how much land counts by how it was verified.
type Confidence struct {
	Reasoning            string            `yaml:"reasoning"`
	Sources              []string          `yaml:"sources"`
	Levels               map[Level]float64 `yaml:"levels"`
	UnverifiedAreaWeight float64           `yaml:"unverified_area_weight"`
}

// Windows bound how far back evidence counts.
type Windows struct {
	HistoryDays int `yaml:"history_days"`
	IncomeDays  int `yaml:"income_days"`
	InputsDays  int `yaml:"inputs_days"`
}

// Factor maps one feature to points.
type Factor struct {
	Name      string `yaml:"name"`
	Feature   string `yaml:"feature"`
	Unit      string `yaml:"unit"`
	Direction string `yaml:"direction"` // increasing, decreasing, categorical
	// Points is a piecewise-linear table of [feature, points] pairs,
	// flat beyond its ends.
	Points     [][2]float64       `yaml:"points"`
	Categories map[string]float64 `yaml:"categories"`
	// MissingPoints, when set, are the points of a farmer with no
	// evidence for the feature; else the table's value at 0.
	MissingPoints *float64 `yaml:"missing_points"`
	Adverse       Adverse  `yaml:"adverse"`
	// AdverseMissing is the reason given when the feature is missing.
	AdverseMissing *Adverse `yaml:"adverse_missing"`
	Reasoning      string   `yaml:"reasoning"`
	Sources        []string `yaml:"sources"`
}

// Adverse is a reason code and its statement to the farmer.
type Adverse struct {
	Code    string `yaml:"code"`
	Message string `yaml:"message"`
}

// Benchmarks are the expected yields and prices per crop.
type Benchmarks struct {
	Currency      string           `yaml:"currency"`
	LimitRounding int64            `yaml:"limit_rounding_minor"`
	Crops         map[string]Bench `yaml:"crops"`
}

// Bench is one crop's benchmark.
type Bench struct {
	YieldTHa        float64            `yaml:"yield_t_ha"`
	PriceMinorPerKg float64            `yaml:"price_minor_per_kg"`
	Perennial       bool               `yaml:"perennial"`
	Source          string             `yaml:"source"`
	Regions         map[string]float64 `yaml:"regions"`
}

// Yield is the crop's benchmark yield in region (t/ha per season, per
// year for perennials) and whether one is known.
func (b Benchmarks) Yield(crop, region string) (float64, bool) {
	c, ok := b.Crops[crop]
	if !ok {
		return 0, false
	}
	if y, ok := c.Regions[region]; ok {
		return y, true
	}
	return c.YieldTHa, true
}

// The factors the code computes features for, in the file's order.
var factorNames = []string{"land", "yield", "seasons", "income", "inputs", "tenure", "repayment", "recency"}

var (
	v1Once  sync.Once
	v1Model *Model
	v1Err   error
)

// V1 returns the embedded version 1. The file is checked by the tests, so
// a failure here is a build that should not have shipped.
func V1() *Model {
	v1Once.Do(func() { v1Model, v1Err = Parse(v1) })
	if v1Err != nil {
		panic(fmt.Sprintf("scorecard v1: %v", v1Err))
	}
	return v1Model
}

// Parse reads and checks a scorecard file: every factor the code knows,
// in order, with a table that is sorted and monotone in its stated
// direction; bands from highest to lowest ending at 0; a confidence for
// every level, none above 1; benchmarks with positive figures.
func Parse(data []byte) (*Model, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Model
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode scorecard: %w", err)
	}
	sum := sha256.Sum256(data)
	m.Digest = hex.EncodeToString(sum[:])
	// Folded YAML text ends in a line break; the texts are shown to people.
	m.Description = strings.TrimSpace(m.Description)
	m.Scaling.Calibration = strings.TrimSpace(m.Scaling.Calibration)
	m.Confidence.Reasoning = strings.TrimSpace(m.Confidence.Reasoning)
	for i := range m.Factors {
		m.Factors[i].Reasoning = strings.TrimSpace(m.Factors[i].Reasoning)
	}
	var errs []error
	if m.Version == "" {
		errs = append(errs, errors.New("version is empty"))
	}
	if m.Scaling.PDO <= 0 || m.Scaling.AnchorOdds <= 0 || m.Scaling.Calibration == "" {
		errs = append(errs, errors.New("scaling needs pdo > 0, anchor_odds > 0 and the calibration method"))
	}
	for i, b := range m.Bands {
		if i > 0 && b.MinScore >= m.Bands[i-1].MinScore {
			errs = append(errs, fmt.Errorf("band %s: bands must go from the highest min_score down", b.Name))
		}
		if i > 0 && b.LimitMultiplier > m.Bands[i-1].LimitMultiplier {
			errs = append(errs, fmt.Errorf("band %s: a lower band must not multiply the limit more", b.Name))
		}
	}
	if len(m.Bands) == 0 || m.Bands[len(m.Bands)-1].MinScore != 0 {
		errs = append(errs, errors.New("the last band must start at 0"))
	}
	order := []Level{Corroborated, GPSWalk, Reviewed, Expired, Unverified}
	for i, l := range order {
		c, ok := m.Confidence.Levels[l]
		if !ok || c <= 0 || c > 1 {
			errs = append(errs, fmt.Errorf("confidence of %s must be in (0, 1]", l))
		}
		if i > 0 && c > m.Confidence.Levels[order[i-1]] {
			errs = append(errs, fmt.Errorf("confidence of %s must not exceed %s's", l, order[i-1]))
		}
	}
	if w := m.Confidence.UnverifiedAreaWeight; w <= 0 || w > 1 {
		errs = append(errs, errors.New("unverified_area_weight must be in (0, 1]"))
	}
	if m.Windows.HistoryDays <= 0 || m.Windows.IncomeDays <= 0 || m.Windows.InputsDays <= 0 {
		errs = append(errs, errors.New("windows must be positive"))
	}
	var names []string
	for _, f := range m.Factors {
		names = append(names, f.Name)
		errs = append(errs, checkFactor(f)...)
	}
	if !slices.Equal(names, factorNames) {
		errs = append(errs, fmt.Errorf("factors are %v, want %v", names, factorNames))
	}
	if m.Benchmarks.Currency == "" || m.Benchmarks.LimitRounding <= 0 {
		errs = append(errs, errors.New("benchmarks need a currency and limit_rounding_minor > 0"))
	}
	for crop, b := range m.Benchmarks.Crops {
		if b.YieldTHa <= 0 || b.PriceMinorPerKg <= 0 || b.Source == "" {
			errs = append(errs, fmt.Errorf("benchmark %s needs yield, price and source", crop))
		}
		for r, y := range b.Regions {
			if y <= 0 {
				errs = append(errs, fmt.Errorf("benchmark %s in %s must be positive", crop, r))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("scorecard %s: %w", m.Version, err)
	}
	return &m, nil
}

func checkFactor(f Factor) []error {
	var errs []error
	if f.Reasoning == "" || len(f.Sources) == 0 || f.Adverse.Code == "" || f.Adverse.Message == "" {
		errs = append(errs, fmt.Errorf("factor %s needs reasoning, sources and an adverse reason", f.Name))
	}
	switch f.Direction {
	case "categorical":
		if len(f.Categories) == 0 || len(f.Points) > 0 {
			errs = append(errs, fmt.Errorf("factor %s: a categorical factor has categories and no points", f.Name))
		}
	case "increasing", "decreasing":
		if len(f.Points) < 2 {
			errs = append(errs, fmt.Errorf("factor %s needs at least two points", f.Name))
		}
		for i := 1; i < len(f.Points); i++ {
			prev, p := f.Points[i-1], f.Points[i]
			if p[0] <= prev[0] {
				errs = append(errs, fmt.Errorf("factor %s: feature values must increase", f.Name))
			}
			if f.Direction == "increasing" && p[1] < prev[1] || f.Direction == "decreasing" && p[1] > prev[1] {
				errs = append(errs, fmt.Errorf("factor %s: points are not %s", f.Name, f.Direction))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("factor %s: direction %q", f.Name, f.Direction))
	}
	return errs
}

// pointsAt evaluates the factor's table at x.
func (f Factor) pointsAt(x float64) float64 {
	p := f.Points
	if x <= p[0][0] {
		return p[0][1]
	}
	for i := 1; i < len(p); i++ {
		if x <= p[i][0] {
			a, b := p[i-1], p[i]
			return a[1] + (b[1]-a[1])*(x-a[0])/(b[0]-a[0])
		}
	}
	return p[len(p)-1][1]
}

// maxPoints is the most the factor can give.
func (f Factor) maxPoints() float64 {
	best := 0.0
	for _, p := range f.Points {
		best = max(best, p[1])
	}
	for _, v := range f.Categories {
		best = max(best, v)
	}
	return best
}
