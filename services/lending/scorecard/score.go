package scorecard

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Level is how a plot's area was established (see v1.yaml, confidence).
type Level string

// The verification levels, best first.
const (
	Corroborated Level = "corroborated"
	GPSWalk      Level = "gps_walk"
	Reviewed     Level = "reviewed"
	Expired      Level = "expired"
	Unverified   Level = "unverified"
)

// Ref names a record the score used: its id and journal leaf (nil for
// unverified records, which have none).
type Ref struct {
	RecordID  string `json:"record_id"`
	LeafIndex *int64 `json:"leaf_index"`
}

// Plot is a farmer's plot as attested: its current boundary record.
type Plot struct {
	ID         string
	Ref        Ref
	AreaHa     float64 // PostGIS-measured area of the boundary
	DeclaredHa float64 // the farmer's own figure
	Tenure     string
	Level      Level
	// Expires is when a GPS measurement stops counting as current (nil
	// for corroborated areas and unverified plots).
	Expires *time.Time
}

// Cycle is a verified crop planting.
type Cycle struct {
	Ref               Ref
	PlotID, Crop      string
	PlantedOn         time.Time
	ExpectedHarvestOn time.Time
}

// Harvest is a verified harvest.
type Harvest struct {
	Ref          Ref
	PlotID, Crop string
	Kg           float64
	On           time.Time
}

// Sale is a verified sale.
type Sale struct {
	Ref      Ref
	Crop     string
	Amount   int64 // minor units
	Currency string
	On       time.Time
}

// Input is a verified input application.
type Input struct {
	Ref Ref
	On  time.Time
}

// PastLoan is one of the farmer's loans through Tani, at any bank.
type PastLoan struct {
	LoanID     string
	LeafIndex  *int64 // the journal entry of its current state
	Repaid     bool
	WrittenOff bool
	MaxDPD     int
}

// Evidence is everything the score looks at, as of AsOf. Only attested
// records belong here: verified ones, and plots attest flagged (which
// count as unverified).
type Evidence struct {
	AsOf     time.Time
	Region   string
	Plots    []Plot
	Cycles   []Cycle
	Harvests []Harvest
	Sales    []Sale
	Inputs   []Input
	Loans    []PastLoan
	// Newest is the capture time of the newest verified record, and
	// NewestRef that record (for recency).
	Newest    time.Time
	NewestRef *Ref
}

// Product is what the limit is computed for.
type Product struct {
	Crops     []string // the first is the crop assumed for a plot with no cycle
	Currency  string
	LTV       float64 // share of expected revenue, 0..1
	MinAmount int64
	MaxAmount int64
}

// Request is a score for a product and, optionally, an amount asked.
type Request struct {
	Product Product
	Amount  int64 // 0: none asked; income is judged against MaxAmount
}

// FactorResult is one factor's contribution.
type FactorResult struct {
	Name      string   `json:"name"`
	Feature   string   `json:"feature"`
	Value     *float64 `json:"value"` // nil: no evidence
	Unit      string   `json:"unit"`
	Points    float64  `json:"points"`
	MaxPoints float64  `json:"max_points"`
	Reasoning string   `json:"reasoning"`
	Evidence  []Ref    `json:"evidence"`
}

// Reason is an adverse reason: a factor that cost points, the points it
// cost against its maximum, and the evidence behind it.
type Reason struct {
	Code     string  `json:"code"`
	Factor   string  `json:"factor"`
	Message  string  `json:"message"`
	Effect   float64 `json:"effect_points"`
	Evidence []Ref   `json:"evidence"`
}

// Hint is a counterfactual: what one verification step would do to the
// limit. Applying it (the step succeeding as described) gives exactly
// Limit and Score, all else equal.
type Hint struct {
	Action  string `json:"action"` // second_agent_visit, gps_walk
	PlotID  string `json:"plot_id"`
	Record  Ref    `json:"record"`
	Message string `json:"message"`
	Limit   int64  `json:"limit"`
	Score   int    `json:"score"`
}

// PlotLimit is one plot's contribution to the limit.
type PlotLimit struct {
	PlotID     string  `json:"plot_id"`
	Record     Ref     `json:"record"`
	Crop       string  `json:"crop"`
	Assumed    bool    `json:"crop_assumed"` // no verified cycle: the product's first crop
	AreaHa     float64 `json:"area_ha"`
	Level      Level   `json:"level"`
	Confidence float64 `json:"confidence"`
	YieldTHa   float64 `json:"benchmark_yield_t_ha"`
	Revenue    int64   `json:"expected_revenue"`
}

// Result is a score with everything needed to explain it.
type Result struct {
	Model       string `json:"model"`
	ModelDigest string `json:"model_sha256"`
	Score       int    `json:"score"`
	Band        string `json:"band"`
	// PD is the probability of default (90+ days past due within the
	// term) the scaling assigns to Score; PDMethod says how.
	PD       float64 `json:"pd"`
	PDMethod string  `json:"pd_method"`
	Limit    int64   `json:"limit"`
	Currency string  `json:"currency"`
	// ExpectedRevenue is the financed plots' revenue at full confidence;
	// VerifiedRevenue the same scaled by each plot's confidence.
	ExpectedRevenue int64          `json:"expected_revenue"`
	VerifiedRevenue int64          `json:"verified_revenue"`
	LTV             float64        `json:"ltv"`
	BandMultiplier  float64        `json:"band_multiplier"`
	Confidence      float64        `json:"confidence"`
	Plots           []PlotLimit    `json:"plots"`
	LimitNotes      []string       `json:"limit_notes"`
	Factors         []FactorResult `json:"factors"`
	Reasons         []Reason       `json:"adverse_reasons"`
	Hints           []Hint         `json:"hints"`
	// Evidence is every record the score used, for the journal.
	Evidence []Ref `json:"evidence"`
}

// MaxReasons is how many adverse reasons are given: Regulation B's
// commentary (12 CFR 1002.9(b)(2), comment 2) finds more than four not
// helpful, and FCRA key factors stop at four (15 U.S.C. 1681g(f)(1)(C)).
const MaxReasons = 4

// Score scores ev for req with model m. It is a pure function of its
// arguments: the same evidence always gives the same result, which is
// what makes a journaled score checkable and a hint exact.
func (m *Model) Score(ev Evidence, req Request) Result {
	r := m.score(ev, req)
	r.Hints = m.hints(ev, req, r)
	return r
}

// score is Score without hints.
func (m *Model) score(ev Evidence, req Request) Result {
	res := Result{Model: m.Version, ModelDigest: m.Digest, Currency: req.Product.Currency, LTV: req.Product.LTV,
		PDMethod: m.Scaling.Calibration, Hints: []Hint{}, LimitNotes: []string{}, Plots: []PlotLimit{}}
	feats := m.features(ev, req)
	total := m.Scaling.BasePoints
	for _, f := range m.Factors {
		fe := feats[f.Name]
		fr := FactorResult{Name: f.Name, Feature: f.Feature, Unit: f.Unit, MaxPoints: f.maxPoints(), Reasoning: f.Reasoning, Evidence: fe.refs}
		if fr.Evidence == nil {
			fr.Evidence = []Ref{}
		}
		switch {
		case fe.value == nil && f.MissingPoints != nil:
			fr.Points = *f.MissingPoints
		case f.Direction == "categorical":
			fr.Points = fe.categorical
			fr.Value = fe.value
		case fe.value == nil:
			fr.Points = f.pointsAt(0)
		default:
			fr.Value = fe.value
			fr.Points = f.pointsAt(*fe.value)
		}
		fr.Points = round2(fr.Points)
		total += fr.Points
		res.Factors = append(res.Factors, fr)
	}
	res.Score = int(math.Round(total))
	for _, b := range m.Bands {
		if res.Score >= b.MinScore {
			res.Band, res.BandMultiplier = b.Name, b.LimitMultiplier
			break
		}
	}
	odds := m.Scaling.AnchorOdds * math.Pow(2, (float64(res.Score)-m.Scaling.AnchorScore)/m.Scaling.PDO)
	res.PD = round4(1 / (1 + odds))
	res.Reasons = m.reasons(res.Factors, feats)
	m.limit(ev, req, &res)
	res.Evidence = evidenceOf(ev)
	return res
}

// feature is one factor's computed input.
type feature struct {
	value       *float64
	categorical float64 // points of a categorical factor
	refs        []Ref
}

func some(v float64) *float64 { v = round4(v); return &v }

// features computes every factor's feature from the evidence.
func (m *Model) features(ev Evidence, req Request) map[string]feature {
	out := map[string]feature{}
	day := func(n int) time.Time { return ev.AsOf.AddDate(0, 0, -n) }

	// land: counted area per plot; tenure: the most secure tenure held
	// (a maximum, so that adding a rented plot never lowers it).
	var area float64
	var plotRefs []Ref
	tenure := m.factor("tenure")
	best, bestRef := -1.0, []Ref(nil)
	for _, p := range ev.Plots {
		area += m.countedArea(p)
		plotRefs = append(plotRefs, p.Ref)
		if v := tenure.Categories[p.Tenure]; v > best {
			best, bestRef = v, []Ref{p.Ref}
		}
	}
	out["land"] = feature{value: some(area), refs: plotRefs}
	if best >= 0 {
		out["tenure"] = feature{value: some(best), categorical: best, refs: bestRef}
	} else {
		out["tenure"] = feature{}
	}

	// yield and seasons: verified harvests in the history window.
	plots := map[string]Plot{}
	for _, p := range ev.Plots {
		plots[p.ID] = p
	}
	var ratios []float64
	var yieldRefs, seasonRefs []Ref
	seasons := map[string]bool{}
	perennial := map[[2]string]float64{} // (plot, crop) -> kg in the last year
	perennialRefs := map[[2]string][]Ref{}
	for _, h := range ev.Harvests {
		if h.On.Before(day(m.Windows.HistoryDays)) || h.On.After(ev.AsOf) {
			continue
		}
		half := 1
		if h.On.Month() > 6 {
			half = 2
		}
		seasons[fmt.Sprintf("%s/%d/%d", h.Crop, h.On.Year(), half)] = true
		seasonRefs = append(seasonRefs, h.Ref)
		p, ok := plots[h.PlotID]
		bench, known := m.Benchmarks.Yield(h.Crop, ev.Region)
		if !ok || p.AreaHa <= 0 || !known {
			continue
		}
		if m.Benchmarks.Crops[h.Crop].Perennial {
			if !h.On.Before(day(365)) {
				k := [2]string{h.PlotID, h.Crop}
				perennial[k] += h.Kg
				perennialRefs[k] = append(perennialRefs[k], h.Ref)
			}
			continue
		}
		ratios = append(ratios, h.Kg/1000/p.AreaHa/bench)
		yieldRefs = append(yieldRefs, h.Ref)
	}
	keys := make([][2]string, 0, len(perennial))
	for k := range perennial {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	for _, k := range keys {
		kg := perennial[k]
		bench, _ := m.Benchmarks.Yield(k[1], ev.Region)
		ratios = append(ratios, kg/1000/plots[k[0]].AreaHa/bench)
		yieldRefs = append(yieldRefs, perennialRefs[k]...)
	}
	if len(ratios) > 0 {
		out["yield"] = feature{value: some(median(ratios)), refs: sortRefs(yieldRefs)}
	} else {
		out["yield"] = feature{}
	}
	out["seasons"] = feature{value: some(float64(len(seasons))), refs: seasonRefs}

	// income: verified sales in the loan's currency, last year.
	var income int64
	var saleRefs []Ref
	for _, s := range ev.Sales {
		if s.Currency == req.Product.Currency && !s.On.Before(day(m.Windows.IncomeDays)) && !s.On.After(ev.AsOf) {
			income += s.Amount
			saleRefs = append(saleRefs, s.Ref)
		}
	}
	denom := req.Amount
	if denom <= 0 {
		denom = req.Product.MaxAmount
	}
	if denom > 0 {
		out["income"] = feature{value: some(float64(income) / float64(denom)), refs: saleRefs}
	} else {
		out["income"] = feature{refs: saleRefs}
	}

	// inputs: verified applications, last year.
	var inputRefs []Ref
	for _, in := range ev.Inputs {
		if !in.On.Before(day(m.Windows.InputsDays)) && !in.On.After(ev.AsOf) {
			inputRefs = append(inputRefs, in.Ref)
		}
	}
	out["inputs"] = feature{value: some(float64(len(inputRefs))), refs: inputRefs}

	// repayment: the grade of the farmer's Tani loans.
	grade, repaid := 3.0, 0
	var loanRefs []Ref
	for _, l := range ev.Loans {
		loanRefs = append(loanRefs, Ref{RecordID: l.LoanID, LeafIndex: l.LeafIndex})
		switch {
		case l.WrittenOff:
			grade = 0
		case l.MaxDPD >= 90:
			grade = min(grade, 1)
		case l.MaxDPD >= 30:
			grade = min(grade, 2)
		case l.Repaid:
			repaid++
		}
	}
	if grade == 3 {
		grade += float64(min(repaid, 4))
	}
	if len(ev.Loans) > 0 {
		out["repayment"] = feature{value: some(grade), refs: loanRefs}
	} else {
		out["repayment"] = feature{value: some(grade)}
	}
	// A farmer with no Tani loan is graded like one in good standing, but
	// the reason given is the missing history.
	if len(ev.Loans) == 0 {
		f := out["repayment"]
		f.refs = nil
		out["repayment"] = f
	}

	// recency: months since the newest verified record.
	if !ev.Newest.IsZero() {
		months := ev.AsOf.Sub(ev.Newest).Hours() / 24 / 30.44
		var refs []Ref
		if ev.NewestRef != nil {
			refs = []Ref{*ev.NewestRef}
		}
		out["recency"] = feature{value: some(max(months, 0)), refs: refs}
	} else {
		out["recency"] = feature{}
	}
	return out
}

// countedArea is a plot's area for the land factor.
func (m *Model) countedArea(p Plot) float64 {
	if p.Level == Unverified {
		return min(p.DeclaredHa, p.AreaHa) * m.Confidence.UnverifiedAreaWeight
	}
	return p.AreaHa
}

// limitArea is a plot's area for the limit (before confidence).
func limitArea(p Plot) float64 {
	if p.Level == Unverified {
		return min(p.DeclaredHa, p.AreaHa)
	}
	return p.AreaHa
}

func (m *Model) factor(name string) Factor {
	for _, f := range m.Factors {
		if f.Name == name {
			return f
		}
	}
	return Factor{}
}

// reasons ranks the factors that cost points by the points they cost
// against their maximum, and names the evidence of each.
func (m *Model) reasons(factors []FactorResult, feats map[string]feature) []Reason {
	var out []Reason
	for i, fr := range factors {
		effect := round2(fr.MaxPoints - fr.Points)
		if effect <= 0 {
			continue
		}
		f := m.Factors[i]
		adv := f.Adverse
		missing := feats[f.Name].value == nil || f.Name == "repayment" && len(feats[f.Name].refs) == 0
		if missing && f.AdverseMissing != nil {
			adv = *f.AdverseMissing
		}
		ev := fr.Evidence
		if ev == nil {
			ev = []Ref{}
		}
		out = append(out, Reason{Code: adv.Code, Factor: f.Name, Message: adv.Message, Effect: effect, Evidence: ev})
	}
	// Stable: ties keep the file's factor order.
	sort.SliceStable(out, func(a, b int) bool { return out[a].Effect > out[b].Effect })
	if len(out) > MaxReasons {
		out = out[:MaxReasons]
	}
	if out == nil {
		out = []Reason{}
	}
	return out
}

// limit computes the recommended limit: expected revenue of the plots
// growing a financed crop, scaled by confidence, times LTV and the band's
// multiplier, rounded down, within the product's range.
func (m *Model) limit(ev Evidence, req Request, res *Result) {
	latest := map[string]Cycle{}
	for _, c := range ev.Cycles {
		if old, ok := latest[c.PlotID]; !ok || c.PlantedOn.After(old.PlantedOn) {
			latest[c.PlotID] = c
		}
	}
	var full, weighted float64
	for _, p := range ev.Plots {
		crop, assumed := "", false
		if c, ok := latest[p.ID]; ok {
			crop = c.Crop
		} else if len(req.Product.Crops) > 0 {
			crop, assumed = req.Product.Crops[0], true
		}
		if !slices.Contains(req.Product.Crops, crop) {
			continue
		}
		bench, ok := m.Benchmarks.Yield(crop, ev.Region)
		if !ok || req.Product.Currency != m.Benchmarks.Currency {
			continue
		}
		conf := m.Confidence.Levels[p.Level]
		a := limitArea(p)
		rev := a * bench * 1000 * m.Benchmarks.Crops[crop].PriceMinorPerKg
		full += rev
		weighted += rev * conf
		res.Plots = append(res.Plots, PlotLimit{PlotID: p.ID, Record: p.Ref, Crop: crop, Assumed: assumed, AreaHa: round4(a), Level: p.Level,
			Confidence: conf, YieldTHa: bench, Revenue: int64(rev * conf)})
	}
	res.ExpectedRevenue, res.VerifiedRevenue = int64(full), int64(weighted)
	if full > 0 {
		res.Confidence = round4(weighted / full)
	}
	switch {
	case req.Product.Currency != m.Benchmarks.Currency:
		res.LimitNotes = append(res.LimitNotes, fmt.Sprintf("model %s has benchmarks in %s only, the product lends in %s", m.Version, m.Benchmarks.Currency, req.Product.Currency))
		return
	case len(res.Plots) == 0:
		res.LimitNotes = append(res.LimitNotes, "no attested plot grows a crop this product finances")
		return
	case res.BandMultiplier == 0:
		res.LimitNotes = append(res.LimitNotes, fmt.Sprintf("band %s: decline recommended", res.Band))
		return
	}
	raw := weighted * req.Product.LTV * res.BandMultiplier
	step := float64(m.Benchmarks.LimitRounding)
	lim := int64(math.Floor(raw/step) * step)
	if req.Product.MaxAmount > 0 && lim > req.Product.MaxAmount {
		res.LimitNotes = append(res.LimitNotes, "capped at the product's maximum")
		lim = req.Product.MaxAmount
	}
	if lim < req.Product.MinAmount {
		res.LimitNotes = append(res.LimitNotes, fmt.Sprintf("%d is below the product's minimum of %d", lim, req.Product.MinAmount))
		lim = 0
	}
	res.Limit = lim
}

// hints are the verification steps that would raise the limit: a second
// agent's visit for a plot still under review, a new GPS walk for one
// whose measurement expired. Each is scored exactly as if it had
// happened.
func (m *Model) hints(ev Evidence, req Request, base Result) []Hint {
	out := []Hint{}
	for i, p := range ev.Plots {
		var action, msg string
		var to Level
		switch p.Level {
		case Unverified:
			action, to = "second_agent_visit", Corroborated
			msg = "a second agent's visit corroborating plot %s (under review) would raise the limit to %d"
		case Expired:
			action, to = "gps_walk", GPSWalk
			msg = "a new GPS walk of plot %s (its measurement expired) would raise the limit to %d"
		default:
			continue
		}
		alt := ev
		alt.Plots = slices.Clone(ev.Plots)
		q := p
		q.Level = to
		alt.Plots[i] = q
		r := m.score(alt, req)
		if r.Limit <= base.Limit {
			continue
		}
		out = append(out, Hint{Action: action, PlotID: p.ID, Record: p.Ref, Message: fmt.Sprintf(msg, p.ID, r.Limit), Limit: r.Limit, Score: r.Score})
	}
	slices.SortStableFunc(out, func(a, b Hint) int { return cmp.Compare(b.Limit, a.Limit) })
	return out
}

// evidenceOf lists every record of ev once, by leaf index then id.
func evidenceOf(ev Evidence) []Ref {
	seen := map[string]bool{}
	var out []Ref
	add := func(r Ref) {
		if !seen[r.RecordID] {
			seen[r.RecordID] = true
			out = append(out, r)
		}
	}
	for _, p := range ev.Plots {
		add(p.Ref)
	}
	for _, c := range ev.Cycles {
		add(c.Ref)
	}
	for _, h := range ev.Harvests {
		add(h.Ref)
	}
	for _, s := range ev.Sales {
		add(s.Ref)
	}
	for _, in := range ev.Inputs {
		add(in.Ref)
	}
	for _, l := range ev.Loans {
		add(Ref{RecordID: l.LoanID, LeafIndex: l.LeafIndex})
	}
	out = sortRefs(out)
	if out == nil {
		out = []Ref{}
	}
	return out
}

func sortRefs(refs []Ref) []Ref {
	slices.SortFunc(refs, func(a, b Ref) int {
		switch {
		case a.LeafIndex == nil && b.LeafIndex == nil:
			return cmp.Compare(a.RecordID, b.RecordID)
		case a.LeafIndex == nil:
			return 1
		case b.LeafIndex == nil:
			return -1
		}
		return cmp.Or(cmp.Compare(*a.LeafIndex, *b.LeafIndex), cmp.Compare(a.RecordID, b.RecordID))
	})
	return refs
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }
func round4(x float64) float64 { return math.Round(x*10000) / 10000 }
