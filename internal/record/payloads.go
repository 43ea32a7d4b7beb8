package record

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Payloads of each record type. Every payload names the farmer it is about,
// so authorization is one check: is this agent assigned to that farmer.
// Quantities, areas and money are given with a unit and normalized by
// Normalize (kg, ha, minor units of an ISO 4217 currency).

// FarmerRegistered identifies a farmer. The national ID never leaves
// ingest in clear: it is stored only as a keyed HMAC; the phone is stored
// encrypted.
type FarmerRegistered struct {
	FarmerID   string `json:"farmer_id" validate:"required,uuid"`
	Name       string `json:"name" validate:"required,min=1,max=200"`
	NationalID string `json:"national_id" validate:"required,min=4,max=32,alphanum"`
	Phone      string `json:"phone" validate:"required,e164"`
	Village    string `json:"village" validate:"required,min=1,max=200"`
	Gender     string `json:"gender" validate:"required,oneof=female male other undisclosed"`
	BirthYear  int    `json:"birth_year" validate:"required,gte=1900"`
	PhotoHash  string `json:"photo_hash,omitempty" validate:"omitempty,sha256hex"`
}

// PlotMapped is a plot's boundary from a GPS walk.
type PlotMapped struct {
	FarmerID     string   `json:"farmer_id" validate:"required,uuid"`
	PlotID       string   `json:"plot_id" validate:"required,uuid"`
	Boundary     Polygon  `json:"boundary" validate:"required"`
	DeclaredArea Quantity `json:"declared_area" validate:"required"`
	Tenure       string   `json:"tenure" validate:"required,oneof=owned rented sharecropped customary communal other"`
	GPSAccuracyM float64  `json:"gps_accuracy_m" validate:"gte=0,lte=1000"`
	MockLocation bool     `json:"mock_location"`
}

// CropPlanted starts a crop cycle on a plot.
type CropPlanted struct {
	FarmerID          string `json:"farmer_id" validate:"required,uuid"`
	PlotID            string `json:"plot_id" validate:"required,uuid"`
	Crop              string `json:"crop" validate:"required,crop"`
	Variety           string `json:"variety,omitempty" validate:"max=100"`
	PlantedOn         string `json:"planted_on" validate:"required,datetime=2006-01-02"`
	ExpectedHarvestOn string `json:"expected_harvest_on" validate:"required,datetime=2006-01-02"`
}

// InputApplied records seed, fertilizer or chemicals put on a plot.
type InputApplied struct {
	FarmerID  string   `json:"farmer_id" validate:"required,uuid"`
	PlotID    string   `json:"plot_id" validate:"required,uuid"`
	Product   string   `json:"product" validate:"required,min=1,max=200"`
	Category  string   `json:"category" validate:"required,oneof=seed fertilizer pesticide herbicide fungicide other"`
	Quantity  Quantity `json:"quantity" validate:"required"`
	AppliedOn string   `json:"applied_on" validate:"required,datetime=2006-01-02"`
}

// HarvestRecorded is what a plot yielded.
type HarvestRecorded struct {
	FarmerID     string   `json:"farmer_id" validate:"required,uuid"`
	PlotID       string   `json:"plot_id" validate:"required,uuid"`
	Crop         string   `json:"crop" validate:"required,crop"`
	Quantity     Quantity `json:"quantity" validate:"required"`
	QualityGrade string   `json:"quality_grade" validate:"required,oneof=A B C ungraded"`
	HarvestedOn  string   `json:"harvested_on" validate:"required,datetime=2006-01-02"`
}

// SaleRecorded is produce sold.
type SaleRecorded struct {
	FarmerID string   `json:"farmer_id" validate:"required,uuid"`
	Buyer    string   `json:"buyer" validate:"required,min=1,max=200"`
	Crop     string   `json:"crop" validate:"required,crop"`
	Quantity Quantity `json:"quantity" validate:"required"`
	Price    Money    `json:"price" validate:"required"`
	SoldOn   string   `json:"sold_on" validate:"required,datetime=2006-01-02"`
}

// ConsentGranted lets one organization read some of a farmer's data until
// it expires or is revoked. The farmer proves it with a one-time code sent
// to their phone.
type ConsentGranted struct {
	FarmerID       string   `json:"farmer_id" validate:"required,uuid"`
	ConsentID      string   `json:"consent_id" validate:"required,uuid"`
	GranteeOrgID   string   `json:"grantee_organization_id" validate:"required,uuid"`
	Scopes         []string `json:"scopes" validate:"required,min=1,unique,dive,oneof=identity plots crops inputs harvests sales"`
	ExpiresAt      string   `json:"expires_at" validate:"required,datetime=2006-01-02T15:04:05Z07:00"`
	OTPChallengeID string   `json:"otp_challenge_id" validate:"required,uuid"`
	OTPCode        string   `json:"otp_code" validate:"required,len=6,numeric"`
}

// ConsentRevoked ends a consent.
type ConsentRevoked struct {
	FarmerID  string `json:"farmer_id" validate:"required,uuid"`
	ConsentID string `json:"consent_id" validate:"required,uuid"`
	Reason    string `json:"reason,omitempty" validate:"max=500"`
}

// Quantity is an amount with its unit, as the farmer said it.
type Quantity struct {
	Value float64 `json:"value" validate:"gt=0,lte=1e9"`
	Unit  string  `json:"unit" validate:"required,oneof=kg g t quintal ha m2 are acre bau l ml"`
}

// Money is an amount in minor units of an ISO 4217 currency.
type Money struct {
	Amount   int64  `json:"amount" validate:"gt=0"`
	Currency string `json:"currency" validate:"required,iso4217"`
}

// Polygon is a GeoJSON Polygon: rings of [longitude, latitude] positions,
// the first ring the outer boundary.
type Polygon struct {
	Type        string         `json:"type" validate:"required,eq=Polygon"`
	Coordinates [][][2]float64 `json:"coordinates" validate:"required,min=1,max=20,dive,min=4,max=5000"`
}

// Conversion factors to the normalized units.
var (
	toKg = map[string]float64{"kg": 1, "g": 0.001, "t": 1000, "quintal": 100}
	toHa = map[string]float64{"ha": 1, "m2": 0.0001, "are": 0.01, "acre": 0.40468564224, "bau": 0.7096} // bau: Javanese land unit
	toL  = map[string]float64{"l": 1, "ml": 0.001}
)

// Kg returns the quantity in kilograms, or false if it is not a mass.
func (q Quantity) Kg() (float64, bool) { f, ok := toKg[q.Unit]; return q.Value * f, ok }

// Ha returns the quantity in hectares, or false if it is not an area.
func (q Quantity) Ha() (float64, bool) { f, ok := toHa[q.Unit]; return q.Value * f, ok }

// Normalized returns the quantity in kg, ha or l with that unit.
func (q Quantity) Normalized() (float64, string) {
	if v, ok := q.Kg(); ok {
		return v, "kg"
	}
	if v, ok := q.Ha(); ok {
		return v, "ha"
	}
	return q.Value * toL[q.Unit], "l"
}

// WKT returns the polygon as well-known text for PostGIS.
func (p Polygon) WKT() string {
	var b strings.Builder
	b.WriteString("POLYGON(")
	for i, ring := range p.Coordinates {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j, pos := range ring {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%.8f %.8f", pos[0], pos[1])
		}
		b.WriteByte(')')
	}
	b.WriteByte(')')
	return b.String()
}

// checkPolygon reports what is wrong with a boundary: positions out of
// range, rings not closed, too few distinct points, or edges that cross.
func checkPolygon(p Polygon) []string {
	var problems []string
	for r, ring := range p.Coordinates {
		name := "boundary.coordinates[" + fmt.Sprint(r) + "]"
		for i, pos := range ring {
			if math.IsNaN(pos[0]) || pos[0] < -180 || pos[0] > 180 || math.IsNaN(pos[1]) || pos[1] < -90 || pos[1] > 90 {
				problems = append(problems, fmt.Sprintf("%s[%d]: [longitude, latitude] out of range", name, i))
			}
		}
		if len(ring) < 4 {
			continue // the validator reports it
		}
		if ring[0] != ring[len(ring)-1] {
			problems = append(problems, name+": ring is open (the last position must equal the first)")
			continue
		}
		if distinct(ring[:len(ring)-1]) < 3 {
			problems = append(problems, name+": ring needs at least 3 distinct positions")
			continue
		}
		if i, j, ok := selfIntersection(ring); ok {
			problems = append(problems, fmt.Sprintf("%s: edges %d and %d cross (self-intersecting ring)", name, i, j))
		}
	}
	return problems
}

func distinct(ps [][2]float64) int {
	seen := map[[2]float64]bool{}
	for _, p := range ps {
		seen[p] = true
	}
	return len(seen)
}

// selfIntersection finds two non-adjacent edges of a closed ring that
// touch or cross. O(n²), fine for GPS walks of a few thousand points.
func selfIntersection(ring [][2]float64) (int, int, bool) {
	n := len(ring) - 1 // edges
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if j == i+1 || (i == 0 && j == n-1) {
				continue // adjacent edges share a vertex
			}
			if segmentsIntersect(ring[i], ring[i+1], ring[j], ring[j+1]) {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

func segmentsIntersect(p1, p2, p3, p4 [2]float64) bool {
	d1 := orient(p3, p4, p1)
	d2 := orient(p3, p4, p2)
	d3 := orient(p1, p2, p3)
	d4 := orient(p1, p2, p4)
	if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
		return true
	}
	return (d1 == 0 && onSegment(p3, p4, p1)) || (d2 == 0 && onSegment(p3, p4, p2)) ||
		(d3 == 0 && onSegment(p1, p2, p3)) || (d4 == 0 && onSegment(p1, p2, p4))
}

func orient(a, b, c [2]float64) float64 {
	return (b[0]-a[0])*(c[1]-a[1]) - (b[1]-a[1])*(c[0]-a[0])
}

func onSegment(a, b, p [2]float64) bool {
	return min(a[0], b[0]) <= p[0] && p[0] <= max(a[0], b[0]) && min(a[1], b[1]) <= p[1] && p[1] <= max(a[1], b[1])
}

// date parses a validated YYYY-MM-DD.
func date(s string) time.Time {
	t, _ := time.Parse(time.DateOnly, s)
	return t
}
