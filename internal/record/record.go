package record

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/gowebpki/jcs"
)

// Type is a record type: what a record says happened. It is the last
// element of the record's subjects (farm.submitted.<type>) and the kind of
// its journal entries.
type Type string

// The record types a device may submit.
const (
	TypeFarmerRegistered Type = "farmer.registered"
	TypePlotMapped       Type = "plot.mapped"
	TypeCropPlanted      Type = "crop.planted"
	TypeInputApplied     Type = "input.applied"
	TypeHarvestRecorded  Type = "harvest.recorded"
	TypeSaleRecorded     Type = "sale.recorded"
	TypeConsentGranted   Type = "consent.granted"
	TypeConsentRevoked   Type = "consent.revoked"
	TypeConsentRefused   Type = "consent.refused"
	// Loans (services/lending acts on them once attested): an agent's
	// application for the farmer, the farmer's acceptance of an offer by a
	// one-time code, and cash an agent collected towards a loan.
	TypeLoanApplied        Type = "loan.applied"
	TypeLoanAccepted       Type = "loan.accepted"
	TypeRepaymentCollected Type = "repayment.collected"
	// Marketplace records (orders.go).
	TypeOrderPlaced       Type = "order.placed"
	TypeDeliveryConfirmed Type = "delivery.confirmed"
)

// Types are the record types a device may submit.
var Types = []Type{
	TypeFarmerRegistered,
	TypePlotMapped,
	TypeCropPlanted,
	TypeInputApplied,
	TypeHarvestRecorded,
	TypeSaleRecorded,
	TypeConsentGranted,
	TypeConsentRevoked,
	TypeConsentRefused,
	TypeLoanApplied,
	TypeLoanAccepted,
	TypeRepaymentCollected,
	TypeOrderPlaced,
	TypeDeliveryConfirmed,
}

// KnownType reports whether t is one of Types.
func KnownType[T ~string](t T) bool { return slices.Contains(Types, Type(t)) }

// MaxClockSkew is how far in the future a device clock may run before its
// captured_at is refused.
const MaxClockSkew = 5 * time.Minute

// Envelope is one record as captured and signed on a device. ID is the
// client-made UUID that makes every retry idempotent end to end; Signature
// is the device's Ed25519 signature over SigningInput.
type Envelope struct {
	ID         string          `json:"id" validate:"required,uuidlower"`
	Type       Type            `json:"type" validate:"required"`
	CapturedAt string          `json:"captured_at" validate:"required,datetime=2006-01-02T15:04:05Z07:00"`
	DeviceID   string          `json:"device_id" validate:"required,uuidlower"`
	Location   *Location       `json:"location" validate:"required"`
	Payload    json.RawMessage `json:"payload" validate:"required"`
	Signature  string          `json:"signature,omitempty" validate:"required,base64"`
}

// Location is where the device was when the record was captured, as its
// GPS reported it. Mock is Android's mock-location flag.
type Location struct {
	Lat       *float64 `json:"lat" validate:"required,latitude"`
	Lon       *float64 `json:"lon" validate:"required,longitude"`
	AccuracyM float64  `json:"accuracy_m" validate:"gte=0,lte=100000"`
	Mock      bool     `json:"mock"`
}

// Captured is when the record was captured. It is only meaningful on a
// validated envelope (the datetime rule guarantees RFC 3339).
func (e Envelope) Captured() time.Time {
	t, _ := time.Parse(time.RFC3339, e.CapturedAt)
	return t
}

// Canonical returns the RFC 8785 canonical JSON of raw, so the same record
// hashes the same however a device serialized it. It takes any JSON that
// RFC 8785 can canonicalize (devices sign with it); a record arriving at
// Tani is read with Decode, whose canonical bytes are the same for every
// record it accepts (FuzzCanonical) but which refuses far more.
func Canonical(raw []byte) ([]byte, error) {
	c, err := jcs.Transform(raw)
	if err != nil {
		return nil, fmt.Errorf("canonicalize record: %w", err)
	}
	return c, nil
}

// Hash is the SHA-256 of canonical bytes: the record's content identity.
func Hash(canonical []byte) [32]byte { return sha256.Sum256(canonical) }

// TypeNames lists Types as strings, for messages.
func TypeNames() []string {
	out := make([]string, len(Types))
	for i, t := range Types {
		out[i] = string(t)
	}
	return out
}
