package attest

import (
	"crypto/ed25519"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tani-platform/tani/internal/record"
)

// Verdict is what one rule concluded about one record.
type Verdict string

// Verdicts. A rule that cannot reach one returns an error instead, and the
// record stays pending: an erroring rule never lets a record through.
const (
	Pass   Verdict = "pass"
	Flag   Verdict = "flag"   // plausible fraud or error: a supervisor decides
	Reject Verdict = "reject" // cannot be true or cannot be attributed
	Error  Verdict = "error"  // the rule could not be evaluated
)

// Result is one rule's verdict on one record, with the explanation an agent
// or supervisor reads and the threshold version it was judged against.
type Result struct {
	Rule        string  `json:"rule"`
	Version     int     `json:"version"`
	Verdict     Verdict `json:"verdict"`
	Explanation string  `json:"explanation"`
	Attribute   string  `json:"attribute,omitempty"`
	Thresholds  int     `json:"thresholds_version,omitempty"`
}

// Rule is a named, versioned check. Check sees one record with the
// evidence gathered for it and returns a verdict and why. Bump Version
// whenever the logic changes, so stored results say which logic decided.
type Rule struct {
	Name    string
	Version int
	// Types the rule applies to; nil means every record type.
	Types []record.Type
	// Attribute is what the rule vouches for (see provenance).
	Attribute string
	// UsesThresholds marks rules whose result depends on the thresholds
	// table; their results record its version.
	UsesThresholds bool
	// Check must be safe for concurrent use and must not change c:
	// Process evaluates the records of a batch on every core.
	Check func(c *Case) (Verdict, string, error)
}

// Case is one record under evaluation: the verified envelope, its typed
// payload, who sent it and the evidence loaded from Postgres.
type Case struct {
	Env        record.Envelope
	Payload    record.Payload
	Canonical  []byte // RFC 8785, as signed (see Input.Canonical)
	AgentID    string // from ingest's Tani-Agent-Id header
	DeviceID   string
	ReceivedAt time.Time // when the platform received it (stream time)
	T          Threshold
	Ev         Evidence
	// signature is the device signature's check, when Process did it for
	// the whole batch at once.
	signature signatureCheck
}

// signatureCheck is the outcome of checking one record's device
// signature: done says it was checked, err what was wrong.
type signatureCheck struct {
	done bool
	err  error
}

// Evidence is what the rules compare a record with. Loaded in bulk for a
// batch by loadEvidence; a nil pointer means "not found".
type Evidence struct {
	Device     *DeviceKey
	Farmer     *FarmerHome
	Duplicates []Duplicate
	Plot       *PlotFacts
	Overlaps   []Overlap
	Cycles     []Cycle
	// Harvests on the record's plot (for per-year yields) or of the
	// record's farmer (for sales); Sales of the farmer.
	Harvests []Flow
	Sales    []Flow
	// Marketplace records (market.go): the distributor's products an
	// order names; the order a delivery is for, the use of its one-time
	// code, whether the capturing agent serves the farmer, and how far
	// the capture was from the farmer's nearest plot.
	Catalog      map[string]CatalogItem
	Order        *OrderBook
	OTP          *OTPUse
	Assigned     bool
	NearestPlotM *float64
}

// DeviceKey is a device's enrolment as mobile-api publishes it.
type DeviceKey struct {
	AgentID   string
	Region    string
	PublicKey []byte
	RevokedAt *time.Time
}

// FarmerHome is where a farmer belongs: the region of the agent who
// registered them.
type FarmerHome struct {
	Region  string
	AgentID string
}

// Duplicate is another farmer sharing an identity attribute.
type Duplicate struct {
	FarmerID string
	AgentID  string
	Via      string // national_id or phone
}

// PlotFacts is what PostGIS measured of a plot. For plot.mapped it is the
// record's own boundary; for other records the plot they name.
type PlotFacts struct {
	FarmerID      string
	AreaHa        float64
	DeclaredHa    float64
	Valid         bool
	InvalidReason string
	// DistanceM is from the device's capture position to the boundary (0
	// inside).
	DistanceM float64
}

// Overlap is another farmer's plot intersecting this one.
type Overlap struct {
	PlotID    string
	FarmerID  string
	Ha        float64
	SmallerHa float64
}

// Cycle is a crop planted on a plot.
type Cycle struct {
	Crop              string
	PlantedOn         time.Time
	ExpectedHarvestOn time.Time
}

// Flow is a harvest or sale quantity on a day.
type Flow struct {
	RecordID string
	PlotID   string
	Crop     string
	Kg       float64
	On       time.Time
}

// Rules returns the rules in evaluation order. Callers may pass another set
// (tests do, to prove an erroring rule holds a record back).
func Rules() []Rule {
	plotTypes := []record.Type{record.TypePlotMapped, record.TypeCropPlanted, record.TypeInputApplied, record.TypeHarvestRecorded}
	return []Rule{
		{Name: "device.signature", Version: 1, Attribute: "origin", Check: checkDevice},
		{Name: "agent.region", Version: 1, Attribute: "agent", Check: checkRegion},
		{Name: "gps.capture", Version: 1, Attribute: "location", UsesThresholds: true, Check: checkCaptureGPS},
		{Name: "plot.gps_walk", Version: 1, Types: []record.Type{record.TypePlotMapped}, Attribute: "boundary", UsesThresholds: true, Check: checkGPSWalk},
		{Name: "plot.geometry", Version: 1, Types: []record.Type{record.TypePlotMapped}, Attribute: "boundary", UsesThresholds: true, Check: checkGeometry},
		{Name: "plot.area_tolerance", Version: 1, Types: []record.Type{record.TypePlotMapped}, Attribute: "area_ha", UsesThresholds: true, Check: checkAreaTolerance},
		{Name: "plot.overlap", Version: 1, Types: []record.Type{record.TypePlotMapped}, Attribute: "boundary", UsesThresholds: true, Check: checkOverlap},
		{Name: "plot.reference", Version: 1, Types: plotTypes[1:], Attribute: "plot_id", Check: checkPlotReference},
		{Name: "capture.near_plot", Version: 1, Types: plotTypes, Attribute: "location", UsesThresholds: true, Check: checkNearPlot},
		{Name: "farmer.duplicate", Version: 1, Types: []record.Type{record.TypeFarmerRegistered}, Attribute: "identity", Check: checkDuplicate},
		{Name: "crop.calendar", Version: 1, Types: []record.Type{record.TypeCropPlanted}, Attribute: "planted_on", UsesThresholds: true, Check: checkCalendar},
		{Name: "harvest.after_planting", Version: 1, Types: []record.Type{record.TypeHarvestRecorded}, Attribute: "harvested_on", Check: checkAfterPlanting},
		{Name: "harvest.yield", Version: 1, Types: []record.Type{record.TypeHarvestRecorded}, Attribute: "quantity", UsesThresholds: true, Check: checkYield},
		{Name: "sale.within_harvest", Version: 1, Types: []record.Type{record.TypeSaleRecorded}, Attribute: "quantity", Check: checkSaleWithinHarvest},
		{Name: "order.catalog", Version: 1, Types: []record.Type{record.TypeOrderPlaced}, Attribute: "items", Check: checkOrderCatalog},
		{Name: "delivery.order", Version: 1, Types: []record.Type{record.TypeDeliveryConfirmed}, Attribute: "items", Check: checkDeliveryOrder},
		{Name: "delivery.otp", Version: 1, Types: []record.Type{record.TypeDeliveryConfirmed}, Attribute: "farmer_confirmation", Check: checkDeliveryOTP},
		{Name: "delivery.agent", Version: 1, Types: []record.Type{record.TypeDeliveryConfirmed}, Attribute: "agent", Check: checkDeliveryAgent},
		{Name: "delivery.near_farm", Version: 1, Types: []record.Type{record.TypeDeliveryConfirmed}, Attribute: "location", UsesThresholds: true, Check: checkDeliveryNearFarm},
	}
}

// Evaluate runs every applicable rule on c. It never stops early: every
// result is kept so the explanation is complete. A rule that panics is an
// error result, like one that returns an error.
func Evaluate(rules []Rule, c *Case) []Result {
	out := make([]Result, 0, len(rules))
	for _, r := range rules {
		if r.Types != nil && !slices.Contains(r.Types, c.Env.Type) {
			continue
		}
		res := Result{Rule: r.Name, Version: r.Version, Attribute: r.Attribute}
		if r.UsesThresholds {
			res.Thresholds = c.T.Version
		}
		v, why, err := safeCheck(r, c)
		if err != nil {
			v, why = Error, err.Error()
		}
		res.Verdict, res.Explanation = v, why
		out = append(out, res)
	}
	return out
}

func safeCheck(r Rule, c *Case) (v Verdict, why string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rule %s v%d panicked: %v", r.Name, r.Version, p)
		}
	}()
	return r.Check(c)
}

// Outcome folds rule results into a record status: any error keeps the
// record pending, any reject rejects it, any flag sends it to review, and
// only a record every rule passed is verified. The reason names every rule
// that did not pass.
func Outcome(results []Result) (status, reason string) {
	var errs, rejects, flags []string
	for _, r := range results {
		line := fmt.Sprintf("%s v%d: %s", r.Rule, r.Version, r.Explanation)
		switch r.Verdict {
		case Error:
			errs = append(errs, line)
		case Reject:
			rejects = append(rejects, line)
		case Flag:
			flags = append(flags, line)
		case Pass:
		default:
			errs = append(errs, fmt.Sprintf("%s v%d: unknown verdict %q", r.Rule, r.Version, r.Verdict))
		}
	}
	switch {
	case len(errs) > 0:
		return StatusPending, strings.Join(errs, "; ")
	case len(rejects) > 0:
		return StatusRejected, strings.Join(append(rejects, flags...), "; ")
	case len(flags) > 0:
		return StatusFlagged, strings.Join(flags, "; ")
	}
	return StatusVerified, ""
}

// Record statuses, as attest.records stores them and attest.record_status
// shows them.
const (
	StatusPending  = "pending"
	StatusVerified = "verified"
	StatusFlagged  = "flagged"
	StatusRejected = "rejected"
	// StatusJournaling is shown, never stored: attest.record_status says it
	// of a verified record whose journal entry is not committed yet, so
	// that verified always means a receipt can be had.
	StatusJournaling = "journaling"
)

// checkDevice re-establishes what ingest established, because a bank will
// rely on it: the device is enrolled, bound to the agent ingest named, was
// not revoked when the record arrived, and its key signs these bytes.
func checkDevice(c *Case) (Verdict, string, error) {
	d := c.Ev.Device
	switch {
	case d == nil:
		return Reject, fmt.Sprintf("device %s is not enrolled", c.DeviceID), nil
	case d.AgentID != c.AgentID:
		return Reject, fmt.Sprintf("device %s belongs to agent %s, not to %s", c.DeviceID, d.AgentID, c.AgentID), nil
	case d.RevokedAt != nil && d.RevokedAt.Before(c.ReceivedAt):
		return Reject, fmt.Sprintf("device %s was revoked at %s, before the record arrived", c.DeviceID, d.RevokedAt.UTC().Format(time.RFC3339)), nil
	}
	// Process checks the signatures of a batch together; a Case made
	// otherwise is checked here. Canonical is the RFC 8785 form ingest
	// published, so the signing input is derived from it without
	// canonicalizing again. Bytes that are not canonical derive a signing
	// input the device never signed and fail here: the shortcut can only
	// reject, never admit.
	err := c.signature.err
	if !c.signature.done {
		err = record.VerifyCanonical(ed25519.PublicKey(d.PublicKey), c.Canonical, c.Env.Signature)
	}
	if err != nil {
		return Reject, fmt.Sprintf("signature: %v", err), nil
	}
	return Pass, fmt.Sprintf("signed by device %s of agent %s", c.DeviceID, c.AgentID), nil
}

// checkRegion: an agent may capture only for farmers of their own region
// (the registering agent's region). The registration itself defines it.
func checkRegion(c *Case) (Verdict, string, error) {
	if c.Ev.Device == nil {
		return Flag, "the capturing agent's region is unknown", nil
	}
	region := c.Ev.Device.Region
	if c.Env.Type == record.TypeFarmerRegistered && (c.Ev.Farmer == nil || c.Ev.Farmer.AgentID == c.AgentID) {
		return Pass, fmt.Sprintf("registered in region %q by its agent", region), nil
	}
	f := c.Ev.Farmer
	if f == nil {
		return Flag, fmt.Sprintf("farmer %s has no registration attest has seen, so their region is unknown", c.Payload.Farmer()), nil
	}
	if f.Region != region {
		return Flag, fmt.Sprintf("agent of region %q captured for a farmer of region %q", region, f.Region), nil
	}
	return Pass, fmt.Sprintf("agent and farmer are both in region %q", region), nil
}

func checkCaptureGPS(c *Case) (Verdict, string, error) {
	l := c.Env.Location
	var problems []string
	if l.Mock {
		problems = append(problems, "the device reported a mock location")
	}
	if l.AccuracyM > c.T.CaptureAccuracyMaxM {
		problems = append(problems, fmt.Sprintf("GPS accuracy %.0f m is worse than %.0f m", l.AccuracyM, c.T.CaptureAccuracyMaxM))
	}
	if len(problems) > 0 {
		return Flag, strings.Join(problems, "; "), nil
	}
	return Pass, fmt.Sprintf("real GPS fix, accuracy %.0f m (limit %.0f m)", l.AccuracyM, c.T.CaptureAccuracyMaxM), nil
}

func checkGPSWalk(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.PlotMapped)
	var problems []string
	if p.MockLocation {
		problems = append(problems, "the boundary was walked with a mock location")
	}
	if p.GPSAccuracyM > c.T.PlotGPSAccuracyMaxM {
		problems = append(problems, fmt.Sprintf("walk accuracy %.1f m is worse than %.1f m", p.GPSAccuracyM, c.T.PlotGPSAccuracyMaxM))
	}
	if len(problems) > 0 {
		return Flag, strings.Join(problems, "; "), nil
	}
	return Pass, fmt.Sprintf("GPS walk accuracy %.1f m (limit %.1f m)", p.GPSAccuracyM, c.T.PlotGPSAccuracyMaxM), nil
}

func checkGeometry(c *Case) (Verdict, string, error) {
	pf := c.Ev.Plot
	if pf == nil {
		return "", "", fmt.Errorf("no PostGIS measurement for plot of record %s", c.Env.ID)
	}
	if !pf.Valid {
		return Reject, "the boundary is not a valid polygon: " + pf.InvalidReason, nil
	}
	if pf.AreaHa < c.T.PlotMinHa || pf.AreaHa > c.T.PlotMaxHa {
		return Flag, fmt.Sprintf("measured area %.3f ha is outside the plausible %.3f–%.0f ha for a smallholder plot", pf.AreaHa, c.T.PlotMinHa, c.T.PlotMaxHa), nil
	}
	return Pass, fmt.Sprintf("valid polygon of %.3f ha", pf.AreaHa), nil
}

func checkAreaTolerance(c *Case) (Verdict, string, error) {
	pf := c.Ev.Plot
	if pf == nil {
		return "", "", fmt.Errorf("no PostGIS measurement for plot of record %s", c.Env.ID)
	}
	if pf.AreaHa <= 0 {
		return Flag, "measured area is zero", nil
	}
	off := math.Abs(pf.DeclaredHa-pf.AreaHa) / pf.AreaHa
	if off > c.T.AreaTolerance {
		return Flag, fmt.Sprintf("declared %.3f ha is %.0f%% off the GPS-measured %.3f ha (tolerance %.0f%%)", pf.DeclaredHa, off*100, pf.AreaHa, c.T.AreaTolerance*100), nil
	}
	return Pass, fmt.Sprintf("declared %.3f ha is within %.0f%% of the GPS-measured %.3f ha", pf.DeclaredHa, c.T.AreaTolerance*100, pf.AreaHa), nil
}

func checkOverlap(c *Case) (Verdict, string, error) {
	var hits []string
	for _, o := range c.Ev.Overlaps {
		if o.SmallerHa <= 0 {
			continue
		}
		share := o.Ha / o.SmallerHa
		if share > c.T.OverlapTolerance {
			hits = append(hits, fmt.Sprintf("plot %s of farmer %s by %.3f ha (%.0f%% of the smaller plot)", o.PlotID, o.FarmerID, o.Ha, share*100))
		}
	}
	if len(hits) > 0 {
		return Flag, "overlaps " + strings.Join(hits, ", "), nil
	}
	return Pass, fmt.Sprintf("no overlap above %.0f%% with another farmer's plot", c.T.OverlapTolerance*100), nil
}

func checkPlotReference(c *Case) (Verdict, string, error) {
	farmer, plot := c.Payload.Farmer(), c.Payload.Plot()
	pf := c.Ev.Plot
	switch {
	case pf == nil:
		return Flag, fmt.Sprintf("plot %s has no mapping attest has seen", plot), nil
	case pf.FarmerID != farmer:
		return Reject, fmt.Sprintf("plot %s belongs to farmer %s, not %s", plot, pf.FarmerID, farmer), nil
	}
	return Pass, fmt.Sprintf("plot %s is mapped for this farmer", plot), nil
}

func checkNearPlot(c *Case) (Verdict, string, error) {
	pf := c.Ev.Plot
	if pf == nil {
		return Flag, fmt.Sprintf("plot %s is unknown, so the capture position cannot be compared", c.Payload.Plot()), nil
	}
	if pf.DistanceM > c.T.CaptureDistanceMaxM {
		return Flag, fmt.Sprintf("captured %.0f m from the plot (limit %.0f m)", pf.DistanceM, c.T.CaptureDistanceMaxM), nil
	}
	return Pass, fmt.Sprintf("captured %.0f m from the plot (limit %.0f m)", pf.DistanceM, c.T.CaptureDistanceMaxM), nil
}

func checkDuplicate(c *Case) (Verdict, string, error) {
	if len(c.Ev.Duplicates) == 0 {
		return Pass, "no other farmer shares this national ID or phone", nil
	}
	var hits []string
	for _, d := range c.Ev.Duplicates {
		hits = append(hits, fmt.Sprintf("farmer %s (agent %s) by %s", d.FarmerID, d.AgentID, d.Via))
	}
	return Flag, "same identity as " + strings.Join(hits, ", "), nil
}

func checkCalendar(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.CropPlanted)
	planted, expected := day(p.PlantedOn), day(p.ExpectedHarvestOn)
	if c.T.SeasonMinDays == nil || c.T.SeasonMaxDays == nil {
		return Flag, fmt.Sprintf("no crop calendar for %s in thresholds v%d: needs review", p.CropCode, c.T.Version), nil
	}
	days := int(expected.Sub(planted).Hours() / 24)
	var problems []string
	if days < *c.T.SeasonMinDays || days > *c.T.SeasonMaxDays {
		problems = append(problems, fmt.Sprintf("%d days to harvest is outside %d–%d for %s", days, *c.T.SeasonMinDays, *c.T.SeasonMaxDays, p.CropCode))
	}
	if !slices.Contains(c.T.PlantingMonths, int(planted.Month())) {
		problems = append(problems, fmt.Sprintf("%s is not planted in %s in this region", p.CropCode, planted.Month()))
	}
	if len(problems) > 0 {
		return Flag, strings.Join(problems, "; "), nil
	}
	return Pass, fmt.Sprintf("%d days to harvest, planted in %s: plausible for %s", days, planted.Month(), p.CropCode), nil
}

// plantingBefore is the latest cycle of crop on the plot planted before d.
func plantingBefore(cycles []Cycle, crop string, d time.Time) *Cycle {
	var best *Cycle
	for i, cy := range cycles {
		if cy.Crop == crop && cy.PlantedOn.Before(d) && (best == nil || cy.PlantedOn.After(best.PlantedOn)) {
			best = &cycles[i]
		}
	}
	return best
}

func checkAfterPlanting(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.HarvestRecorded)
	harvested := day(p.HarvestedOn)
	if cy := plantingBefore(c.Ev.Cycles, p.CropCode, harvested); cy != nil {
		return Pass, fmt.Sprintf("harvested %d days after %s was planted on %s", int(harvested.Sub(cy.PlantedOn).Hours()/24), p.CropCode, cy.PlantedOn.Format(time.DateOnly)), nil
	}
	for _, cy := range c.Ev.Cycles {
		if cy.Crop == p.CropCode {
			return Flag, fmt.Sprintf("harvested on %s, before %s was planted on %s", p.HarvestedOn, p.CropCode, cy.PlantedOn.Format(time.DateOnly)), nil
		}
	}
	return Flag, fmt.Sprintf("no planting of %s on plot %s", p.CropCode, p.PlotID), nil
}

func checkYield(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.HarvestRecorded)
	kg, ok := p.Quantity.Kg()
	if !ok {
		return Reject, fmt.Sprintf("quantity unit %q is not a mass", p.Quantity.Unit), nil
	}
	if c.Ev.Plot == nil || c.Ev.Plot.AreaHa <= 0 {
		return Flag, fmt.Sprintf("plot %s has no measured area to compute a yield", p.PlotID), nil
	}
	if c.T.YieldMaxTHa == nil {
		return Flag, fmt.Sprintf("no yield bounds for %s in thresholds v%d: needs review", p.CropCode, c.T.Version), nil
	}
	area := c.Ev.Plot.AreaHa
	if c.T.YieldBasis == "year" {
		// Perennials are picked many times a year: judge the plot's
		// harvests over the 365 days up to this one (this one included),
		// against the upper bound only.
		harvested := day(p.HarvestedOn)
		total := kg
		for _, h := range c.Ev.Harvests {
			if h.RecordID != c.Env.ID && h.Crop == p.CropCode && !h.On.After(harvested) && h.On.After(harvested.AddDate(-1, 0, 0)) {
				total += h.Kg
			}
		}
		y := total / 1000 / area
		if y > *c.T.YieldMaxTHa {
			return Flag, fmt.Sprintf("%.2f t/ha of %s over 365 days exceeds %.2f t/ha/yr", y, p.CropCode, *c.T.YieldMaxTHa), nil
		}
		return Pass, fmt.Sprintf("%.2f t/ha of %s over 365 days (limit %.2f t/ha/yr)", y, p.CropCode, *c.T.YieldMaxTHa), nil
	}
	y := kg / 1000 / area
	lo := 0.0
	if c.T.YieldMinTHa != nil {
		lo = *c.T.YieldMinTHa
	}
	if y < lo || y > *c.T.YieldMaxTHa {
		return Flag, fmt.Sprintf("%.2f t/ha of %s is outside %.1f–%.1f t/ha", y, p.CropCode, lo, *c.T.YieldMaxTHa), nil
	}
	return Pass, fmt.Sprintf("%.2f t/ha of %s is within %.1f–%.1f t/ha", y, p.CropCode, lo, *c.T.YieldMaxTHa), nil
}

// checkSaleWithinHarvest: over the 365 days up to a sale, a farmer cannot
// have sold more of a crop than they harvested.
func checkSaleWithinHarvest(c *Case) (Verdict, string, error) {
	p := c.Payload.(*record.SaleRecorded)
	kg, ok := p.Quantity.Kg()
	if !ok {
		return Reject, fmt.Sprintf("quantity unit %q is not a mass", p.Quantity.Unit), nil
	}
	sold := day(p.SoldOn)
	inWindow := func(f Flow) bool {
		return f.Crop == p.CropCode && !f.On.After(sold) && f.On.After(sold.AddDate(-1, 0, 0))
	}
	var harvested, soldTotal float64
	for _, h := range c.Ev.Harvests {
		if inWindow(h) {
			harvested += h.Kg
		}
	}
	soldTotal = kg
	for _, s := range c.Ev.Sales {
		if s.RecordID != c.Env.ID && inWindow(s) {
			soldTotal += s.Kg
		}
	}
	if soldTotal > harvested {
		return Flag, fmt.Sprintf("%.0f kg of %s sold in the 365 days to %s, but only %.0f kg harvested", soldTotal, p.CropCode, p.SoldOn, harvested), nil
	}
	return Pass, fmt.Sprintf("%.0f kg of %s sold of %.0f kg harvested in the 365 days to %s", soldTotal, p.CropCode, harvested, p.SoldOn), nil
}

// day parses a validated YYYY-MM-DD.
func day(s string) time.Time {
	t, _ := time.Parse(time.DateOnly, s)
	return t
}
