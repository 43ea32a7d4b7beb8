// Package validate decodes JSON strictly and checks structs against their
// validate tags, reporting problems as field errors named in the client's
// JSON terms. It is shared by HTTP handlers and message consumers, so it
// must never depend on a transport.
package validate

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/go-playground/validator/v10"

	"github.com/tani-platform/tani/internal/apperr"
)

// Unmarshal decodes one JSON value from r strictly into v, with the same
// errors as DecodeJSON.
func Unmarshal(r io.Reader, v any) error {
	rr := &readErrRecorder{r: r}
	dec := json.NewDecoder(rr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if rr.err != nil { // the reader failed, not the JSON
			return readError(rr.err)
		}
		return jsonError(err)
	}
	if dec.More() {
		return apperr.Fields("body must hold exactly one JSON value", apperr.FieldError{Field: "body", Message: "unexpected data after the JSON value"})
	}
	return nil
}

// jsonError turns encoding/json's errors into field errors.
func jsonError(err error) error {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return apperr.Fields("body is empty", apperr.FieldError{Field: "body", Message: "a JSON object is required"})
	case errors.As(err, &syntax):
		return apperr.Fields("malformed JSON", apperr.FieldError{Field: "body", Message: fmt.Sprintf("syntax error at byte %d: %v", syntax.Offset, syntax)})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.Fields("malformed JSON", apperr.FieldError{Field: "body", Message: "unexpected end of JSON"})
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return apperr.Fields("wrong type", apperr.FieldError{Field: field, Message: fmt.Sprintf("must be %s, not %s", jsonKind(typeErr.Type), typeErr.Value)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return apperr.Fields("unknown field", apperr.FieldError{Field: name, Message: "unknown field"})
	}
	return apperr.Fields("malformed JSON", apperr.FieldError{Field: "body", Message: err.Error()})
}

// readErrRecorder remembers the first error of the underlying reader, so a
// failed read (client gone, body limit) is told apart from bad JSON.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (rr *readErrRecorder) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil && err != io.EOF && rr.err == nil {
		rr.err = err
	}
	return n, err
}

// readError classifies a failed read: too large is the client's fault;
// anything else is returned as is, for the transport to judge.
func readError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return apperr.Errorf(apperr.TooLarge, "body exceeds %d bytes", tooLarge.Limit)
	}
	return fmt.Errorf("read JSON: %w", err)
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// Validator adapts go-playground/validator to Tani's field errors, naming
// fields by their JSON names. It also satisfies echo.Validator.
type Validator struct{ v *validator.Validate }

// New returns a validator that reports JSON field names and knows Tani's
// own rules (crop, sha256hex, uuidlower).
func New() *Validator {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name := strings.SplitN(f.Tag.Get("json"), ",", 2)[0]
		if name == "-" {
			return ""
		}
		if name == "" {
			return f.Name
		}
		return name
	})
	v.RegisterValidation("sha256hex", func(fl validator.FieldLevel) bool {
		s := fl.Field().String()
		b, err := hex.DecodeString(s)
		return err == nil && len(b) == 32 && s == strings.ToLower(s)
	})
	v.RegisterValidation("uuidlower", func(fl validator.FieldLevel) bool { return LowerUUID(fl.Field().String()) })
	// The same rule as the library's base64 (a regular expression), for a
	// tag every record's signature carries: checked by hand it costs a
	// fraction.
	v.RegisterValidation("base64", func(fl validator.FieldLevel) bool { return StdBase64(fl.Field().String()) })
	v.RegisterValidation("crop", func(fl validator.FieldLevel) bool {
		return slices.Contains(Crops, fl.Field().String())
	})
	v.RegisterValidation("consentscope", func(fl validator.FieldLevel) bool {
		return slices.Contains(ConsentScopes, fl.Field().String())
	})
	return &Validator{v: v}
}

// LowerUUID reports whether s is a UUID in its canonical text form (RFC
// 9562: lowercase hex, hyphens at 8-4-4-4-12) other than the nil UUID.
// Record ids are compared as text in signed records and as uuid in
// Postgres, which prints lowercase: only the canonical form compares
// equal in both.
func LowerUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	zero := true
	for i := range len(s) {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f':
			zero = zero && c == '0'
		default:
			return false
		}
	}
	return !zero
}

// Crops are the crops Tani has thresholds for (the "crop" rule).
var Crops = []string{"rice", "maize", "coffee", "cocoa", "oil_palm", "cassava", "soybean", "groundnut", "chili", "shallot", "vegetables", "other"}

// ConsentScopes are what a farmer's consent may cover (the
// "consentscope" rule): the kinds of their data, plus credit (their score
// and loans) and orders (their input orders and deliveries).
var ConsentScopes = []string{"identity", "plots", "crops", "inputs", "harvests", "sales", "credit", "orders"}

// Engine exposes the underlying validator, for registering custom rules.
func (v *Validator) Engine() *validator.Validate { return v.v }

// Validate checks v's `validate` tags. Failures are an Invalid error listing
// every field at fault, with paths relative to v (e.g. "records[2].id").
func (v *Validator) Validate(i any) error {
	err := v.v.Struct(i)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return fmt.Errorf("validate: %w", err)
	}
	fields := make([]apperr.FieldError, 0, len(verrs))
	for _, fe := range verrs {
		fields = append(fields, apperr.FieldError{Field: fieldPath(fe.Namespace()), Message: message(fe)})
	}
	return apperr.Fields("invalid input", fields...)
}

// fieldPath drops the top-level struct name validator puts first.
func fieldPath(ns string) string {
	if i := strings.IndexByte(ns, '.'); i >= 0 {
		return ns[i+1:]
	}
	return ns
}

func message(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min":
		if fe.Kind() == reflect.Slice || fe.Kind() == reflect.Map {
			return "must have at least " + fe.Param() + " items"
		}
		if fe.Kind() == reflect.String {
			return "must be at least " + fe.Param() + " characters"
		}
		return "must be at least " + fe.Param()
	case "max":
		if fe.Kind() == reflect.Slice || fe.Kind() == reflect.Map {
			return "must have at most " + fe.Param() + " items"
		}
		if fe.Kind() == reflect.String {
			return "must be at most " + fe.Param() + " characters"
		}
		return "must be at most " + fe.Param()
	case "gte":
		return "must be ≥ " + fe.Param()
	case "lte":
		return "must be ≤ " + fe.Param()
	case "gt":
		return "must be > " + fe.Param()
	case "lt":
		return "must be < " + fe.Param()
	case "oneof":
		return "must be one of: " + fe.Param()
	case "uuid", "uuid4":
		return "must be a UUID"
	case "uuidlower":
		return "must be a lowercase UUID such as 0d9c3a4e-5b7f-4c1e-9a2b-3c4d5e6f7a8b, not the nil UUID"
	case "len":
		return "must have length " + fe.Param()
	case "datetime":
		return "must be an RFC 3339 time such as 2026-03-01T08:30:00+07:00"
	case "sha256hex":
		return "must be a lowercase hex SHA-256"
	case "crop":
		return "must be one of: " + strings.Join(Crops, " ")
	case "consentscope":
		return "must be one of: " + strings.Join(ConsentScopes, " ")
	case "e164":
		return "must be a phone number in E.164 form such as +6281234567890"
	case "base64":
		return "must be base64"
	case "eq":
		return "must be " + fe.Param()
	case "unique":
		return "must not repeat values"
	case "alphanum":
		return "must contain only letters and digits"
	case "numeric":
		return "must contain only digits"
	case "email":
		return "must be an email address"
	case "iso4217":
		return "must be an ISO 4217 currency code"
	case "latitude":
		return "must be a latitude between -90 and 90"
	case "longitude":
		return "must be a longitude between -180 and 180"
	}
	if fe.Param() != "" {
		return fmt.Sprintf("fails %s=%s", fe.Tag(), fe.Param())
	}
	return "fails " + fe.Tag()
}

// StdBase64 reports whether s is non-empty padded standard base64: groups
// of four characters of A–Z, a–z, 0–9, + and /, the last ending in one or
// two '=' when the bytes do not fill it. It accepts exactly what
// go-playground/validator's base64 expression does.
func StdBase64(s string) bool {
	n := len(s)
	if n == 0 || n%4 != 0 {
		return false
	}
	pad := 0
	if s[n-1] == '=' {
		pad = 1
		if s[n-2] == '=' {
			pad = 2
		}
	}
	for i := range n - pad {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
