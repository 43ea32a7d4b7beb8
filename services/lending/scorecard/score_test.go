package scorecard_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/services/lending/scorecard"
)

var asOf = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

func leaf(n int64) *int64 { return &n }

func ref(id string, n int64) scorecard.Ref { return scorecard.Ref{RecordID: id, LeafIndex: leaf(n)} }

func days(n int) time.Time { return asOf.AddDate(0, 0, -n) }

var rice = scorecard.Request{Product: scorecard.Product{Crops: []string{"rice"}, Currency: "IDR", LTV: 0.5, MinAmount: 100_000_00, MaxAmount: 50_000_000_00}}

// farmer is a typical verified farmer: one GPS-walked hectare of rice,
// one harvest at the benchmark, a sale, two input applications.
func farmer() scorecard.Evidence {
	return scorecard.Evidence{
		AsOf: asOf, Region: "Central Java",
		Plots:    []scorecard.Plot{{ID: "p1", Ref: ref("r-plot", 10), AreaHa: 1.0, DeclaredHa: 1.1, Tenure: "owned", Level: scorecard.GPSWalk}},
		Cycles:   []scorecard.Cycle{{Ref: ref("r-crop", 11), PlotID: "p1", Crop: "rice", PlantedOn: days(60), ExpectedHarvestOn: days(-50)}},
		Harvests: []scorecard.Harvest{{Ref: ref("r-h1", 12), PlotID: "p1", Crop: "rice", Kg: 5600, On: days(200)}},
		Sales:    []scorecard.Sale{{Ref: ref("r-s1", 13), Crop: "rice", Amount: 20_000_000_00, Currency: "IDR", On: days(190)}},
		Inputs:   []scorecard.Input{{Ref: ref("r-i1", 14), On: days(50)}, {Ref: ref("r-i2", 15), On: days(40)}},
		Newest:   days(40), NewestRef: &scorecard.Ref{RecordID: "r-i2", LeafIndex: leaf(15)},
	}
}

func TestV1Parses(t *testing.T) {
	m := scorecard.V1()
	if m.Version != "tani-smallholder-v1" || len(m.Digest) != 64 {
		t.Errorf("version %q digest %q", m.Version, m.Digest)
	}
	for _, f := range m.Factors {
		if f.Reasoning == "" || len(f.Sources) == 0 {
			t.Errorf("factor %s lacks reasoning or sources", f.Name)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	orig := mustRead(t)
	for name, tc := range map[string]struct{ from, to, want string }{
		"ErrNotMonotone":      {"[[0, 0], [0.25, 20], [0.5, 40]", "[[0, 0], [0.25, 50], [0.5, 40]", "factor land: points are not increasing"},
		"ErrUnsortedFeature":  {"[[6, 20], [12, 10], [24, 0]]", "[[12, 20], [6, 10], [24, 0]]", "factor recency: feature values must increase"},
		"ErrConfidenceOrder":  {"    expired: 0.60", "    expired: 0.90", "confidence of expired must not exceed reviewed's"},
		"ErrBandsOrder":       {"{name: B, min_score: 660", "{name: B, min_score: 760", "band B"},
		"ErrUnknownField":     {"  pdo: 40", "  pdo: 40\n  odds_per_point: 2", "field odds_per_point not found"},
		"ErrNoSources":        {"    sources:\n      - \"Feder", "    sourcez:\n      - \"Feder", "field sourcez not found"},
		"ErrFactorMissing":    {"  - name: inputs", "  - name: fertilizer", "factors are"},
		"ErrBenchmarkNoPrice": {"      price_minor_per_kg: 400000", "      price_minor_per_kg: 0", "benchmark maize needs yield, price and source"},
	} {
		t.Run(name, func(t *testing.T) {
			changed := strings.Replace(string(orig), tc.from, tc.to, 1)
			if changed == string(orig) {
				t.Fatalf("test edit %q not found in v1.yaml", tc.from)
			}
			_, err := scorecard.Parse([]byte(changed))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestFactorDirections: each factor moves the score the way its file
// says, all else equal (table: evidence change -> want the score up or down).
func TestFactorDirections(t *testing.T) {
	m := scorecard.V1()
	base := m.Score(farmer(), rice)
	tests := []struct {
		name   string
		change func(ev *scorecard.Evidence)
		factor string
		up     bool
	}{
		{"MoreLandSameYieldRaises", func(ev *scorecard.Evidence) { ev.Plots[0].AreaHa, ev.Harvests[0].Kg = 2.5, 2.5*ev.Harvests[0].Kg }, "land", true},
		{"AnotherPlotRaises", func(ev *scorecard.Evidence) {
			ev.Plots = append(ev.Plots, scorecard.Plot{ID: "p2", Ref: ref("r-plot2", 20), AreaHa: 0.6, DeclaredHa: 0.6, Tenure: "owned", Level: scorecard.GPSWalk})
		}, "land", true},
		{"LowerYieldLowers", func(ev *scorecard.Evidence) { ev.Harvests[0].Kg = 2000 }, "yield", false},
		{"NoHarvestLowers", func(ev *scorecard.Evidence) { ev.Harvests = nil }, "yield", false},
		{"MoreSeasonsRaise", func(ev *scorecard.Evidence) {
			ev.Harvests = append(ev.Harvests, scorecard.Harvest{Ref: ref("r-h2", 21), PlotID: "p1", Crop: "rice", Kg: 5600, On: days(400)})
		}, "seasons", true},
		{"MoreIncomeRaises", func(ev *scorecard.Evidence) { ev.Sales[0].Amount *= 3 }, "income", true},
		{"OldSaleDoesNotCount", func(ev *scorecard.Evidence) { ev.Sales[0].On = days(400) }, "income", false},
		{"SaleInOtherCurrencyDoesNotCount", func(ev *scorecard.Evidence) { ev.Sales[0].Currency = "USD" }, "income", false},
		{"FewerInputsLower", func(ev *scorecard.Evidence) { ev.Inputs = ev.Inputs[:0] }, "inputs", false},
		{"RentedLowers", func(ev *scorecard.Evidence) { ev.Plots[0].Tenure = "rented" }, "tenure", false},
		{"RepaidLoansRaise", func(ev *scorecard.Evidence) {
			ev.Loans = []scorecard.PastLoan{{LoanID: "l1", Repaid: true}, {LoanID: "l2", Repaid: true}}
		}, "repayment", true},
		{"ArrearsLower", func(ev *scorecard.Evidence) {
			ev.Loans = []scorecard.PastLoan{{LoanID: "l1", Repaid: true, MaxDPD: 45}}
		}, "repayment", false},
		{"WriteOffLowers", func(ev *scorecard.Evidence) {
			ev.Loans = []scorecard.PastLoan{{LoanID: "l1", Repaid: true}, {LoanID: "l2", WrittenOff: true}}
		}, "repayment", false},
		{"StaleLowers", func(ev *scorecard.Evidence) { ev.Newest = days(500) }, "recency", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := farmer()
			tt.change(&ev)
			got := m.Score(ev, rice)
			bp, gp := points(base, tt.factor), points(got, tt.factor)
			if tt.up && !(gp > bp && got.Score > base.Score) || !tt.up && !(gp < bp && got.Score < base.Score) {
				t.Errorf("%s: factor %s %v -> %v, score %d -> %d; want both %s", tt.name, tt.factor, bp, gp, base.Score, got.Score, map[bool]string{true: "up", false: "down"}[tt.up])
			}
		})
	}
}

func points(r scorecard.Result, factor string) float64 {
	for _, f := range r.Factors {
		if f.Name == factor {
			return f.Points
		}
	}
	panic("no factor " + factor)
}

// TestMonotone: more verified land — a plot added, a plot larger, the same
// plot better verified — never lowers the score or the limit. (A larger
// plot carrying the same harvest is a lower yield per hectare, and that
// may lower the score: that is evidence about yield, not land, so the
// varied plot here carries no harvest.)
func TestMonotone(t *testing.T) {
	m := scorecard.V1()
	levels := []scorecard.Level{scorecard.Unverified, scorecard.Expired, scorecard.Reviewed, scorecard.GPSWalk, scorecard.Corroborated}
	with := func(area float64, l scorecard.Level, tenure string) scorecard.Evidence {
		ev := farmer()
		ev.Plots = append(ev.Plots, scorecard.Plot{ID: "pv", Ref: ref("r-pv", 40), AreaHa: area, DeclaredHa: area, Tenure: tenure, Level: l})
		return ev
	}
	base := m.Score(farmer(), rice)
	for _, tenure := range []string{"owned", "rented", "sharecropped", "other"} {
		for _, area := range []float64{0.1, 0.4, 0.9, 1.5, 3, 6, 12} {
			prev := base
			for _, l := range levels {
				r := m.Score(with(area, l, tenure), rice)
				if r.Score < prev.Score || r.Limit < prev.Limit {
					t.Errorf("%s %.1f ha at %s: score %d limit %d, below %d, %d (less verified, or without the plot)", tenure, area, l, r.Score, r.Limit, prev.Score, prev.Limit)
				}
				prev = r
			}
		}
		for _, l := range levels {
			prev := base
			for area := 0.05; area < 30; area *= 1.3 {
				r := m.Score(with(area, l, tenure), rice)
				if r.Score < prev.Score || r.Limit < prev.Limit {
					t.Errorf("%s %s: %.2f ha scores %d with limit %d, below a smaller plot's %d, %d", tenure, l, area, r.Score, r.Limit, prev.Score, prev.Limit)
				}
				prev = r
			}
		}
	}
}

// TestUnverifiedLowersNotRejects: the same farm with its plot unverified
// gets a lower limit than with it walked, but still a limit.
func TestUnverifiedLowersNotRejects(t *testing.T) {
	m := scorecard.V1()
	walked := m.Score(farmer(), rice)
	ev := farmer()
	ev.Plots[0].Level, ev.Plots[0].Ref.LeafIndex = scorecard.Unverified, nil
	un := m.Score(ev, rice)
	if !(un.Limit > 0 && un.Limit < walked.Limit) || un.Confidence >= walked.Confidence {
		t.Errorf("unverified limit %d (confidence %v), walked %d (%v): want 0 < unverified < walked", un.Limit, un.Confidence, walked.Limit, walked.Confidence)
	}
	if un.Band == "E" {
		t.Errorf("unverified farm in band E (score %d): verification alone must not reject", un.Score)
	}
	// Thin file: nothing but one unverified plot.
	thin := scorecard.Evidence{AsOf: asOf, Region: "Central Java", Plots: []scorecard.Plot{{ID: "p1", Ref: scorecard.Ref{RecordID: "r"}, AreaHa: 1, DeclaredHa: 1, Tenure: "owned", Level: scorecard.Unverified}}}
	if r := m.Score(thin, rice); r.Limit <= 0 || r.Band == "E" {
		t.Errorf("thin unverified file: band %s limit %d, want a positive limit", r.Band, r.Limit)
	}
}

// TestLimit: the limit is area x yield x price x confidence x LTV x band
// multiplier, rounded down, within the product's range.
func TestLimit(t *testing.T) {
	m := scorecard.V1()
	r := m.Score(farmer(), rice)
	// Central Java rice: 5.6 t/ha, Rp 5,500/kg; GPS walk 0.85.
	want := 1.0 * 5.6 * 1000 * 550000 * 0.85 * 0.5 * r.BandMultiplier
	if got := float64(r.Limit); got > want || want-got >= 100000 || r.Limit%100000 != 0 {
		t.Errorf("limit %d, want %.0f rounded down to Rp 1,000 (band %s)", r.Limit, want, r.Band)
	}
	if r.Confidence != 0.85 || r.ExpectedRevenue != int64(5.6*1000*550000) {
		t.Errorf("confidence %v expected revenue %d", r.Confidence, r.ExpectedRevenue)
	}
	t.Run("OKCappedAtMax", func(t *testing.T) {
		small := rice
		small.Product.MaxAmount = 1_000_000_00
		if r := m.Score(farmer(), small); r.Limit != 1_000_000_00 {
			t.Errorf("limit %d, want the product's maximum", r.Limit)
		}
	})
	t.Run("OKBelowMinIsZero", func(t *testing.T) {
		big := rice
		big.Product.MinAmount = 40_000_000_00
		if r := m.Score(farmer(), big); r.Limit != 0 || len(r.LimitNotes) == 0 {
			t.Errorf("limit %d notes %v, want 0 with a note", r.Limit, r.LimitNotes)
		}
	})
	t.Run("OKOtherCropNotFinanced", func(t *testing.T) {
		maize := rice
		maize.Product.Crops = []string{"maize"}
		if r := m.Score(farmer(), maize); r.Limit != 0 || r.LimitNotes[0] != "no attested plot grows a crop this product finances" {
			t.Errorf("limit %d notes %v", r.Limit, r.LimitNotes)
		}
	})
	t.Run("OKNoCycleAssumesProductCrop", func(t *testing.T) {
		ev := farmer()
		ev.Cycles = nil
		r := m.Score(ev, rice)
		if len(r.Plots) != 1 || !r.Plots[0].Assumed || r.Plots[0].Crop != "rice" || r.Limit == 0 {
			t.Errorf("plots %+v limit %d", r.Plots, r.Limit)
		}
	})
}

// TestReasons: at most four, ranked by effect, each naming its evidence.
func TestReasons(t *testing.T) {
	m := scorecard.V1()
	// A weak file: small rented plot, low yield, no sales, no inputs,
	// a late loan, stale records: more than four factors cost points.
	ev := scorecard.Evidence{AsOf: asOf, Region: "Central Java",
		Plots:    []scorecard.Plot{{ID: "p1", Ref: ref("r-plot", 1), AreaHa: 0.2, DeclaredHa: 0.2, Tenure: "rented", Level: scorecard.GPSWalk}},
		Harvests: []scorecard.Harvest{{Ref: ref("r-h", 2), PlotID: "p1", Crop: "rice", Kg: 300, On: days(600)}},
		Loans:    []scorecard.PastLoan{{LoanID: "loan-1", LeafIndex: leaf(3), Repaid: true, MaxDPD: 40}},
		Newest:   days(600),
	}
	r := m.Score(ev, rice)
	if len(r.Reasons) != scorecard.MaxReasons {
		t.Fatalf("%d reasons, want %d: %+v", len(r.Reasons), scorecard.MaxReasons, r.Reasons)
	}
	costing := 0
	for _, f := range r.Factors {
		if f.MaxPoints > f.Points {
			costing++
		}
	}
	if costing <= scorecard.MaxReasons {
		t.Fatalf("only %d factors cost points: the test must exercise the cap", costing)
	}
	for i := 1; i < len(r.Reasons); i++ {
		if r.Reasons[i].Effect > r.Reasons[i-1].Effect {
			t.Errorf("reasons not ranked by effect: %+v", r.Reasons)
		}
	}
	byCode := map[string]scorecard.Reason{}
	for _, rs := range r.Reasons {
		byCode[rs.Code] = rs
	}
	// The biggest losses here: income (70), land, seasons and yield.
	if rs, ok := byCode["INC"]; !ok || rs.Effect != 70 {
		t.Errorf("no income reason with effect 70: %+v", r.Reasons)
	}
	if rs, ok := byCode["LND"]; !ok || len(rs.Evidence) != 1 || rs.Evidence[0].RecordID != "r-plot" {
		t.Errorf("land reason does not name the plot record: %+v", rs)
	}
	t.Run("OKMissingEvidenceSaysSo", func(t *testing.T) {
		ev := farmer()
		ev.Harvests = nil
		r := m.Score(ev, rice)
		for _, rs := range r.Reasons {
			if rs.Factor == "yield" && rs.Code == "YLN" && rs.Message == "No verified harvest in the last three years" {
				return
			}
		}
		t.Errorf("no missing-harvest reason in %+v", r.Reasons)
	})
}

// TestHints: each hint, applied, gives exactly the limit it announced,
// and that limit is higher than today's.
func TestHints(t *testing.T) {
	m := scorecard.V1()
	ev := farmer()
	ev.Plots = append(ev.Plots,
		scorecard.Plot{ID: "p-review", Ref: scorecard.Ref{RecordID: "r-review"}, AreaHa: 0.8, DeclaredHa: 1.0, Tenure: "owned", Level: scorecard.Unverified},
		scorecard.Plot{ID: "p-old", Ref: ref("r-old", 30), AreaHa: 0.5, DeclaredHa: 0.5, Tenure: "owned", Level: scorecard.Expired})
	r := m.Score(ev, rice)
	if len(r.Hints) != 2 {
		t.Fatalf("hints %+v, want one per plot not fully verified", r.Hints)
	}
	for _, h := range r.Hints {
		applied := ev
		applied.Plots = append([]scorecard.Plot(nil), ev.Plots...)
		for i, p := range applied.Plots {
			if p.ID == h.PlotID {
				switch h.Action {
				case "second_agent_visit":
					applied.Plots[i].Level = scorecard.Corroborated
				case "gps_walk":
					applied.Plots[i].Level = scorecard.GPSWalk
				}
			}
		}
		got := m.Score(applied, rice)
		if got.Limit != h.Limit || got.Score != h.Score || h.Limit <= r.Limit {
			t.Errorf("hint %s on %s announced limit %d score %d; applied: %d, %d; today %d", h.Action, h.PlotID, h.Limit, h.Score, got.Limit, got.Score, r.Limit)
		}
		if !strings.Contains(h.Message, fmt.Sprint(h.Limit)) {
			t.Errorf("hint message %q does not state the limit", h.Message)
		}
	}
	if r.Hints[0].Limit < r.Hints[1].Limit {
		t.Errorf("hints not ranked by limit: %+v", r.Hints)
	}
}

// TestPD: the scaling's anchor and doubling.
func TestPD(t *testing.T) {
	m := scorecard.V1()
	for _, tc := range []struct {
		score int
		pd    float64
	}{{600, 0.05}, {640, 1 / (1 + 38.0)}, {560, 1 / (1 + 9.5)}} {
		ev := farmer()
		r := m.Score(ev, rice)
		// The PD of a score is a function of the score alone.
		odds := 19 * math.Pow(2, float64(r.Score-600)/40)
		if math.Abs(r.PD-1/(1+odds)) > 1e-4 {
			t.Errorf("score %d: pd %v, want %v", r.Score, r.PD, 1/(1+odds))
		}
		got := 1 / (1 + 19*math.Pow(2, float64(tc.score-600)/40))
		if math.Abs(got-tc.pd) > 1e-9 {
			t.Errorf("scaling at %d gives %v, want %v", tc.score, got, tc.pd)
		}
	}
}

// TestDeterministic: the same evidence gives byte-identical results.
func TestDeterministic(t *testing.T) {
	m := scorecard.V1()
	ev := farmer()
	ev.Plots = append(ev.Plots, scorecard.Plot{ID: "pc", Ref: ref("r-pc", 50), AreaHa: 2, DeclaredHa: 2, Tenure: "owned", Level: scorecard.GPSWalk})
	ev.Harvests = append(ev.Harvests,
		scorecard.Harvest{Ref: ref("r-c1", 51), PlotID: "pc", Crop: "coffee", Kg: 500, On: days(100)},
		scorecard.Harvest{Ref: ref("r-c2", 52), PlotID: "pc", Crop: "coffee", Kg: 600, On: days(30)})
	a, _ := json.Marshal(m.Score(ev, rice))
	for range 20 {
		b, _ := json.Marshal(m.Score(ev, rice))
		if !bytes.Equal(a, b) {
			t.Fatalf("two scores of the same evidence differ:\n%s\n%s", a, b)
		}
	}
}

func mustRead(t *testing.T) []byte {
	t.Helper()
	data, err := scorecardFile()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("version: tani-smallholder-v1")) {
		t.Fatal("v1.yaml not read")
	}
	return data
}
