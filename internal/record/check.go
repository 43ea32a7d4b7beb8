package record

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/validate"
)

// newPayload returns an empty payload of type t, or nil if t is unknown.
func newPayload(t string) any {
	switch t {
	case "farmer.registered":
		return &FarmerRegistered{}
	case "plot.mapped":
		return &PlotMapped{}
	case "crop.planted":
		return &CropPlanted{}
	case "input.applied":
		return &InputApplied{}
	case "harvest.recorded":
		return &HarvestRecorded{}
	case "sale.recorded":
		return &SaleRecorded{}
	case "consent.granted":
		return &ConsentGranted{}
	case "consent.revoked":
		return &ConsentRevoked{}
	}
	return nil
}

// Check decodes and validates a record: the envelope, then the payload of
// its type, then the domain rules tags cannot say. It returns the typed
// payload (a pointer to one of the payload structs) or every problem found,
// as field errors relative to the record ("payload.boundary…").
func Check(v *validate.Validator, raw []byte, now time.Time) (Envelope, any, []apperr.FieldError) {
	var env Envelope
	if err := validate.Unmarshal(bytes.NewReader(raw), &env); err != nil {
		return env, nil, fieldsOf(err, "")
	}
	if err := v.Validate(&env); err != nil {
		return env, nil, fieldsOf(err, "")
	}
	var problems []apperr.FieldError
	if env.Captured().After(now.Add(MaxClockSkew)) {
		problems = append(problems, apperr.FieldError{Field: "captured_at", Message: "is in the future"})
	}
	payload := newPayload(env.Type)
	if payload == nil {
		problems = append(problems, apperr.FieldError{Field: "type", Message: "must be one of: " + strings.Join(Types, " ")})
		return env, nil, problems
	}
	if err := validate.Unmarshal(bytes.NewReader(env.Payload), payload); err != nil {
		return env, nil, append(problems, fieldsOf(err, "payload.")...)
	}
	if err := v.Validate(payload); err != nil {
		return env, nil, append(problems, fieldsOf(err, "payload.")...)
	}
	for _, p := range domainProblems(payload, env, now) {
		problems = append(problems, apperr.FieldError{Field: "payload." + p.Field, Message: p.Message})
	}
	if len(problems) > 0 {
		return env, nil, problems
	}
	return env, payload, nil
}

// domainProblems are the rules of each type that tags cannot express.
func domainProblems(payload any, env Envelope, now time.Time) []apperr.FieldError {
	var out []apperr.FieldError
	add := func(field, format string, args ...any) {
		out = append(out, apperr.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	today := now.UTC().Truncate(24 * time.Hour)
	notFuture := func(field, day string) {
		if date(day).After(today.AddDate(0, 0, 1)) {
			add(field, "is in the future")
		}
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
		for _, problem := range checkPolygon(p.Boundary) {
			field, msg, _ := strings.Cut(problem, ": ")
			add(field, "%s", msg)
		}
		if _, ok := p.DeclaredArea.Ha(); !ok {
			add("declared_area.unit", "must be an area (ha, m2, are, acre, bau)")
		}
	case *CropPlanted:
		notFuture("planted_on", p.PlantedOn)
		if !date(p.ExpectedHarvestOn).After(date(p.PlantedOn)) {
			add("expected_harvest_on", "must be after planted_on")
		}
	case *InputApplied:
		notFuture("applied_on", p.AppliedOn)
	case *HarvestRecorded:
		notFuture("harvested_on", p.HarvestedOn)
		mass("quantity", p.Quantity)
	case *SaleRecorded:
		notFuture("sold_on", p.SoldOn)
		mass("quantity", p.Quantity)
	case *ConsentGranted:
		exp, _ := time.Parse(time.RFC3339, p.ExpiresAt)
		if !exp.After(env.Captured()) {
			add("expires_at", "must be after captured_at")
		}
	}
	return out
}

// FarmerID returns whom a checked payload is about.
func FarmerID(payload any) string {
	switch p := payload.(type) {
	case *FarmerRegistered:
		return p.FarmerID
	case *PlotMapped:
		return p.FarmerID
	case *CropPlanted:
		return p.FarmerID
	case *InputApplied:
		return p.FarmerID
	case *HarvestRecorded:
		return p.FarmerID
	case *SaleRecorded:
		return p.FarmerID
	case *ConsentGranted:
		return p.FarmerID
	case *ConsentRevoked:
		return p.FarmerID
	}
	return ""
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
