package loadgen

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client"
)

// farm is one farmer an agent registered and the plot the load maps and
// farms for them.
type farm struct {
	farmerID, plotID string
	lon, lat         float64 // north-west corner of the plot
	side             float64 // degrees
}

// generator makes valid, varied payloads. Values stay inside what the
// record checks accept so that every record sent is accepted: a rejected
// record would measure the error path, not the capture path.
type generator struct {
	rng *rand.Rand
	now time.Time
}

func newGenerator(seed uint64, now time.Time) *generator {
	return &generator{rng: rand.New(rand.NewPCG(seed, 0x7a41)), now: now}
}

var (
	names    = []string{"Siti Aminah", "Budi Santoso", "Wayan Sudarsa", "Dewi Lestari", "Agus Salim", "Nyoman Ayu", "Slamet Riyadi"}
	villages = []string{"Sukamaju", "Karanganyar", "Ngadirejo", "Sidomulyo", "Tegalrejo"}
	crops    = []string{"rice", "maize", "coffee", "cocoa", "cassava", "chili"}
	products = []struct{ name, category, unit string }{
		{"Urea", "fertilizer", "kg"}, {"NPK Phonska", "fertilizer", "kg"}, {"IR64 seed", "seed", "kg"},
		{"Glyphosate", "herbicide", "l"}, {"Mancozeb", "fungicide", "kg"},
	}
	buyers = []string{"KUD Makmur", "PT Agro Sejahtera", "Pasar Induk", "Koperasi Tani Maju"}
)

// newFarm places a farmer and a plot somewhere in Central Java.
func (g *generator) newFarm() farm {
	return farm{
		farmerID: client.NewID(), plotID: client.NewID(),
		lon: 110.0 + g.rng.Float64()*0.5, lat: -7.0 - g.rng.Float64()*0.5,
		side: 0.0005 + g.rng.Float64()*0.001,
	}
}

// capturedAt is a moment in the last three days: phones sync late.
func (g *generator) capturedAt() time.Time {
	return g.now.Add(-time.Duration(g.rng.Int64N(int64(72 * time.Hour))))
}

func (g *generator) location(f farm) client.Location {
	return client.Location{Lat: f.lat - f.side/2, Lon: f.lon + f.side/2, AccuracyM: 2 + g.rng.Float64()*8}
}

func (g *generator) day(daysAgo int) string {
	return g.now.AddDate(0, 0, -daysAgo).Format(time.DateOnly)
}

// registration is the farmer.registered payload of f.
func (g *generator) registration(f farm) map[string]any {
	return map[string]any{
		"farmer_id": f.farmerID, "name": names[g.rng.IntN(len(names))], "village": villages[g.rng.IntN(len(villages))],
		"national_id": fmt.Sprintf("3374%012d", g.rng.Int64N(1e12)), "phone": fmt.Sprintf("+628%010d", g.rng.Int64N(1e10)),
		"gender": []string{"female", "male"}[g.rng.IntN(2)], "birth_year": 1950 + g.rng.IntN(55),
	}
}

// eventWeights is the mix of the steady-state load, in percent: what a
// season of visits to registered farmers produces.
var eventWeights = []struct {
	typ    record.Type
	weight int
}{
	{record.TypePlotMapped, 15},
	{record.TypeCropPlanted, 20},
	{record.TypeInputApplied, 25},
	{record.TypeHarvestRecorded, 15},
	{record.TypeSaleRecorded, 20},
	{record.TypeConsentRevoked, 5},
}

// event returns a record type drawn from eventWeights and its payload
// about f.
func (g *generator) event(f farm) (record.Type, map[string]any) {
	n := g.rng.IntN(100)
	typ := eventWeights[len(eventWeights)-1].typ
	for _, w := range eventWeights {
		if n < w.weight {
			typ = w.typ
			break
		}
		n -= w.weight
	}
	crop := crops[g.rng.IntN(len(crops))]
	switch typ {
	case record.TypePlotMapped:
		d := f.side
		ring := [][2]float64{{f.lon, f.lat}, {f.lon + d, f.lat}, {f.lon + d, f.lat - d}, {f.lon, f.lat - d}, {f.lon, f.lat}}
		areaHa := d * 111_320 * d * 110_540 / 10_000 * (0.8 + g.rng.Float64()*0.4) // what the farmer thinks
		return typ, map[string]any{
			"farmer_id": f.farmerID, "plot_id": f.plotID, "tenure": "owned", "gps_accuracy_m": 2 + g.rng.Float64()*8, "mock_location": false,
			"boundary":      map[string]any{"type": "Polygon", "coordinates": [][][2]float64{ring}},
			"declared_area": map[string]any{"value": areaHa, "unit": "ha"},
		}
	case record.TypeCropPlanted:
		planted := 10 + g.rng.IntN(100)
		return typ, map[string]any{
			"farmer_id": f.farmerID, "plot_id": f.plotID, "crop": crop, "variety": "local",
			"planted_on": g.day(planted), "expected_harvest_on": g.day(planted - 120),
		}
	case record.TypeInputApplied:
		p := products[g.rng.IntN(len(products))]
		return typ, map[string]any{
			"farmer_id": f.farmerID, "plot_id": f.plotID, "product": p.name, "category": p.category,
			"quantity": map[string]any{"value": 1 + g.rng.Float64()*100, "unit": p.unit}, "applied_on": g.day(g.rng.IntN(90)),
		}
	case record.TypeHarvestRecorded:
		return typ, map[string]any{
			"farmer_id": f.farmerID, "plot_id": f.plotID, "crop": crop,
			"quantity":      map[string]any{"value": 0.5 + g.rng.Float64()*6, "unit": "t"},
			"quality_grade": []string{"A", "B", "C", "ungraded"}[g.rng.IntN(4)], "harvested_on": g.day(g.rng.IntN(30)),
		}
	case record.TypeSaleRecorded:
		return typ, map[string]any{
			"farmer_id": f.farmerID, "buyer": buyers[g.rng.IntN(len(buyers))], "crop": crop,
			"quantity": map[string]any{"value": 1 + g.rng.Float64()*40, "unit": "quintal"},
			"price":    map[string]any{"amount": 100_000 + g.rng.Int64N(2_000_000_000), "currency": "IDR"}, "sold_on": g.day(g.rng.IntN(30)),
		}
	default: // consent.revoked of a grant this load never made: stored, changes no consent
		return typ, map[string]any{"farmer_id": f.farmerID, "consent_id": client.NewID(), "reason": "changed bank"}
	}
}
