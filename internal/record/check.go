package record

import (
	"crypto/ed25519"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/validate"
)

// newPayload returns an empty payload of type t, or nil if t is unknown.
func newPayload(t Type) Payload {
	switch t {
	case TypeFarmerRegistered:
		return &FarmerRegistered{}
	case TypePlotMapped:
		return &PlotMapped{}
	case TypeCropPlanted:
		return &CropPlanted{}
	case TypeInputApplied:
		return &InputApplied{}
	case TypeHarvestRecorded:
		return &HarvestRecorded{}
	case TypeSaleRecorded:
		return &SaleRecorded{}
	case TypeConsentGranted:
		return &ConsentGranted{}
	case TypeConsentRevoked:
		return &ConsentRevoked{}
	case TypeConsentRefused:
		return &ConsentRefused{}
	case TypeLoanApplied:
		return &LoanApplied{}
	case TypeLoanAccepted:
		return &LoanAccepted{}
	case TypeRepaymentCollected:
		return &RepaymentCollected{}
	case TypeOrderPlaced:
		return &OrderPlaced{}
	case TypeDeliveryConfirmed:
		return &DeliveryConfirmed{}
	}
	return nil
}

// Record is a record read the one way Tani reads records: strictly, once,
// into its RFC 8785 canonical form, with the typed envelope and payload
// read back from those canonical bytes. The canonical bytes are what is
// signed, hashed, published, stored and journaled, so every step that
// reads a Record (mobile-api's checks, ingest, attest) reads the same
// record.
type Record struct {
	Env Envelope
	// Payload is the typed payload (a pointer to one of the payload
	// structs), set by CheckPayload.
	Payload Payload
	// Canonical is the record in RFC 8785 form. Env.Payload is its
	// payload member, byte for byte.
	Canonical []byte
	// unsigned is the span of Canonical to cut out (the signature member
	// and one comma) to get the signing input.
	unsigned [2]int
	// payload is the payload as Decode parsed it, so that CheckPayload
	// does not parse it again; CheckPayload drops it. Keys are in
	// canonical order, so it is the tree Env.Payload parses to.
	payload *value
}

// Decode reads a record strictly and checks its envelope: everything that
// is cheap and needs no key. Refused: a record over MaxRecordBytes, JSON
// that two readers could read differently (duplicate keys, keys differing
// only in letter case, numbers canonical JSON cannot carry exactly,
// invalid UTF-8, lone surrogates), control characters in any string,
// unknown members, wrong types, and envelope values out of their rules.
// The payload is not looked at beyond its being an object: check the
// signature (Verify) before spending time on it (CheckPayload).
func Decode(v *validate.Validator, raw []byte, now time.Time) (Record, []apperr.FieldError) {
	var r Record
	if len(raw) > MaxRecordBytes {
		return r, []apperr.FieldError{{Field: "body", Message: fmt.Sprintf("is %d bytes; a record may be at most %d", len(raw), MaxRecordBytes)}}
	}
	root, perr := parseObject(raw)
	if perr != nil {
		return r, []apperr.FieldError{*perr}
	}
	// Written member by member to remember where each value and the
	// signature member are.
	b := make([]byte, 0, len(raw))
	b = append(b, '{')
	spans := make([][2]int, len(root.kids))
	for i := range root.kids {
		m := &root.kids[i]
		start := len(b)
		if i > 0 {
			b = append(b, ',')
		}
		key := len(b)
		b = appendString(b, m.key)
		b = append(b, ':')
		spans[i][0] = len(b)
		b = appendCanonical(b, &m.val)
		spans[i][1] = len(b)
		if m.key == "signature" {
			r.unsigned = [2]int{start, len(b)} // the comma before it with it
			if i == 0 && len(root.kids) > 1 {
				r.unsigned = [2]int{key, len(b) + 1} // the comma after it
			}
		}
	}
	r.Canonical = append(b, '}')
	d := typedDecoder{raw: func(val *value) []byte {
		for i := range root.kids {
			if &root.kids[i].val == val {
				return r.Canonical[spans[i][0]:spans[i][1]:spans[i][1]]
			}
		}
		return appendCanonical(nil, val)
	}}
	d.decode(&root, reflect.ValueOf(&r.Env).Elem())
	if len(d.errs) > 0 {
		return r, d.errs
	}
	for i := range root.kids {
		if root.kids[i].key == "payload" {
			r.payload = &root.kids[i].val
		}
	}
	if err := v.Validate(&r.Env); err != nil {
		return r, fieldsOf(err, "")
	}
	var problems []apperr.FieldError
	if !KnownType(r.Env.Type) {
		problems = append(problems, apperr.FieldError{Field: "type", Message: "must be one of: " + strings.Join(TypeNames(), " ")})
	}
	switch captured := r.Env.Captured(); {
	case captured.After(now.Add(MaxClockSkew)):
		problems = append(problems, apperr.FieldError{Field: "captured_at", Message: "is in the future"})
	case captured.Before(EarliestCapture):
		problems = append(problems, apperr.FieldError{Field: "captured_at", Message: "must not be before " + EarliestCapture.Format(time.RFC3339)})
	}
	return r, problems
}

// Verify checks the record's device signature: Ed25519 by pub over the
// canonical record without its signature member (see verify.go for the
// rule; Keys.Verify checks many at once).
func (r *Record) Verify(pub ed25519.PublicKey) error {
	return verifySignature(pub, r.SigningInput(), r.Env.Signature)
}

// SigningInput is what the device signed: the canonical record without its
// signature member. RFC 8785 is compositional, so that is the canonical
// bytes with the member (and one comma) cut out.
func (r *Record) SigningInput() []byte {
	if r.unsigned == [2]int{} {
		return r.Canonical
	}
	return slices.Concat(r.Canonical[:r.unsigned[0]], r.Canonical[r.unsigned[1]:])
}

// CheckPayload reads the payload of a decoded record from its canonical
// bytes into the type's struct and checks it: field rules, then the domain
// rules (dates in range, plot geometry). It sets r.Payload when nothing is
// wrong. Problems are named relative to the record ("payload.boundary…").
func (r *Record) CheckPayload(v *validate.Validator, now time.Time) []apperr.FieldError {
	payload := newPayload(r.Env.Type)
	if payload == nil {
		return []apperr.FieldError{{Field: "type", Message: "must be one of: " + strings.Join(TypeNames(), " ")}}
	}
	var root value
	if r.payload != nil {
		root, r.payload = *r.payload, nil
	} else {
		var perr *apperr.FieldError
		if root, perr = parseObject(r.Env.Payload); perr != nil {
			field := "payload"
			if perr.Field != "body" {
				field += "." + perr.Field
			}
			return []apperr.FieldError{{Field: field, Message: perr.Message}}
		}
	}
	d := typedDecoder{path: []pathElem{{key: "payload", index: -1}}}
	d.decode(&root, reflect.ValueOf(payload).Elem())
	if len(d.errs) > 0 {
		return d.errs
	}
	if err := v.Validate(payload); err != nil {
		return fieldsOf(err, "payload.")
	}
	var problems []apperr.FieldError
	for _, p := range domainProblems(payload, r.Env, now) {
		problems = append(problems, apperr.FieldError{Field: "payload." + p.Field, Message: p.Message})
	}
	if len(problems) > 0 {
		return problems
	}
	r.Payload = payload
	return nil
}

// Check is Decode and CheckPayload, for readers that check the signature
// later or not at all (ingest and attest check it against the device
// registry themselves).
func Check(v *validate.Validator, raw []byte, now time.Time) (Record, []apperr.FieldError) {
	r, problems := Decode(v, raw, now)
	if len(problems) > 0 {
		return r, problems
	}
	return r, r.CheckPayload(v, now)
}

// Ranges of the times in a record. Besides plausibility they keep every
// value inside what Postgres and the journal store: Postgres has no year
// 0, and the journal refuses the zero time.
var (
	// EarliestCapture is the earliest captured_at accepted.
	EarliestCapture = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	// EarliestDate is the earliest business date (planting, harvest, sale…).
	EarliestDate = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
)

// MaxYearsAhead bounds the dates that may lie in the future: an expected
// harvest after planting, a consent's expiry after capture.
const MaxYearsAhead = 10

// MaxConsentDays is the longest a consent may last: the farmer
// reconfirms it after that (a consent.granted record's expires_at is at
// most this many days after its captured_at).
const MaxConsentDays = 180

// domainProblems are the rules of each type that tags cannot express.
func domainProblems(payload Payload, env Envelope, now time.Time) []apperr.FieldError {
	var out []apperr.FieldError
	add := func(field, format string, args ...any) {
		out = append(out, apperr.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	today := now.UTC().Truncate(24 * time.Hour)
	// past is a date that happened: not before EarliestDate, not after
	// tomorrow (the device may be a time zone ahead).
	past := func(field, day string) bool {
		switch d := date(day); {
		case d.Before(EarliestDate):
			add(field, "must not be before %s", EarliestDate.Format(time.DateOnly))
		case d.After(today.AddDate(0, 0, 1)):
			add(field, "is in the future")
		default:
			return true
		}
		return false
	}
	mass := func(field string, q Quantity) {
		if _, ok := q.Kg(); !ok {
			add(field+".unit", "must be a mass (kg, g, t, quintal)")
		}
	}
	switch p := payload.(type) {
	case *FarmerRegistered:
		if y := now.Year(); p.BirthYear > y-10 {
			add("birth_year", "must be at least 10 years ago")
		}
	case *PlotMapped:
		out = append(out, checkPolygon(p.Boundary, "boundary")...)
		if _, ok := p.DeclaredArea.Ha(); !ok {
			add("declared_area.unit", "must be an area (ha, m2, are, acre, bau)")
		}
	case *CropPlanted:
		if past("planted_on", p.PlantedOn) {
			planted, expected := date(p.PlantedOn), date(p.ExpectedHarvestOn)
			switch {
			case !expected.After(planted):
				add("expected_harvest_on", "must be after planted_on")
			case expected.After(planted.AddDate(MaxYearsAhead, 0, 0)):
				add("expected_harvest_on", "must be within %d years of planted_on", MaxYearsAhead)
			}
		}
	case *InputApplied:
		past("applied_on", p.AppliedOn)
	case *HarvestRecorded:
		past("harvested_on", p.HarvestedOn)
		mass("quantity", p.Quantity)
	case *SaleRecorded:
		past("sold_on", p.SoldOn)
		mass("quantity", p.Quantity)
	case *RepaymentCollected:
		past("collected_on", p.CollectedOn)
	case *ConsentGranted:
		exp, _ := time.Parse(time.RFC3339, p.ExpiresAt)
		switch captured := env.Captured(); {
		case !exp.After(captured):
			add("expires_at", "must be after captured_at")
		case exp.After(captured.Add(MaxConsentDays * 24 * time.Hour)):
			add("expires_at", "must be at most %d days after captured_at: a consent is reconfirmed after that", MaxConsentDays)
		}
	case *OrderPlaced:
		for _, fp := range orderProblems(p) {
			add(fp.field, "%s", fp.message)
		}
	case *DeliveryConfirmed:
		past("received_on", p.ReceivedOn)
		for _, fp := range deliveryProblems(p) {
			add(fp.field, "%s", fp.message)
		}
	}
	return out
}

func fieldsOf(err error, prefix string) []apperr.FieldError {
	e, ok := apperr.As(err)
	if !ok || len(e.Fields) == 0 {
		field := strings.TrimSuffix(prefix, ".")
		if field == "" {
			field = "body"
		}
		return []apperr.FieldError{{Field: field, Message: err.Error()}}
	}
	out := make([]apperr.FieldError, len(e.Fields))
	for i, f := range e.Fields {
		field := f.Field
		if field == "body" && prefix != "" {
			field = strings.TrimSuffix(prefix, ".")
		} else if field != "body" {
			field = prefix + field
		}
		out[i] = apperr.FieldError{Field: field, Message: f.Message}
	}
	return out
}
