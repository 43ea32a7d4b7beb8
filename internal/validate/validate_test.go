package validate_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/validate"
)

type batch struct {
	Count   int      `json:"count"`
	Records []record `json:"records"`
}

type record struct {
	ID      string `json:"id"`
	Payload struct {
		Hectares float64 `json:"hectares"`
	} `json:"payload"`
}

// fields returns the field errors of an Invalid error, failing otherwise.
func fields(t *testing.T, err error) []apperr.FieldError {
	t.Helper()
	e, ok := apperr.As(err)
	if !ok || e.Code != apperr.Invalid {
		t.Fatalf("err = %v, want an invalid error with field errors", err)
	}
	return e.Fields
}

func TestUnmarshal(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		var b batch
		if err := validate.Unmarshal(strings.NewReader(`{"count":2,"records":[{"id":"a"},{"id":"b","payload":{"hectares":0.5}}]}`), &b); err != nil {
			t.Fatal(err)
		}
		if b.Count != 2 || len(b.Records) != 2 || b.Records[1].Payload.Hectares != 0.5 {
			t.Errorf("decoded %+v", b)
		}
	})
	for name, c := range map[string]struct {
		body  string
		field string
		msg   string // a substring of the field's message
	}{
		"ErrEmpty":          {``, "body", "a JSON object is required"},
		"ErrSyntax":         {`{"count":2,}`, "body", "syntax error at byte 12"},
		"ErrTruncated":      {`{"count":`, "body", "unexpected end of JSON"},
		"ErrUnknownField":   {`{"count":1,"cuont":2}`, "cuont", "unknown field"},
		"ErrWrongType":      {`{"count":"two"}`, "count", "must be an integer, not string"},
		"ErrWrongTypeArray": {`{"records":{}}`, "records", "must be an array, not object"},
		"ErrNestedType":     {`{"records":[{"id":"a"},{"id":"b","payload":{"hectares":"half"}}]}`, "records.payload.hectares", "must be a number, not string"},
		"ErrNotAnObject":    {`[1,2]`, "body", "must be an object, not array"},
		"ErrTrailingData":   {`{"count":1} {"count":2}`, "body", "unexpected data after the JSON value"},
	} {
		t.Run(name, func(t *testing.T) {
			var b batch
			got := fields(t, validate.Unmarshal(strings.NewReader(c.body), &b))
			if len(got) != 1 || got[0].Field != c.field || !strings.Contains(got[0].Message, c.msg) {
				t.Errorf("got %+v, want one error on %q containing %q", got, c.field, c.msg)
			}
		})
	}
	t.Run("ErrTooLarge", func(t *testing.T) {
		rec := httptest.NewRecorder()
		body := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(`{"count":1234567890}`)), 8)
		var b batch
		if err := validate.Unmarshal(body, &b); !apperr.Is(err, apperr.TooLarge) {
			t.Errorf("err = %v, want too_large", err)
		}
	})
	t.Run("ErrReaderFailed_NotBlamedOnTheClient", func(t *testing.T) {
		broken := errors.New("connection reset")
		var b batch
		err := validate.Unmarshal(io.MultiReader(strings.NewReader(`{"count":`), failingReader{broken}), &b)
		if !errors.Is(err, broken) || apperr.Is(err, apperr.Invalid) {
			t.Errorf("err = %v, want the read error itself, not invalid input", err)
		}
	})
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

type farmer struct {
	Name  string   `json:"name" validate:"required,min=2,max=10"`
	Kind  string   `json:"kind" validate:"oneof=owner tenant"`
	ID    string   `json:"id" validate:"omitempty,uuid"`
	Crop  string   `json:"crop" validate:"omitempty,crop"`
	Photo string   `json:"photo_sha256" validate:"omitempty,sha256hex"`
	Plots []plot   `json:"plots" validate:"max=2,dive"`
	Tags  []string `json:"tags" validate:"omitempty,min=1"`
	NoTag int      `validate:"gte=1"`
}

type plot struct {
	ID       string  `json:"id" validate:"required,uuid"`
	Hectares float64 `json:"hectares" validate:"gt=0,lte=1000"`
}

func validFarmer() farmer {
	return farmer{
		Name: "Siti", Kind: "owner", ID: "3f1c0a52-7a8e-4c1e-9a53-0f3f5b1c2d4e", Crop: "rice",
		Photo: strings.Repeat("ab", 32),
		Plots: []plot{{ID: "9b2d6c1e-1f3a-4b5c-8d7e-6f5a4b3c2d1e", Hectares: 0.4}},
		NoTag: 1,
	}
}

func TestValidator(t *testing.T) {
	v := validate.New()
	t.Run("OK", func(t *testing.T) {
		if err := v.Validate(validFarmer()); err != nil {
			t.Errorf("a valid farmer: %v", err)
		}
	})
	for name, c := range map[string]struct {
		change func(*farmer)
		want   []apperr.FieldError
	}{
		"ErrRequired":  {func(f *farmer) { f.Name = "" }, []apperr.FieldError{{Field: "name", Message: "is required"}}},
		"ErrMinString": {func(f *farmer) { f.Name = "S" }, []apperr.FieldError{{Field: "name", Message: "must be at least 2 characters"}}},
		"ErrMaxString": {func(f *farmer) { f.Name = "Siti Rahayu Wulandari" }, []apperr.FieldError{{Field: "name", Message: "must be at most 10 characters"}}},
		"ErrOneOf":     {func(f *farmer) { f.Kind = "landlord" }, []apperr.FieldError{{Field: "kind", Message: "must be one of: owner tenant"}}},
		"ErrUUID":      {func(f *farmer) { f.ID = "farmer-1" }, []apperr.FieldError{{Field: "id", Message: "must be a UUID"}}},
		"ErrCrop":      {func(f *farmer) { f.Crop = "tulips" }, []apperr.FieldError{{Field: "crop", Message: "must be one of: " + strings.Join(validate.Crops, " ")}}},
		"ErrSHA256Upper": {func(f *farmer) { f.Photo = strings.Repeat("AB", 32) },
			[]apperr.FieldError{{Field: "photo_sha256", Message: "must be a lowercase hex SHA-256"}}},
		"ErrSHA256Short": {func(f *farmer) { f.Photo = "abcd" }, []apperr.FieldError{{Field: "photo_sha256", Message: "must be a lowercase hex SHA-256"}}},
		"ErrMaxItems": {func(f *farmer) { f.Plots = append(f.Plots, f.Plots[0], f.Plots[0]) },
			[]apperr.FieldError{{Field: "plots", Message: "must have at most 2 items"}}},
		"ErrMinItems":    {func(f *farmer) { f.Tags = []string{} }, []apperr.FieldError{{Field: "tags", Message: "must have at least 1 items"}}},
		"OK_OmittedList": {func(f *farmer) { f.Tags = nil }, nil},
		"ErrNestedPath": {func(f *farmer) { f.Plots = append(f.Plots, plot{ID: "nope", Hectares: 0}) }, []apperr.FieldError{
			{Field: "plots[1].id", Message: "must be a UUID"}, {Field: "plots[1].hectares", Message: "must be > 0"}}},
		"ErrLte":                  {func(f *farmer) { f.Plots[0].Hectares = 5000 }, []apperr.FieldError{{Field: "plots[0].hectares", Message: "must be ≤ 1000"}}},
		"ErrGoNameWithoutJSONTag": {func(f *farmer) { f.NoTag = 0 }, []apperr.FieldError{{Field: "NoTag", Message: "must be ≥ 1"}}},
		"ErrEveryFieldAtFault": {func(f *farmer) { f.Name, f.Kind = "", "x" }, []apperr.FieldError{
			{Field: "name", Message: "is required"}, {Field: "kind", Message: "must be one of: owner tenant"}}},
	} {
		t.Run(name, func(t *testing.T) {
			f := validFarmer()
			c.change(&f)
			err := v.Validate(f)
			if c.want == nil {
				if err != nil {
					t.Errorf("got %v, want no error", err)
				}
				return
			}
			if diff := cmp.Diff(c.want, fields(t, err)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("ErrNotAStruct_NotTheClientsFault", func(t *testing.T) {
		err := v.Validate("a string")
		if err == nil || apperr.Is(err, apperr.Invalid) {
			t.Errorf("err = %v, want a programming error, not invalid input", err)
		}
	})
}

// TestStdBase64 holds the hand-written check to go-playground/validator's
// base64 expression on every string of up to eight characters drawn from
// a few that matter (alphabet, padding, others).
func TestStdBase64(t *testing.T) {
	lib := regexp.MustCompile("^(?:[A-Za-z0-9+\\/]{4})*(?:[A-Za-z0-9+\\/]{2}==|[A-Za-z0-9+\\/]{3}=|[A-Za-z0-9+\\/]{4})$")
	chars := []byte{'A', '/', '=', '-', '\n'}
	var walk func(prefix []byte)
	checked := 0
	walk = func(prefix []byte) {
		s := string(prefix)
		if got, want := validate.StdBase64(s), lib.MatchString(s); got != want {
			t.Errorf("StdBase64(%q) = %v, want %v", s, got, want)
		}
		checked++
		if len(prefix) == 8 {
			return
		}
		for _, c := range chars {
			walk(append(prefix, c))
		}
	}
	walk(nil)
	if checked < 400_000 {
		t.Fatalf("checked %d strings, want every string up to 8 characters", checked)
	}
}
