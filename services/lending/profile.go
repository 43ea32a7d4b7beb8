package lending

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/services/lending/scorecard"
)

// Verification is how an item of the profile was established.
type Verification struct {
	// Status is verified (journaled, with a receipt) or flagged (under
	// review: unverified, no receipt).
	Status string  `json:"status"`
	Reason *string `json:"reason,omitempty"` // why it was flagged
	// Level and Confidence apply to land: how the area was measured and
	// how much of it the limit counts.
	Level      scorecard.Level `json:"level,omitempty"`
	Confidence *float64        `json:"confidence,omitempty"`
	// Method, Verifier, VerifiedAt and ExpiresAt are attest's provenance
	// of the item's main attribute; Attributes lists every attribute's.
	Method     string       `json:"method,omitempty"`
	Verifier   string       `json:"verifier,omitempty"`
	VerifiedAt *time.Time   `json:"verified_at,omitempty"`
	ExpiresAt  *time.Time   `json:"expires_at,omitempty"`
	Attributes []provenance `json:"attributes"`
}

// Item is one attested record of the profile: its id, what it says, how it
// was verified, and its journal receipt.
type Item struct {
	RecordID     string          `json:"record_id"`
	Type         string          `json:"type"`
	CapturedAt   time.Time       `json:"captured_at"`
	Verification Verification    `json:"verification"`
	LeafIndex    *int64          `json:"leaf_index"`
	Receipt      *verify.Receipt `json:"receipt"`
	Facts        map[string]any  `json:"facts"`
}

// Profile is a farmer's credit profile: attested evidence with provenance.
type Profile struct {
	FarmerID string    `json:"farmer_id"`
	AsOf     time.Time `json:"as_of"`
	Region   string    `json:"region"`
	Sections []string  `json:"sections"`
	Consent  struct {
		ConsentID       string    `json:"consent_id"`
		GrantedRecordID string    `json:"granted_record_id"`
		Scopes          []string  `json:"scopes"`
		ExpiresAt       time.Time `json:"expires_at"`
	} `json:"consent"`
	Identity *identityFact `json:"identity,omitempty"`
	Land     *struct {
		MeasuredAreaHa float64 `json:"measured_area_ha"`
		CountedAreaHa  float64 `json:"counted_area_ha"`
		Plots          []Item  `json:"plots"`
	} `json:"land,omitempty"`
	Crops    []Item     `json:"crops,omitempty"`
	Inputs   []Item     `json:"inputs,omitempty"`
	Harvests []Item     `json:"harvests,omitempty"`
	Sales    *salesPart `json:"sales,omitempty"`
	Loans    []loanPart `json:"loans,omitempty"`
	// Journal is the checkpoint every receipt of the profile proves into.
	Journal *journalPart `json:"journal"`
}

type salesPart struct {
	// Income12m is verified sales income of the last 365 days, per currency.
	Income12m []Money `json:"income_12m"`
	Items     []Item  `json:"items"`
}

type loanPart struct {
	LoanID     string     `json:"loan_id"`
	Lender     string     `json:"lender"` // "this bank" or "another Tani lender"
	State      string     `json:"state"`
	Principal  *Money     `json:"principal"`
	Paid       Money      `json:"paid"`
	MaxDPD     int        `json:"max_days_past_due"`
	DueOn      *string    `json:"due_on"`
	Disbursed  *time.Time `json:"disbursed_at"`
	Closed     *time.Time `json:"closed_at"`
	LeafIndex  *int64     `json:"leaf_index"`
	ProductID  *string    `json:"product_id,omitempty"` // this bank's own loans only
	TotalDue   *Money     `json:"total_due,omitempty"`
	CurrencyOf string     `json:"-"`
}

type journalPart struct {
	TreeSize   uint64         `json:"tree_size"`
	Checkpoint string         `json:"checkpoint"`
	Anchor     *verify.Anchor `json:"anchor"`
}

// sectionsParam reads ?sections= (comma-separated; default
// defaultSections) and returns them with the scopes they need.
func sectionsParam(c echo.Context) ([]string, []consent.Scope, error) {
	sections := defaultSections
	if v := c.QueryParam("sections"); v != "" {
		sections = nil
		for _, s := range strings.Split(v, ",") {
			if _, ok := sectionScopes[s]; !ok {
				names := make([]string, 0, len(sectionScopes))
				for n := range sectionScopes {
					names = append(names, n)
				}
				slices.Sort(names)
				return nil, nil, apperr.Fields("bad query", apperr.FieldError{Field: "sections", Message: fmt.Sprintf("%q is not one of %s", s, strings.Join(names, ", "))})
			}
			if !slices.Contains(sections, s) {
				sections = append(sections, s)
			}
		}
	}
	var scopes []consent.Scope
	for _, s := range sections {
		scopes = append(scopes, sectionScopes[s])
	}
	return sections, scopes, nil
}

// profile: GET /farmers/{id}/profile.
func (s *Service) profile(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	farmer, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	sections, scopes, err := sectionsParam(c)
	if err != nil {
		return err
	}
	withReceipts := true
	switch c.QueryParam("receipts") {
	case "", "true":
	case "false":
		withReceipts = false
	default:
		return apperr.Fields("bad query", apperr.FieldError{Field: "receipts", Message: "must be true or false"})
	}
	// The evidence is read in the round trip of the consent check; the
	// receipts (journal reads on other connections) are gathered while
	// the commit of the access-log row waits for its flush, and the
	// profile is answered only once both are done.
	var data map[string]*farmerData
	var p *Profile
	receipts := make(chan error, 1)
	_, err = s.gate.ReadBatchFor(c, farmer, scopes, "credit profile",
		func(b *pgx.Batch) { data = queueFarmers(b, []string{farmer}, sections, allProvenance) },
		func(ctx context.Context, g consent.Grant, _ *pgx.Batch) error {
			p = s.buildProfile(bank.OrganizationID, data[farmer], sections, g)
			if !withReceipts {
				receipts <- nil
				return nil
			}
			go func() { receipts <- s.attachReceipts(ctx, p) }()
			return nil
		})
	if err != nil {
		if p != nil {
			<-receipts // started: let it end before the request does
		}
		return err
	}
	if err := <-receipts; err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// buildProfile lays out what a gated read saw.
func (s *Service) buildProfile(org string, d *farmerData, sections []string, g consent.Grant) *Profile {
	now := s.now().UTC()
	p := &Profile{FarmerID: d.FarmerID, AsOf: now, Region: d.Region, Sections: sections, Identity: d.Identity}
	p.Consent.ConsentID, p.Consent.GrantedRecordID, p.Consent.ExpiresAt = g.ConsentID, g.GrantedRecordID, g.ExpiresAt
	for _, sc := range g.Scopes {
		p.Consent.Scopes = append(p.Consent.Scopes, string(sc))
	}
	ev := d.evidence(now)
	item := func(a *attested, main string, facts map[string]any) Item {
		it := Item{RecordID: a.RecordID, Type: a.Type, CapturedAt: a.CapturedAt, LeafIndex: a.LeafIndex, Facts: facts,
			Verification: Verification{Status: a.Status, Attributes: a.Provenance}}
		if a.Status != "verified" {
			it.Verification.Reason = a.Reason
		}
		if it.Verification.Attributes == nil {
			it.Verification.Attributes = []provenance{}
		}
		for _, pr := range a.Provenance {
			if pr.Attribute == main {
				pr := pr
				it.Verification.Method, it.Verification.Verifier, it.Verification.VerifiedAt, it.Verification.ExpiresAt = pr.Method, pr.Verifier, &pr.VerifiedAt, pr.ExpiresAt
			}
		}
		return it
	}
	has := func(s string) bool { return slices.Contains(sections, s) }
	if has("land") {
		p.Land = &struct {
			MeasuredAreaHa float64 `json:"measured_area_ha"`
			CountedAreaHa  float64 `json:"counted_area_ha"`
			Plots          []Item  `json:"plots"`
		}{Plots: []Item{}}
		for _, pl := range ev.Plots {
			a := d.Records[pl.Ref.RecordID]
			var fact plotFact
			for _, f := range d.Plots {
				if f.RecordID == a.RecordID {
					fact = f
				}
			}
			it := item(a, "area_ha", map[string]any{"plot_id": pl.ID, "area_ha": fact.AreaHa, "declared_area_ha": fact.DeclaredHa, "tenure": fact.Tenure})
			conf := s.model.Confidence.Levels[pl.Level]
			it.Verification.Level, it.Verification.Confidence = pl.Level, &conf
			p.Land.Plots = append(p.Land.Plots, it)
			if pl.Level != scorecard.Unverified {
				p.Land.MeasuredAreaHa += pl.AreaHa
				p.Land.CountedAreaHa += pl.AreaHa
			} else {
				p.Land.CountedAreaHa += min(pl.AreaHa, pl.DeclaredHa) * s.model.Confidence.UnverifiedAreaWeight
			}
		}
	}
	if has("crops") {
		p.Crops = []Item{}
		for _, f := range d.Cycles {
			if a := d.verified(f.RecordID); a != nil {
				p.Crops = append(p.Crops, item(a, "crop", map[string]any{"plot_id": f.PlotID, "crop": f.Crop, "variety": f.Variety,
					"planted_on": day(f.PlantedOn), "expected_harvest_on": day(f.HarvestOn)}))
			}
		}
	}
	if has("inputs") {
		p.Inputs = []Item{}
		for _, f := range d.Inputs {
			if a := d.verified(f.RecordID); a != nil {
				p.Inputs = append(p.Inputs, item(a, "quantity", map[string]any{"plot_id": f.PlotID, "product": f.Product, "category": f.Category,
					"quantity": f.Quantity, "unit": f.Unit, "applied_on": day(f.AppliedOn)}))
			}
		}
	}
	if has("harvests") {
		p.Harvests = []Item{}
		areas := map[string]float64{}
		for _, pl := range d.Plots {
			areas[pl.PlotID] = pl.AreaHa
		}
		for _, f := range d.Harvests {
			a := d.verified(f.RecordID)
			if a == nil {
				continue
			}
			facts := map[string]any{"plot_id": f.PlotID, "crop": f.Crop, "quantity_kg": f.Kg, "quality_grade": f.Grade, "harvested_on": day(f.HarvestedOn)}
			if bench, ok := s.model.Benchmarks.Yield(f.Crop, d.Region); ok {
				facts["benchmark_t_ha"] = bench
				if area := areas[f.PlotID]; area > 0 {
					y := f.Kg / 1000 / area
					facts["yield_t_ha"] = round3(y)
					facts["yield_vs_benchmark"] = round3(y / bench)
				}
			}
			p.Harvests = append(p.Harvests, item(a, "quantity", facts))
		}
	}
	if has("sales") {
		p.Sales = &salesPart{Items: []Item{}, Income12m: []Money{}}
		income := map[string]int64{}
		for _, f := range d.Sales {
			a := d.verified(f.RecordID)
			if a == nil {
				continue
			}
			if !f.SoldOn.Before(now.AddDate(0, 0, -365)) {
				income[f.Currency] += f.Price
			}
			p.Sales.Items = append(p.Sales.Items, item(a, "quantity", map[string]any{"crop": f.Crop, "buyer": f.Buyer, "quantity_kg": f.Kg,
				"amount": Money{Amount: f.Price, Currency: f.Currency}, "sold_on": day(f.SoldOn)}))
		}
		for _, cur := range sortedKeys(income) {
			p.Sales.Income12m = append(p.Sales.Income12m, Money{Amount: income[cur], Currency: cur})
		}
	}
	if has("loans") {
		p.Loans = []loanPart{}
		for _, l := range d.Loans {
			lp := loanPart{LoanID: l.LoanID, Lender: "another Tani lender", State: l.State, MaxDPD: l.MaxDPD, Disbursed: l.DisbursedAt,
				Closed: l.ClosedAt, LeafIndex: l.LeafIndex, Paid: Money{Currency: l.Currency}}
			if l.Principal != nil {
				lp.Principal = &Money{Amount: *l.Principal, Currency: l.Currency}
			}
			if l.Paid != nil {
				lp.Paid.Amount = *l.Paid
			}
			if l.DueOn != nil {
				d := l.DueOn.Format(time.DateOnly)
				lp.DueOn = &d
			}
			if l.OrganizationID == org {
				lp.Lender, lp.ProductID = "this bank", &l.ProductID
				if l.TotalDue != nil {
					lp.TotalDue = &Money{Amount: *l.TotalDue, Currency: l.Currency}
				}
			}
			p.Loans = append(p.Loans, lp)
		}
	}
	return p
}

// attachReceipts puts each journaled item's receipt in the profile, all in
// one checkpoint (ledger.Journal.Receipts).
func (s *Service) attachReceipts(ctx context.Context, p *Profile) error {
	var items []*Item
	var indexes []int64
	collect := func(its []Item) {
		for i := range its {
			if its[i].LeafIndex != nil {
				items, indexes = append(items, &its[i]), append(indexes, *its[i].LeafIndex)
			}
		}
	}
	if p.Land != nil {
		collect(p.Land.Plots)
	}
	collect(p.Crops)
	collect(p.Inputs)
	collect(p.Harvests)
	if p.Sales != nil {
		collect(p.Sales.Items)
	}
	if len(indexes) == 0 {
		return nil
	}
	cp, receipts, err := s.journal.Receipts(ctx, indexes)
	if err != nil {
		return fmt.Errorf("receipts of %d records: %w", len(indexes), err)
	}
	for i, it := range items {
		it.Receipt = receipts[i]
	}
	p.Journal = &journalPart{TreeSize: uint64(cp.Size), Checkpoint: string(cp.Note), Anchor: cp.Anchor}
	return nil
}

// evidenceBundle: GET /farmers/{id}/evidence-bundle: every journal entry
// behind the profile's sections — the farmer's verified records and, for
// loans, the entries of the farmer's loans with this bank and the scores
// this bank computed — with their payloads, in one checkpoint.
func (s *Service) evidenceBundle(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	farmer, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	sections, scopes, err := sectionsParam(c)
	if err != nil {
		return err
	}
	var indexes []int64
	err = s.gate.ReadFor(c, farmer, scopes, "evidence bundle", func(ctx context.Context, tx pgx.Tx, g consent.Grant) error {
		data, err := loadFarmers(ctx, tx, []string{farmer}, sections, allProvenance)
		if err != nil {
			return err
		}
		d := data[farmer]
		seen := map[int64]bool{}
		add := func(idx *int64) {
			if idx != nil && !seen[*idx] {
				seen[*idx] = true
				indexes = append(indexes, *idx)
			}
		}
		ev := d.evidence(s.now())
		for _, pl := range ev.Plots {
			add(pl.Ref.LeafIndex)
		}
		for _, x := range ev.Cycles {
			add(x.Ref.LeafIndex)
		}
		for _, x := range ev.Inputs {
			add(x.Ref.LeafIndex)
		}
		for _, x := range ev.Harvests {
			add(x.Ref.LeafIndex)
		}
		for _, x := range ev.Sales {
			add(x.Ref.LeafIndex)
		}
		if d.Identity != nil {
			// The registration record, when identity was asked for.
			for _, a := range d.Records {
				if a.Type == "farmer.registered" && a.Status == "verified" {
					add(a.LeafIndex)
				}
			}
		}
		if slices.Contains(sections, "loans") {
			// This bank's own loans' every entry, and the scores it journaled.
			rows, err := tx.Query(ctx, `
				SELECT e.leaf_index FROM lending.loan_events e JOIN lending.loans l ON l.id = e.loan_id
				WHERE l.farmer_id = $1 AND l.organization_id = $2 AND e.leaf_index IS NOT NULL
				UNION ALL
				SELECT leaf_index FROM lending.scores WHERE farmer_id = $1 AND organization_id = $2 AND leaf_index IS NOT NULL`, farmer, bank.OrganizationID)
			if err != nil {
				return fmt.Errorf("loan entries of farmer %s: %w", farmer, err)
			}
			own, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return fmt.Errorf("loan entries of farmer %s: %w", farmer, err)
			}
			for _, idx := range own {
				add(&idx)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(indexes) == 0 {
		return apperr.Errorf(apperr.NotFound, "the journal holds no entry about this farmer in the sections read (%s)", strings.Join(sections, ", "))
	}
	slices.Sort(indexes)
	ctx := c.Request().Context()
	_, receipts, err := s.journal.Receipts(ctx, indexes)
	if err != nil {
		return fmt.Errorf("receipts of farmer %s: %w", farmer, err)
	}
	ps, err := s.journal.Payloads(ctx, indexes)
	if err != nil {
		return err
	}
	payloads := make(map[uint64][]byte, len(ps))
	for idx, p := range ps {
		payloads[uint64(idx)] = p
	}
	b, err := verify.NewBundle(fmt.Sprintf("farmer %s for organization %s, sections %s", farmer, bank.OrganizationID, strings.Join(sections, ",")),
		s.now(), receipts, payloads)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="evidence-%s.json"`, farmer))
	return c.JSON(http.StatusOK, b)
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
