package record

import (
	"fmt"
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
	FarmerID   string `json:"farmer_id" validate:"required,uuidlower"`
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
	FarmerID     string   `json:"farmer_id" validate:"required,uuidlower"`
	PlotID       string   `json:"plot_id" validate:"required,uuidlower"`
	Boundary     Polygon  `json:"boundary" validate:"required"`
	DeclaredArea Quantity `json:"declared_area" validate:"required"`
	Tenure       string   `json:"tenure" validate:"required,oneof=owned rented sharecropped customary communal other"`
	GPSAccuracyM float64  `json:"gps_accuracy_m" validate:"gte=0,lte=1000"`
	MockLocation bool     `json:"mock_location"`
}

// CropPlanted starts a crop cycle on a plot.
type CropPlanted struct {
	FarmerID          string `json:"farmer_id" validate:"required,uuidlower"`
	PlotID            string `json:"plot_id" validate:"required,uuidlower"`
	CropCode          string `json:"crop" validate:"required,crop"`
	Variety           string `json:"variety,omitempty" validate:"max=100"`
	PlantedOn         string `json:"planted_on" validate:"required,datetime=2006-01-02"`
	ExpectedHarvestOn string `json:"expected_harvest_on" validate:"required,datetime=2006-01-02"`
}

// InputApplied records seed, fertilizer or chemicals put on a plot.
type InputApplied struct {
	FarmerID  string   `json:"farmer_id" validate:"required,uuidlower"`
	PlotID    string   `json:"plot_id" validate:"required,uuidlower"`
	Product   string   `json:"product" validate:"required,min=1,max=200"`
	Category  string   `json:"category" validate:"required,oneof=seed fertilizer pesticide herbicide fungicide other"`
	Quantity  Quantity `json:"quantity" validate:"required"`
	AppliedOn string   `json:"applied_on" validate:"required,datetime=2006-01-02"`
}

// HarvestRecorded is what a plot yielded.
type HarvestRecorded struct {
	FarmerID     string   `json:"farmer_id" validate:"required,uuidlower"`
	PlotID       string   `json:"plot_id" validate:"required,uuidlower"`
	CropCode     string   `json:"crop" validate:"required,crop"`
	Quantity     Quantity `json:"quantity" validate:"required"`
	QualityGrade string   `json:"quality_grade" validate:"required,oneof=A B C ungraded"`
	HarvestedOn  string   `json:"harvested_on" validate:"required,datetime=2006-01-02"`
}

// SaleRecorded is produce sold.
type SaleRecorded struct {
	FarmerID string   `json:"farmer_id" validate:"required,uuidlower"`
	Buyer    string   `json:"buyer" validate:"required,min=1,max=200"`
	CropCode string   `json:"crop" validate:"required,crop"`
	Quantity Quantity `json:"quantity" validate:"required"`
	Price    Money    `json:"price" validate:"required"`
	SoldOn   string   `json:"sold_on" validate:"required,datetime=2006-01-02"`
}

// ConsentGranted lets one organization read some of a farmer's data until
// it expires or is revoked. The farmer proves it with a one-time code sent
// to their phone.
type ConsentGranted struct {
	FarmerID       string   `json:"farmer_id" validate:"required,uuidlower"`
	ConsentID      string   `json:"consent_id" validate:"required,uuidlower"`
	GranteeOrgID   string   `json:"grantee_organization_id" validate:"required,uuidlower"`
	Scopes         []string `json:"scopes" validate:"required,min=1,unique,dive,consentscope"`
	ExpiresAt      string   `json:"expires_at" validate:"required,datetime=2006-01-02T15:04:05Z07:00"`
	OTPChallengeID string   `json:"otp_challenge_id" validate:"required,uuidlower"`
	OTPCode        string   `json:"otp_code" validate:"required,len=6,numeric"`
}

// ConsentRevoked ends a consent.
type ConsentRevoked struct {
	FarmerID  string `json:"farmer_id" validate:"required,uuidlower"`
	ConsentID string `json:"consent_id" validate:"required,uuidlower"`
	Reason    string `json:"reason,omitempty" validate:"max=500"`
}

// ConsentRefused records that the farmer refused an organization's
// consent request (ConsentID is the request's id): the request is
// answered, and nothing may be read. It is captured on the phone like a
// grant, offline if need be, and needs no one-time code: refusing gives
// nothing away.
type ConsentRefused struct {
	FarmerID     string `json:"farmer_id" validate:"required,uuidlower"`
	ConsentID    string `json:"consent_id" validate:"required,uuidlower"`
	GranteeOrgID string `json:"grantee_organization_id" validate:"required,uuidlower"`
	Reason       string `json:"reason,omitempty" validate:"max=500"`
}

// LoanApplied is an application for a loan that an agent makes with the
// farmer, for one of a bank's open products (lending's public view
// lending.product_catalogue). LoanID is chosen on the phone, so that the
// agent can follow the loan offline; the bank decides it.
type LoanApplied struct {
	FarmerID  string `json:"farmer_id" validate:"required,uuidlower"`
	LoanID    string `json:"loan_id" validate:"required,uuidlower"`
	ProductID string `json:"product_id" validate:"required,uuidlower"`
	Amount    Money  `json:"amount" validate:"required"`
	Purpose   string `json:"purpose" validate:"required,min=1,max=200"`
}

// LoanAccepted is the farmer's acceptance of a loan offer. The one-time
// code was sent to the farmer's phone together with the offer's terms,
// and TermsSHA256 names those exact terms: an offer changed since cannot
// be accepted with it.
type LoanAccepted struct {
	FarmerID       string `json:"farmer_id" validate:"required,uuidlower"`
	LoanID         string `json:"loan_id" validate:"required,uuidlower"`
	TermsSHA256    string `json:"terms_sha256" validate:"required,sha256hex"`
	OTPChallengeID string `json:"otp_challenge_id" validate:"required,uuidlower"`
	OTPCode        string `json:"otp_code" validate:"required,len=6,numeric"`
}

// RepaymentCollected is cash an agent collected from the farmer towards a
// loan. PayerReference is the receipt the agent wrote for the farmer: the
// loan's repayments are idempotent by it.
type RepaymentCollected struct {
	FarmerID       string `json:"farmer_id" validate:"required,uuidlower"`
	LoanID         string `json:"loan_id" validate:"required,uuidlower"`
	Amount         Money  `json:"amount" validate:"required"`
	PayerReference string `json:"payer_reference" validate:"required,min=1,max=64,printascii"`
	CollectedOn    string `json:"collected_on" validate:"required,datetime=2006-01-02"`
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
	Coordinates [][][2]float64 `json:"coordinates" validate:"required,min=1,max=20,dive,min=4,max=5000"` // MaxRings, MaxRingPositions
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

// date parses a validated YYYY-MM-DD.
func date(s string) time.Time {
	t, _ := time.Parse(time.DateOnly, s)
	return t
}

// Payload is a checked payload: one of the payload structs, as a pointer.
// Every payload names the farmer it is about (authorization and erasure
// are per farmer); Plot and Crop are empty for payloads about no plot or
// crop.
type Payload interface {
	Farmer() string
	Plot() string
	Crop() string
}

func (p *FarmerRegistered) Farmer() string { return p.FarmerID }
func (p *FarmerRegistered) Plot() string   { return "" }
func (p *FarmerRegistered) Crop() string   { return "" }

func (p *PlotMapped) Farmer() string { return p.FarmerID }
func (p *PlotMapped) Plot() string   { return p.PlotID }
func (p *PlotMapped) Crop() string   { return "" }

func (p *CropPlanted) Farmer() string { return p.FarmerID }
func (p *CropPlanted) Plot() string   { return p.PlotID }
func (p *CropPlanted) Crop() string   { return p.CropCode }

func (p *InputApplied) Farmer() string { return p.FarmerID }
func (p *InputApplied) Plot() string   { return p.PlotID }
func (p *InputApplied) Crop() string   { return "" }

func (p *HarvestRecorded) Farmer() string { return p.FarmerID }
func (p *HarvestRecorded) Plot() string   { return p.PlotID }
func (p *HarvestRecorded) Crop() string   { return p.CropCode }

func (p *SaleRecorded) Farmer() string { return p.FarmerID }
func (p *SaleRecorded) Plot() string   { return "" }
func (p *SaleRecorded) Crop() string   { return p.CropCode }

func (p *ConsentGranted) Farmer() string { return p.FarmerID }
func (p *ConsentGranted) Plot() string   { return "" }
func (p *ConsentGranted) Crop() string   { return "" }

func (p *ConsentRevoked) Farmer() string { return p.FarmerID }
func (p *ConsentRevoked) Plot() string   { return "" }
func (p *ConsentRevoked) Crop() string   { return "" }

func (p *ConsentRefused) Farmer() string { return p.FarmerID }
func (p *ConsentRefused) Plot() string   { return "" }
func (p *ConsentRefused) Crop() string   { return "" }

func (p *LoanApplied) Farmer() string { return p.FarmerID }
func (p *LoanApplied) Plot() string   { return "" }
func (p *LoanApplied) Crop() string   { return "" }

func (p *LoanAccepted) Farmer() string { return p.FarmerID }
func (p *LoanAccepted) Plot() string   { return "" }
func (p *LoanAccepted) Crop() string   { return "" }

func (p *RepaymentCollected) Farmer() string { return p.FarmerID }
func (p *RepaymentCollected) Plot() string   { return "" }
func (p *RepaymentCollected) Crop() string   { return "" }
