package attest

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

var (
	farmerID = "0b7c4a52-8d7e-4f55-9a52-5d2c5e0e7d11"
	plotUUID = "6f9d7f4e-2a4b-4c8e-8f8e-1b2c3d4e5f60"
	agentID  = "4a1e8e5e-1c2d-4b3a-9f8e-7d6c5b4a3f21"
	deviceID = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
)

func f64(v float64) *float64 { return &v }
func iptr(v int) *int        { return &v }

// riceT is the v1 rice row as seeded.
func riceT() Threshold {
	return Threshold{Version: 1, Crop: "rice", Region: "*", YieldMinTHa: f64(1), YieldMaxTHa: f64(10), YieldBasis: "season",
		SeasonMinDays: iptr(85), SeasonMaxDays: iptr(160), PlantingMonths: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		PlotMinHa: 0.005, PlotMaxHa: 25, AreaTolerance: 0.25, PlotGPSAccuracyMaxM: 10, CaptureAccuracyMaxM: 50,
		CaptureDistanceMaxM: 200, OverlapTolerance: 0.05, AreaValidSeasons: 2}
}

// signedCase makes a real signed record of typ with payload and the
// evidence of a record every rule passes; tests then break one thing.
func signedCase(t *testing.T, typ string, payload map[string]any) *Case {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(nil)
	raw, _ := json.Marshal(payload)
	lat, lon := -7.2505, 110.4005
	env := record.Envelope{ID: uuid.NewString(), Type: typ, CapturedAt: time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), DeviceID: deviceID,
		Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: 5}, Payload: raw}
	_, signed, err := record.Sign(key, env)
	if err != nil {
		t.Fatal(err)
	}
	canonical, err := record.Canonical(signed)
	if err != nil {
		t.Fatal(err)
	}
	rec, problems := record.Check(validate.New(), canonical, time.Now())
	e, p := rec.Env, rec.Payload
	if len(problems) > 0 {
		t.Fatalf("fixture does not check: %v", problems)
	}
	return &Case{Env: e, Payload: p, Canonical: canonical, AgentID: agentID, DeviceID: deviceID, ReceivedAt: time.Now(), T: riceT(),
		Ev: Evidence{
			Device: &DeviceKey{AgentID: agentID, Region: "Central Java", PublicKey: pub},
			Farmer: &FarmerHome{Region: "Central Java", AgentID: agentID},
			Plot:   &PlotFacts{FarmerID: farmerID, AreaHa: 1.2, DeclaredHa: 1.2, Valid: true, DistanceM: 0},
			Cycles: []Cycle{{Crop: "rice", PlantedOn: day(daysAgo(100)), ExpectedHarvestOn: day(daysAgo(-10))}},
		}}
}

func daysAgo(n int) string { return time.Now().AddDate(0, 0, -n).Format(time.DateOnly) }

func payloads() map[string]map[string]any {
	square := map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{{110.4, -7.25}, {110.401, -7.25}, {110.401, -7.251}, {110.4, -7.251}, {110.4, -7.25}}}}
	return map[string]map[string]any{
		"farmer.registered": {"farmer_id": farmerID, "name": "Siti", "national_id": "3374000011112222", "phone": "+6281234567890",
			"village": "Sukamaju", "gender": "female", "birth_year": 1980},
		"plot.mapped": {"farmer_id": farmerID, "plot_id": plotUUID, "boundary": square, "declared_area": map[string]any{"value": 1.2, "unit": "ha"},
			"tenure": "owned", "gps_accuracy_m": 3.5, "mock_location": false},
		"crop.planted": {"farmer_id": farmerID, "plot_id": plotUUID, "crop": "rice", "planted_on": daysAgo(60), "expected_harvest_on": daysAgo(-50)},
		"harvest.recorded": {"farmer_id": farmerID, "plot_id": plotUUID, "crop": "rice", "quantity": map[string]any{"value": 6, "unit": "t"},
			"quality_grade": "A", "harvested_on": daysAgo(2)},
		"sale.recorded": {"farmer_id": farmerID, "buyer": "KUD", "crop": "rice", "quantity": map[string]any{"value": 4, "unit": "t"},
			"price": map[string]any{"amount": 1000, "currency": "IDR"}, "sold_on": daysAgo(1)},
	}
}

func ruleNamed(t *testing.T, name string) Rule {
	for _, r := range Rules() {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no rule %s", name)
	return Rule{}
}

func TestRules(t *testing.T) {
	harvestFlow := []Flow{{RecordID: "h1", PlotID: plotUUID, Crop: "rice", Kg: 5000, On: day(daysAgo(3))}}
	tests := []struct {
		rule, typ, name string
		edit            func(c *Case, p map[string]any) // p edits the payload before signing
		want            Verdict
		explains        string
	}{
		{"device.signature", "farmer.registered", "Pass", nil, Pass, "signed by device"},
		{"device.signature", "farmer.registered", "Reject_TamperedBytes", func(c *Case, _ map[string]any) {
			c.Canonical = []byte(strings.Replace(string(c.Canonical), "Siti", "Sita", 1))
		}, Reject, "signature"},
		{"device.signature", "farmer.registered", "Reject_OtherAgentsDevice", func(c *Case, _ map[string]any) { c.Ev.Device.AgentID = uuid.NewString() }, Reject, "belongs to agent"},
		{"device.signature", "farmer.registered", "Reject_Unenrolled", func(c *Case, _ map[string]any) { c.Ev.Device = nil }, Reject, "not enrolled"},
		{"device.signature", "farmer.registered", "Reject_Revoked", func(c *Case, _ map[string]any) {
			at := c.ReceivedAt.Add(-time.Minute)
			c.Ev.Device.RevokedAt = &at
		}, Reject, "revoked"},
		{"agent.region", "harvest.recorded", "Pass", nil, Pass, "both in region"},
		{"agent.region", "harvest.recorded", "Flag_OtherRegion", func(c *Case, _ map[string]any) { c.Ev.Farmer.Region = "West Java" }, Flag, `farmer of region "West Java"`},
		{"agent.region", "harvest.recorded", "Flag_UnknownFarmer", func(c *Case, _ map[string]any) { c.Ev.Farmer = nil }, Flag, "region is unknown"},
		{"gps.capture", "sale.recorded", "Pass", nil, Pass, "real GPS fix"},
		{"gps.capture", "sale.recorded", "Flag_Mock", func(c *Case, _ map[string]any) { c.Env.Location.Mock = true }, Flag, "mock location"},
		{"gps.capture", "sale.recorded", "Flag_Inaccurate", func(c *Case, _ map[string]any) { c.Env.Location.AccuracyM = 80 }, Flag, "worse than 50 m"},
		{"plot.gps_walk", "plot.mapped", "Pass", nil, Pass, "accuracy 3.5 m"},
		{"plot.gps_walk", "plot.mapped", "Flag_Inaccurate", func(_ *Case, p map[string]any) { p["gps_accuracy_m"] = 25.0 }, Flag, "worse than 10.0 m"},
		{"plot.gps_walk", "plot.mapped", "Flag_Mock", func(_ *Case, p map[string]any) { p["mock_location"] = true }, Flag, "mock location"},
		{"plot.geometry", "plot.mapped", "Pass", nil, Pass, "valid polygon"},
		{"plot.geometry", "plot.mapped", "Reject_Invalid", func(c *Case, _ map[string]any) {
			c.Ev.Plot.Valid, c.Ev.Plot.InvalidReason = false, "Self-intersection[110.4 -7.25]"
		}, Reject, "Self-intersection"},
		{"plot.geometry", "plot.mapped", "Flag_TooLarge", func(c *Case, _ map[string]any) { c.Ev.Plot.AreaHa = 40 }, Flag, "outside the plausible"},
		{"plot.geometry", "plot.mapped", "Flag_TooSmall", func(c *Case, _ map[string]any) { c.Ev.Plot.AreaHa = 0.001 }, Flag, "outside the plausible"},
		{"plot.area_tolerance", "plot.mapped", "Pass", func(c *Case, _ map[string]any) { c.Ev.Plot.DeclaredHa = 1.4 }, Pass, "within 25%"},
		{"plot.area_tolerance", "plot.mapped", "Flag_LaoPDRError", func(c *Case, _ map[string]any) { c.Ev.Plot.DeclaredHa = 1.2 * 3.85 }, Flag, "285% off"},
		{"plot.overlap", "plot.mapped", "Pass_TouchingOnly", func(c *Case, _ map[string]any) {
			c.Ev.Overlaps = []Overlap{{PlotID: "p2", FarmerID: "f2", Ha: 0.01, SmallerHa: 1}}
		}, Pass, "no overlap above 5%"},
		{"plot.overlap", "plot.mapped", "Flag_Overlap", func(c *Case, _ map[string]any) {
			c.Ev.Overlaps = []Overlap{{PlotID: "p2", FarmerID: "f2", Ha: 0.3, SmallerHa: 1}}
		}, Flag, "overlaps plot p2 of farmer f2 by 0.300 ha (30%"},
		{"plot.reference", "harvest.recorded", "Pass", nil, Pass, "mapped for this farmer"},
		{"plot.reference", "harvest.recorded", "Flag_Unmapped", func(c *Case, _ map[string]any) { c.Ev.Plot = nil }, Flag, "no mapping"},
		{"plot.reference", "harvest.recorded", "Reject_OtherFarmersPlot", func(c *Case, _ map[string]any) { c.Ev.Plot.FarmerID = uuid.NewString() }, Reject, "belongs to farmer"},
		{"capture.near_plot", "crop.planted", "Pass", func(c *Case, _ map[string]any) { c.Ev.Plot.DistanceM = 150 }, Pass, "150 m"},
		{"capture.near_plot", "crop.planted", "Flag_Far", func(c *Case, _ map[string]any) { c.Ev.Plot.DistanceM = 5200 }, Flag, "5200 m from the plot"},
		{"farmer.duplicate", "farmer.registered", "Pass", nil, Pass, "no other farmer"},
		{"farmer.duplicate", "farmer.registered", "Flag_SameNationalID", func(c *Case, _ map[string]any) {
			c.Ev.Duplicates = []Duplicate{{FarmerID: "f2", AgentID: "a2", Via: "national_id"}}
		}, Flag, "farmer f2 (agent a2) by national_id"},
		{"crop.calendar", "crop.planted", "Pass", nil, Pass, "110 days to harvest"},
		{"crop.calendar", "crop.planted", "Flag_SeasonTooShort", func(_ *Case, p map[string]any) { p["expected_harvest_on"] = daysAgo(30) }, Flag, "30 days to harvest is outside 85–160"},
		{"crop.calendar", "crop.planted", "Flag_OutOfSeasonMonth", func(c *Case, _ map[string]any) { c.T.PlantingMonths = []int{} }, Flag, "is not planted in"},
		{"crop.calendar", "crop.planted", "Flag_NoCalendarForCrop", func(c *Case, _ map[string]any) { c.T.SeasonMinDays, c.T.SeasonMaxDays = nil, nil }, Flag, "no crop calendar"},
		{"harvest.after_planting", "harvest.recorded", "Pass", nil, Pass, "harvested 98 days after"},
		{"harvest.after_planting", "harvest.recorded", "Flag_BeforePlanting", func(c *Case, _ map[string]any) {
			c.Ev.Cycles[0].PlantedOn = day(daysAgo(1))
		}, Flag, "before rice was planted"},
		{"harvest.after_planting", "harvest.recorded", "Flag_NoPlanting", func(c *Case, _ map[string]any) { c.Ev.Cycles = nil }, Flag, "no planting of rice"},
		{"harvest.yield", "harvest.recorded", "Pass", nil, Pass, "5.00 t/ha of rice is within 1.0–10.0"},
		{"harvest.yield", "harvest.recorded", "Flag_AboveBound", func(_ *Case, p map[string]any) {
			p["quantity"] = map[string]any{"value": 18, "unit": "t"}
		}, Flag, "15.00 t/ha of rice is outside"},
		{"harvest.yield", "harvest.recorded", "Flag_BelowBound", func(_ *Case, p map[string]any) {
			p["quantity"] = map[string]any{"value": 500, "unit": "kg"}
		}, Flag, "0.42 t/ha"},
		{"harvest.yield", "harvest.recorded", "Flag_PerennialYearOverBound", func(c *Case, p map[string]any) {
			p["crop"] = "coffee"
			p["quantity"] = map[string]any{"value": 1500, "unit": "kg"}
			c.T.YieldMinTHa, c.T.YieldMaxTHa, c.T.YieldBasis = nil, f64(3), "year"
			c.Ev.Harvests = []Flow{{RecordID: "h0", PlotID: plotUUID, Crop: "coffee", Kg: 2500, On: day(daysAgo(100))}}
		}, Flag, "3.33 t/ha of coffee over 365 days exceeds 3.00"},
		{"harvest.yield", "harvest.recorded", "Pass_PerennialOnePicking", func(c *Case, p map[string]any) {
			p["crop"] = "coffee"
			p["quantity"] = map[string]any{"value": 60, "unit": "kg"}
			c.T.YieldMinTHa, c.T.YieldMaxTHa, c.T.YieldBasis = nil, f64(3), "year"
		}, Pass, "over 365 days"},
		{"harvest.yield", "harvest.recorded", "Flag_NoBoundsForCrop", func(c *Case, _ map[string]any) { c.T.YieldMaxTHa = nil }, Flag, "no yield bounds"},
		{"sale.within_harvest", "sale.recorded", "Pass", func(c *Case, _ map[string]any) { c.Ev.Harvests = harvestFlow }, Pass, "4000 kg of rice sold of 5000 kg"},
		{"sale.within_harvest", "sale.recorded", "Flag_SoldMoreThanHarvested", func(c *Case, _ map[string]any) {
			c.Ev.Harvests = harvestFlow
			c.Ev.Sales = []Flow{{RecordID: "s0", Crop: "rice", Kg: 2000, On: day(daysAgo(2))}}
		}, Flag, "6000 kg of rice sold"},
		{"sale.within_harvest", "sale.recorded", "Flag_HarvestAfterSale", func(c *Case, _ map[string]any) {
			c.Ev.Harvests = []Flow{{RecordID: "h1", Crop: "rice", Kg: 5000, On: day(daysAgo(0))}}
		}, Flag, "only 0 kg harvested"},
	}
	for _, tt := range tests {
		t.Run(tt.rule+"/"+tt.name, func(t *testing.T) {
			p := payloads()[tt.typ]
			var c *Case
			if tt.edit != nil {
				// Payload edits must be signed, so apply them before
				// signing, then the evidence edits after.
				scratch := &Case{Env: record.Envelope{Location: &record.Location{}}, T: riceT(),
					Ev: Evidence{Device: &DeviceKey{}, Farmer: &FarmerHome{}, Plot: &PlotFacts{}, Cycles: []Cycle{{}}}}
				tt.edit(scratch, p)
				c = signedCase(t, tt.typ, p)
				tt.edit(c, map[string]any{})
			} else {
				c = signedCase(t, tt.typ, p)
			}
			res := Evaluate([]Rule{ruleNamed(t, tt.rule)}, c)
			if len(res) != 1 {
				t.Fatalf("got %d results, want 1 (rule does not apply to %s?)", len(res), tt.typ)
			}
			if res[0].Verdict != tt.want || !strings.Contains(res[0].Explanation, tt.explains) {
				t.Errorf("got %s %q, want %s containing %q", res[0].Verdict, res[0].Explanation, tt.want, tt.explains)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	r := func(v Verdict) Result {
		return Result{Rule: "r" + string(v), Version: 1, Verdict: v, Explanation: string(v) + "!"}
	}
	tests := []struct {
		name    string
		results []Result
		want    string
	}{
		{"Verified_AllPass", []Result{r(Pass), r(Pass)}, StatusVerified},
		{"Flagged_OneFlag", []Result{r(Pass), r(Flag)}, StatusFlagged},
		{"Rejected_RejectBeatsFlag", []Result{r(Flag), r(Reject)}, StatusRejected},
		{"Pending_ErrorBeatsReject", []Result{r(Reject), r(Error), r(Pass)}, StatusPending},
		{"Pending_UnknownVerdict", []Result{r(Pass), {Rule: "odd", Verdict: "maybe"}}, StatusPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := Outcome(tt.results)
			if got != tt.want {
				t.Errorf("got %s (%s), want %s", got, reason, tt.want)
			}
			if got != StatusVerified && reason == "" {
				t.Error("got no reason for a record that did not pass")
			}
		})
	}
}

func TestEvaluate_PanickingRuleIsAnError(t *testing.T) {
	c := signedCase(t, "sale.recorded", payloads()["sale.recorded"])
	boom := Rule{Name: "boom", Version: 3, Check: func(*Case) (Verdict, string, error) { panic("nil map") }}
	res := Evaluate([]Rule{boom}, c)
	if len(res) != 1 || res[0].Verdict != Error || !strings.Contains(res[0].Explanation, "boom v3 panicked") {
		t.Fatalf("got %+v, want one error result naming the rule", res)
	}
	if st, _ := Outcome(res); st != StatusPending {
		t.Errorf("got %s, want pending", st)
	}
}
