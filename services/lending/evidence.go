package lending

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/services/lending/scorecard"
)

// Sections of a farmer's credit profile and the consent scope each needs.
var sectionScopes = map[string]consent.Scope{
	"identity": consent.Identity,
	"land":     consent.Plots,
	"crops":    consent.Crops,
	"inputs":   consent.Inputs,
	"harvests": consent.Harvests,
	"sales":    consent.Sales,
	"loans":    consent.Credit,
}

// defaultSections are read when a request names none: everything a score
// uses. identity (name, village) is read only when asked for.
var defaultSections = []string{"land", "crops", "inputs", "harvests", "sales", "loans"}

// scoreScopes are what a score reads.
var scoreScopes = []consent.Scope{consent.Plots, consent.Crops, consent.Inputs, consent.Harvests, consent.Sales, consent.Credit}

// provenance is how one attribute of a verified record was established
// (attest.evidence_provenance).
type provenance struct {
	Attribute  string     `json:"attribute"`
	Method     string     `json:"method"`
	Verifier   string     `json:"verifier"`
	VerifiedAt time.Time  `json:"verified_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

// attested is one record attest judged (attest.evidence).
type attested struct {
	RecordID   string
	Type       string
	Status     string // verified, flagged
	Reason     *string
	LeafIndex  *int64
	CapturedAt time.Time
	DecidedAt  *time.Time
	Provenance []provenance
}

type plotFact struct {
	PlotID, RecordID   string
	AreaHa, DeclaredHa float64
	Tenure             string
	CapturedAt         time.Time
}

type cycleFact struct {
	RecordID, PlotID, Crop string
	Variety                *string
	PlantedOn, HarvestOn   time.Time
}

type inputFact struct {
	RecordID, PlotID, Product, Category, Unit string
	Quantity                                  float64
	AppliedOn                                 time.Time
}

type harvestFact struct {
	RecordID, PlotID, Crop, Grade string
	Kg                            float64
	HarvestedOn                   time.Time
}

type saleFact struct {
	RecordID, Buyer, Crop, Currency string
	Kg                              float64
	Price                           int64
	SoldOn                          time.Time
}

type pastLoan struct {
	LoanID, OrganizationID, ProductID, State, Currency string
	Principal, Paid                                    *int64
	TotalDue                                           *int64
	MaxDPD                                             int
	DueOn                                              *time.Time
	DisbursedAt, ClosedAt                              *time.Time
	LeafIndex                                          *int64
}

type identityFact struct {
	Name       string    `json:"name"`
	Village    string    `json:"village"`
	Gender     string    `json:"gender"`
	BirthYear  int       `json:"birth_year"`
	CapturedAt time.Time `json:"captured_at"`
}

// farmerData is what one gated read saw of one farmer: the facts of the
// sections read, and attest's judgement of every record behind them.
type farmerData struct {
	FarmerID string
	Region   string
	Records  map[string]*attested
	Plots    []plotFact
	Cycles   []cycleFact
	Inputs   []inputFact
	Harvests []harvestFact
	Sales    []saleFact
	Loans    []pastLoan
	Identity *identityFact
}

// verified returns the record if attest verified and journaled it.
func (d *farmerData) verified(id string) *attested {
	if r := d.Records[id]; r != nil && r.Status == "verified" && r.LeafIndex != nil {
		return r
	}
	return nil
}

// provenanceRead says which provenance rows a read attaches to the
// records it saw.
type provenanceRead int

const (
	// allProvenance: every attribute of every verified record (a profile
	// shows them all).
	allProvenance provenanceRead = iota
	// plotAreaProvenance: only how verified plots' area and boundary were
	// established — all a score uses (levelOf, plotExpiry). A fifth of
	// the rows and of the index probes of allProvenance: on a large book
	// those probes, scattered over the whole provenance index, were half
	// of a re-scoring chunk's reads (docs/performance.md, Lending).
	plotAreaProvenance
)

// loadFarmers reads the given sections of each farmer in tx (the consent
// gate's transaction, or one covering many gated farmers) with one round
// trip: every query of a pgx batch, each over all the farmers.
func loadFarmers(ctx context.Context, tx pgx.Tx, farmers []string, sections []string, prov provenanceRead) (map[string]*farmerData, error) {
	b := &pgx.Batch{}
	out := queueFarmers(b, farmers, sections, prov)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("load evidence of %d farmers: %w", len(farmers), err)
	}
	return out, nil
}

// queueFarmers queues loadFarmers' queries on b (a gated read's batch,
// sent behind the consent check); the map it returns is filled as b's
// results are read.
func queueFarmers(b *pgx.Batch, farmers []string, sections []string, prov provenanceRead) map[string]*farmerData {
	out := make(map[string]*farmerData, len(farmers))
	for _, f := range farmers {
		out[f] = &farmerData{FarmerID: f, Records: map[string]*attested{}}
	}
	has := func(s string) bool { return slices.Contains(sections, s) }
	b.Queue(`
		SELECT farmer_id::text, record_id::text, type, status, reason, leaf_index, captured_at, decided_at
		FROM attest.evidence WHERE farmer_id = ANY($1::uuid[]) AND status IN ('verified', 'flagged')`, farmers).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var farmer string
				a := &attested{}
				if err := rows.Scan(&farmer, &a.RecordID, &a.Type, &a.Status, &a.Reason, &a.LeafIndex, &a.CapturedAt, &a.DecidedAt); err != nil {
					return err
				}
				out[farmer].Records[a.RecordID] = a
			}
			return rows.Err()
		})
	provenanceSQL := `
		SELECT e.farmer_id::text, p.record_id::text, p.attribute, p.method, p.verifier, p.verified_at, p.expires_at
		FROM attest.evidence e JOIN attest.evidence_provenance p USING (record_id)
		WHERE e.farmer_id = ANY($1::uuid[]) AND e.status = 'verified'`
	if prov == plotAreaProvenance {
		// Probed from the farmers' plots, not from every record; the
		// status is checked below, on the record the first query read.
		provenanceSQL = `
			SELECT f.farmer_id::text, p.record_id::text, p.attribute, p.method, p.verifier, p.verified_at, p.expires_at
			FROM ingest.plot_facts f
			JOIN attest.evidence_provenance p ON p.record_id = f.record_id AND p.attribute IN ('area_ha', 'boundary')
			WHERE f.farmer_id = ANY($1::uuid[])`
	}
	b.Queue(provenanceSQL, farmers).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var farmer, record string
				var p provenance
				if err := rows.Scan(&farmer, &record, &p.Attribute, &p.Method, &p.Verifier, &p.VerifiedAt, &p.ExpiresAt); err != nil {
					return err
				}
				// The records query ran first in the batch; provenance
				// counts only on a verified (journaled) record.
				if a := out[farmer].Records[record]; a != nil && a.Status == "verified" {
					a.Provenance = append(a.Provenance, p)
				}
			}
			return rows.Err()
		})
	b.Queue(`SELECT farmer_id::text, region FROM attest.farmer_regions WHERE farmer_id = ANY($1::uuid[])`, farmers).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var farmer, region string
				if err := rows.Scan(&farmer, &region); err != nil {
					return err
				}
				out[farmer].Region = region
			}
			return rows.Err()
		})
	if has("land") {
		b.Queue(`SELECT farmer_id::text, plot_id::text, record_id::text, area_ha, declared_area_ha, tenure, captured_at
			FROM ingest.plot_facts WHERE farmer_id = ANY($1::uuid[]) ORDER BY captured_at, plot_id`, farmers).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var farmer string
					var p plotFact
					if err := rows.Scan(&farmer, &p.PlotID, &p.RecordID, &p.AreaHa, &p.DeclaredHa, &p.Tenure, &p.CapturedAt); err != nil {
						return err
					}
					out[farmer].Plots = append(out[farmer].Plots, p)
				}
				return rows.Err()
			})
	}
	if has("crops") {
		b.Queue(`SELECT farmer_id::text, record_id::text, plot_id::text, crop, variety, planted_on, expected_harvest_on
			FROM ingest.crop_cycle_facts WHERE farmer_id = ANY($1::uuid[]) ORDER BY planted_on, record_id`, farmers).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var farmer string
					var f cycleFact
					if err := rows.Scan(&farmer, &f.RecordID, &f.PlotID, &f.Crop, &f.Variety, &f.PlantedOn, &f.HarvestOn); err != nil {
						return err
					}
					out[farmer].Cycles = append(out[farmer].Cycles, f)
				}
				return rows.Err()
			})
	}
	if has("inputs") {
		b.Queue(`SELECT farmer_id::text, record_id::text, plot_id::text, product, category, quantity, unit, applied_on
			FROM ingest.input_facts WHERE farmer_id = ANY($1::uuid[]) ORDER BY applied_on, record_id`, farmers).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var farmer string
					var f inputFact
					if err := rows.Scan(&farmer, &f.RecordID, &f.PlotID, &f.Product, &f.Category, &f.Quantity, &f.Unit, &f.AppliedOn); err != nil {
						return err
					}
					out[farmer].Inputs = append(out[farmer].Inputs, f)
				}
				return rows.Err()
			})
	}
	if has("harvests") {
		b.Queue(`SELECT farmer_id::text, record_id::text, plot_id::text, crop, quality_grade, quantity_kg, harvested_on
			FROM ingest.harvest_facts WHERE farmer_id = ANY($1::uuid[]) ORDER BY harvested_on, record_id`, farmers).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var farmer string
					var f harvestFact
					if err := rows.Scan(&farmer, &f.RecordID, &f.PlotID, &f.Crop, &f.Grade, &f.Kg, &f.HarvestedOn); err != nil {
						return err
					}
					out[farmer].Harvests = append(out[farmer].Harvests, f)
				}
				return rows.Err()
			})
	}
	if has("sales") {
		b.Queue(`SELECT farmer_id::text, record_id::text, buyer, crop, currency, quantity_kg, price_minor, sold_on
			FROM ingest.sale_facts WHERE farmer_id = ANY($1::uuid[]) ORDER BY sold_on, record_id`, farmers).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var farmer string
					var f saleFact
					if err := rows.Scan(&farmer, &f.RecordID, &f.Buyer, &f.Crop, &f.Currency, &f.Kg, &f.Price, &f.SoldOn); err != nil {
						return err
					}
					out[farmer].Sales = append(out[farmer].Sales, f)
				}
				return rows.Err()
			})
	}
	if has("loans") {
		// Every Tani loan of the farmer that reached the farmer, at any
		// bank: the repayment history a bureau would show.
		b.Queue(`
			SELECT l.farmer_id::text, l.id::text, l.organization_id::text, l.product_id::text, l.state, l.currency, l.principal, l.paid,
			       l.total_due, l.max_dpd, l.due_on, l.disbursed_at, l.closed_at,
			       (SELECT e.leaf_index FROM lending.loan_events e WHERE e.loan_id = l.id ORDER BY e.revision DESC LIMIT 1)
			FROM lending.loans l
			WHERE l.farmer_id = ANY($1::uuid[]) AND l.state IN ('disbursed', 'in_arrears', 'restructured', 'repaid', 'written_off')
			ORDER BY l.disbursed_at, l.id`, farmers).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var farmer string
					var l pastLoan
					if err := rows.Scan(&farmer, &l.LoanID, &l.OrganizationID, &l.ProductID, &l.State, &l.Currency, &l.Principal, &l.Paid,
						&l.TotalDue, &l.MaxDPD, &l.DueOn, &l.DisbursedAt, &l.ClosedAt, &l.LeafIndex); err != nil {
						return err
					}
					out[farmer].Loans = append(out[farmer].Loans, l)
				}
				return rows.Err()
			})
	}
	if has("identity") {
		b.Queue(`SELECT farmer_id::text, name, village, gender, birth_year, captured_at FROM ingest.farmer_profiles WHERE farmer_id = ANY($1::uuid[])`, farmers).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var farmer string
					var f identityFact
					if err := rows.Scan(&farmer, &f.Name, &f.Village, &f.Gender, &f.BirthYear, &f.CapturedAt); err != nil {
						return err
					}
					out[farmer].Identity = &f
				}
				return rows.Err()
			})
	}
	return out
}

// levelOf says how a plot record's area was established as of asOf.
func levelOf(a *attested, asOf time.Time) scorecard.Level {
	if a == nil || a.Status != "verified" || a.LeafIndex == nil {
		return scorecard.Unverified
	}
	best := scorecard.Expired
	rank := map[string]scorecard.Level{"second_agent_visit": scorecard.Corroborated, "gps_walk": scorecard.GPSWalk, "supervisor_review": scorecard.Reviewed}
	order := []scorecard.Level{scorecard.Corroborated, scorecard.GPSWalk, scorecard.Reviewed, scorecard.Expired}
	found := false
	for _, p := range a.Provenance {
		if p.Attribute != "area_ha" && p.Attribute != "boundary" {
			continue
		}
		l, ok := rank[p.Method]
		if !ok {
			continue
		}
		if p.ExpiresAt != nil && !p.ExpiresAt.After(asOf) {
			l = scorecard.Expired
		}
		if !found || slices.Index(order, l) < slices.Index(order, best) {
			best, found = l, true
		}
	}
	if !found {
		return scorecard.Unverified
	}
	return best
}

// plotExpiry is when the plot record's measurement stops counting.
func plotExpiry(a *attested) *time.Time {
	if a == nil {
		return nil
	}
	for _, p := range a.Provenance {
		if p.Attribute == "area_ha" && p.ExpiresAt != nil {
			return p.ExpiresAt
		}
	}
	return nil
}

// evidence turns what was read into the scorecard's evidence: verified
// records (and plots under review, as unverified), as of asOf.
func (d *farmerData) evidence(asOf time.Time) scorecard.Evidence {
	ev := scorecard.Evidence{AsOf: asOf, Region: d.Region}
	ref := func(a *attested) scorecard.Ref { return scorecard.Ref{RecordID: a.RecordID, LeafIndex: a.LeafIndex} }
	newest := func(a *attested) {
		if a.CapturedAt.After(ev.Newest) {
			r := ref(a)
			ev.Newest, ev.NewestRef = a.CapturedAt, &r
		}
	}
	for _, p := range d.Plots {
		a := d.Records[p.RecordID]
		if a == nil { // rejected, or not decided yet: not evidence
			continue
		}
		if a.Status == "verified" && a.LeafIndex == nil {
			continue
		}
		ev.Plots = append(ev.Plots, scorecard.Plot{ID: p.PlotID, Ref: ref(a), AreaHa: p.AreaHa, DeclaredHa: p.DeclaredHa, Tenure: p.Tenure,
			Level: levelOf(a, asOf), Expires: plotExpiry(a)})
		if a.Status == "verified" {
			newest(a)
		}
	}
	for _, c := range d.Cycles {
		if a := d.verified(c.RecordID); a != nil {
			ev.Cycles = append(ev.Cycles, scorecard.Cycle{Ref: ref(a), PlotID: c.PlotID, Crop: c.Crop, PlantedOn: c.PlantedOn, ExpectedHarvestOn: c.HarvestOn})
			newest(a)
		}
	}
	for _, in := range d.Inputs {
		if a := d.verified(in.RecordID); a != nil {
			ev.Inputs = append(ev.Inputs, scorecard.Input{Ref: ref(a), On: in.AppliedOn})
			newest(a)
		}
	}
	for _, h := range d.Harvests {
		if a := d.verified(h.RecordID); a != nil {
			ev.Harvests = append(ev.Harvests, scorecard.Harvest{Ref: ref(a), PlotID: h.PlotID, Crop: h.Crop, Kg: h.Kg, On: h.HarvestedOn})
			newest(a)
		}
	}
	for _, s := range d.Sales {
		if a := d.verified(s.RecordID); a != nil {
			ev.Sales = append(ev.Sales, scorecard.Sale{Ref: ref(a), Crop: s.Crop, Amount: s.Price, Currency: s.Currency, On: s.SoldOn})
			newest(a)
		}
	}
	for _, l := range d.Loans {
		ev.Loans = append(ev.Loans, scorecard.PastLoan{LoanID: l.LoanID, LeafIndex: l.LeafIndex, Repaid: l.State == string(Repaid),
			WrittenOff: l.State == string(WrittenOff), MaxDPD: l.MaxDPD})
	}
	return ev
}
