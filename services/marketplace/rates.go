package marketplace

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
)

// Rate is one row of the agronomic rate table (marketplace.input_rates):
// how much of an input category a hectare of a crop takes per season
// (annual crops) or per year (perennials), and over which months.
type Rate struct {
	Version     int       `json:"version"`
	Crop        string    `json:"crop"`
	Category    string    `json:"category"`
	KgPerHa     float64   `json:"kg_per_ha"`
	Basis       string    `json:"basis"`
	MonthShares []float64 `json:"month_shares"`
	Source      string    `json:"source"`
}

// Rates is one version of the table.
type Rates struct {
	Version int    `json:"version"`
	Rows    []Rate `json:"rows"`
}

// For returns the rate of a crop and category, if the table has one.
func (r Rates) For(crop, category string) (Rate, bool) {
	for _, x := range r.Rows {
		if x.Crop == crop && x.Category == category {
			return x, true
		}
	}
	return Rate{}, false
}

// LoadRates reads the newest version of the rate table.
func LoadRates(ctx context.Context, q querier) (Rates, error) {
	rows, err := q.Query(ctx, `
		SELECT version, crop, category, kg_per_ha, basis, month_shares, source FROM marketplace.input_rates
		WHERE version = (SELECT max(version) FROM marketplace.input_rates) ORDER BY crop, category`)
	if err != nil {
		return Rates{}, fmt.Errorf("load input rates: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Rate, error) {
		var x Rate
		return x, r.Scan(&x.Version, &x.Crop, &x.Category, &x.KgPerHa, &x.Basis, &x.MonthShares, &x.Source)
	})
	if err != nil {
		return Rates{}, fmt.Errorf("load input rates: %w", err)
	}
	if len(out) == 0 {
		return Rates{}, fmt.Errorf("marketplace.input_rates is empty")
	}
	return Rates{Version: out[0].Version, Rows: out}, nil
}

// Basket is the recommended basket for a farmer: each verified plot's area
// times its crop's rate, matched to the distributor's products.
type Basket struct {
	FarmerID     string       `json:"farmer_id"`
	RatesVersion int          `json:"rates_version"`
	Plots        []BasketPlot `json:"plots"`
	Needs        []BasketNeed `json:"needs"`
	Lines        []BasketLine `json:"lines"`
	Totals       []Money      `json:"totals"`
	Unmatched    []string     `json:"unmatched,omitempty"`
}

// BasketPlot is a verified plot and the crop of its latest verified cycle.
type BasketPlot struct {
	PlotID string  `json:"plot_id"`
	AreaHa float64 `json:"area_ha"`
	Crop   string  `json:"crop,omitempty"`
}

// BasketNeed is what the rate table says the plots need of a category.
type BasketNeed struct {
	Crop     string  `json:"crop"`
	Category string  `json:"category"`
	AreaHa   float64 `json:"area_ha"`
	KgPerHa  float64 `json:"kg_per_ha"`
	Kg       float64 `json:"kg"`
	Basis    string  `json:"basis"`
	Source   string  `json:"source"`
}

// BasketLine is a product that covers a need: whole packs, rounded up.
type BasketLine struct {
	Crop      string  `json:"crop"`
	Category  string  `json:"category"`
	ProductID string  `json:"product_id"`
	Name      string  `json:"name"`
	PackSize  float64 `json:"pack_size"`
	Packs     int64   `json:"quantity"`
	UnitPrice Money   `json:"unit_price"`
	Subtotal  Money   `json:"subtotal"`
}

// RecommendBasket computes a farmer's basket through the consent gate
// (scopes plots and crops). plotID, when set, limits it to one plot.
func (s *Service) RecommendBasket(ctx context.Context, p identity.Principal, requestID, farmerID, plotID string) (Basket, error) {
	if plotID != "" && !validLowerUUID(plotID) {
		return Basket{}, apperr.Fields("bad plot", apperr.FieldError{Field: "plot_id", Message: "must be a lowercase UUID"})
	}
	// A farmer who asked to be forgotten is read by no one (their
	// consents are erased too; this answers so even while ingest's part
	// of the erasure is still running).
	erased, err := eraser.Erased(ctx, s.pool, []string{farmerID})
	if err != nil {
		return Basket{}, err
	}
	if erased.Has(farmerID) {
		return Basket{}, errFarmerErased(farmerID)
	}
	rates, err := LoadRates(ctx, s.pool)
	if err != nil {
		return Basket{}, err
	}
	b := Basket{FarmerID: farmerID, RatesVersion: rates.Version}
	access := consent.Access{FarmerID: farmerID, Scopes: []consent.Scope{consent.Plots, consent.Crops}, Purpose: "recommend an input basket", RequestID: requestID, ReadOnly: true}
	err = s.gate.Read(ctx, p, access, func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
		rows, err := tx.Query(ctx, `
			SELECT p.plot_id::text, p.area_ha, coalesce(c.crop, ''), p.region
			FROM attest.verified_plots p
			LEFT JOIN LATERAL (SELECT crop FROM attest.verified_crop_cycles c WHERE c.plot_id = p.plot_id ORDER BY planted_on DESC LIMIT 1) c ON true
			WHERE p.farmer_id = $1 AND ($2 = '' OR p.plot_id::text = $2) ORDER BY p.plot_id`, farmerID, plotID)
		if err != nil {
			return fmt.Errorf("verified plots: %w", err)
		}
		var region string
		_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
			var bp BasketPlot
			err := r.Scan(&bp.PlotID, &bp.AreaHa, &bp.Crop, &region)
			b.Plots = append(b.Plots, bp)
			return struct{}{}, err
		})
		if err != nil {
			return err
		}
		b.Needs = needs(rates, b.Plots)
		return s.matchProducts(ctx, tx, p.OrganizationID, region, &b)
	})
	if err != nil {
		return Basket{}, err
	}
	if b.Plots == nil {
		b.Plots = []BasketPlot{}
	}
	return b, nil
}

// needs multiplies each plot's verified area by its crop's rates, summed
// by crop and category.
func needs(rates Rates, plots []BasketPlot) []BasketNeed {
	acc := map[[2]string]*BasketNeed{}
	for _, p := range plots {
		for _, cat := range []string{"seed", "fertilizer"} {
			r, ok := rates.For(p.Crop, cat)
			if !ok || r.KgPerHa == 0 {
				continue
			}
			k := [2]string{p.Crop, cat}
			n := acc[k]
			if n == nil {
				n = &BasketNeed{Crop: p.Crop, Category: cat, KgPerHa: r.KgPerHa, Basis: r.Basis, Source: r.Source}
				acc[k] = n
			}
			n.AreaHa += p.AreaHa
			n.Kg += p.AreaHa * r.KgPerHa
		}
	}
	out := make([]BasketNeed, 0, len(acc))
	for _, n := range acc {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Crop < out[j].Crop || out[i].Crop == out[j].Crop && out[i].Category < out[j].Category
	})
	return out
}

// matchProducts covers each need with the distributor's cheapest product
// per kg of that category for the crop (or for any crop), served in the
// farmer's region and in stock.
func (s *Service) matchProducts(ctx context.Context, tx pgx.Tx, org, region string, b *Basket) error {
	totals := map[string]int64{}
	for _, n := range b.Needs {
		var l BasketLine
		err := tx.QueryRow(ctx, `
			SELECT product_id::text, name, pack_size, unit_price, currency FROM marketplace.products
			WHERE distributor_id = $1 AND active AND stock > 0 AND category = $2 AND (crop IS NULL OR crop = $3) AND pack_unit = 'kg'
			  AND ($4 = '' OR $4 = ANY(regions))
			ORDER BY unit_price / pack_size, crop NULLS LAST, product_id LIMIT 1`, org, n.Category, n.Crop, region).
			Scan(&l.ProductID, &l.Name, &l.PackSize, &l.UnitPrice.Amount, &l.UnitPrice.Currency)
		if err == pgx.ErrNoRows {
			b.Unmatched = append(b.Unmatched, fmt.Sprintf("%s for %s: no product in your catalog", n.Category, n.Crop))
			continue
		}
		if err != nil {
			return fmt.Errorf("match %s for %s: %w", n.Category, n.Crop, err)
		}
		l.Crop, l.Category = n.Crop, n.Category
		l.Packs = int64(math.Ceil(n.Kg/l.PackSize - 1e-9))
		l.Subtotal = Money{Amount: l.Packs * l.UnitPrice.Amount, Currency: l.UnitPrice.Currency}
		totals[l.UnitPrice.Currency] += l.Subtotal.Amount
		b.Lines = append(b.Lines, l)
	}
	keys := make([]string, 0, len(totals))
	for c := range totals {
		keys = append(keys, c)
	}
	slices.Sort(keys)
	for _, c := range keys {
		b.Totals = append(b.Totals, Money{Amount: totals[c], Currency: c})
	}
	if b.Lines == nil {
		b.Lines = []BasketLine{}
	}
	if b.Totals == nil {
		b.Totals = []Money{}
	}
	return nil
}
