package httpserver_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
)

func newServer(t *testing.T) *httpserver.Server {
	t.Helper()
	return httpserver.New(httpserver.Config{BodyLimit: "1K"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
}

func do(t *testing.T, h http.Handler, method, path, body string) (int, httpserver.ErrorBody, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	var eb httpserver.ErrorBody
	json.Unmarshal(raw, &eb)
	return rec.Code, eb, string(raw)
}

func TestErrorShape(t *testing.T) {
	s := newServer(t)
	type input struct {
		Name  string `json:"name" validate:"required,max=5"`
		Count int    `json:"count" validate:"gte=1"`
	}
	s.Echo.POST("/in", func(c echo.Context) error {
		var in input
		if err := httpserver.DecodeJSON(c, &in); err != nil {
			return err
		}
		if err := c.Validate(&in); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	s.Echo.GET("/boom", func(c echo.Context) error {
		return errors.New("pq: password authentication failed for user tani at 10.0.0.7")
	})
	s.Echo.GET("/gone", func(c echo.Context) error { return apperr.Errorf(apperr.NotFound, "no such plot") })
	s.Open()

	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		want   httpserver.ErrorDetail
	}{
		{"ErrValidation", "POST", "/in", `{"name":"Siti Aminah","count":0}`, 400, httpserver.ErrorDetail{
			Code: apperr.Invalid, Message: "invalid input", Fields: []apperr.FieldError{
				{Field: "name", Message: "must be at most 5 characters"}, {Field: "count", Message: "must be ≥ 1"}}}},
		{"ErrWrongType", "POST", "/in", `{"name":"Siti","count":"two"}`, 400, httpserver.ErrorDetail{
			Code: apperr.Invalid, Message: "wrong type", Fields: []apperr.FieldError{{Field: "count", Message: "must be an integer, not string"}}}},
		{"ErrUnknownField", "POST", "/in", `{"name":"Siti","count":1,"age":3}`, 400, httpserver.ErrorDetail{
			Code: apperr.Invalid, Message: "unknown field", Fields: []apperr.FieldError{{Field: "age", Message: "unknown field"}}}},
		{"ErrTrailingData", "POST", "/in", `{"name":"Siti","count":1} {}`, 400, httpserver.ErrorDetail{
			Code: apperr.Invalid, Message: "body must hold exactly one JSON value", Fields: []apperr.FieldError{{Field: "body", Message: "unexpected data after the JSON value"}}}},
		{"ErrTooLarge", "POST", "/in", `{"name":"` + strings.Repeat("a", 2000) + `"}`, 413, httpserver.ErrorDetail{
			Code: apperr.TooLarge, Message: "Request Entity Too Large"}},
		{"ErrInternal_DetailsHidden", "GET", "/boom", "", 500, httpserver.ErrorDetail{Code: apperr.Internal, Message: "internal error"}},
		{"ErrNotFound", "GET", "/gone", "", 404, httpserver.ErrorDetail{Code: apperr.NotFound, Message: "no such plot"}},
		{"ErrNoRoute", "GET", "/nowhere", "", 404, httpserver.ErrorDetail{Code: apperr.NotFound, Message: "Not Found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, raw := do(t, s, tt.method, tt.path, tt.body)
			if status != tt.status {
				t.Errorf("status = %d, want %d (%s)", status, tt.status, raw)
			}
			if diff := cmp.Diff(tt.want, body.Error); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if strings.Contains(raw, "10.0.0.7") {
				t.Errorf("answer leaks internal details: %s", raw)
			}
		})
	}
}

func TestReadiness(t *testing.T) {
	s := newServer(t)
	s.Echo.GET("/mobile/v1/x", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	var ledgerErr atomic.Pointer[error]
	s.AddReadinessCheck("ledger", func() error {
		if p := ledgerErr.Load(); p != nil {
			return *p
		}
		return nil
	})
	check := func(path string, want int) string {
		t.Helper()
		got, _, raw := do(t, s, "GET", path, "")
		if got != want {
			t.Errorf("GET %s = %d, want %d (%s)", path, got, want, raw)
		}
		return raw
	}
	t.Run("Starting", func(t *testing.T) {
		check("/healthz", 200)
		check("/readyz", 503)
		check("/mobile/v1/x", 503) // routes are not served before they are complete
	})
	t.Run("Ready", func(t *testing.T) {
		s.Open()
		s.SetReady(true)
		check("/readyz", 200)
		check("/mobile/v1/x", 204)
	})
	t.Run("ErrModuleUnhealthy", func(t *testing.T) {
		err := errors.New("the journal stopped signing")
		ledgerErr.Store(&err)
		if got, want := check("/readyz", 503), "not ready: ledger: the journal stopped signing\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		check("/mobile/v1/x", 204) // the module answers for itself
		check("/healthz", 200)     // the process lives: restarting it would not help
		ledgerErr.Store(nil)
		check("/readyz", 200)
	})
	t.Run("ShuttingDown", func(t *testing.T) {
		s.SetReady(false)
		check("/readyz", 503)
		check("/healthz", 200)
	})
}

func TestCleanText(t *testing.T) {
	s := newServer(t)
	type note struct {
		Text string `json:"text"`
	}
	type input struct {
		Name  string            `json:"name"`
		Tags  []string          `json:"tags"`
		Notes []note            `json:"notes"`
		Meta  map[string]string `json:"meta"`
		Raw   json.RawMessage   `json:"raw"`
	}
	s.Echo.POST("/in", func(c echo.Context) error {
		var in input
		if err := httpserver.DecodeJSON(c, &in); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	s.Echo.GET("/records/:id", func(c echo.Context) error { return c.String(http.StatusOK, c.Param("id")) })
	s.Open()

	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		field        string
	}{
		{"OK_PrintableTabsAndLineBreaks", "POST", "/in", `{"name":"Siti Aminah é 田","tags":["a\tb"],"notes":[{"text":"line\r\nline"}],"raw":"\u0000"}`, 204, ""},
		{"OK_PathAndQuery", "GET", "/records/abc-%C3%A9?cursor=x%20y", "", 200, ""},
		{"ErrNUL_InField", "POST", "/in", `{"name":"admin\u0000"}`, 400, "name"},
		{"ErrANSIEscape_InField", "POST", "/in", `{"name":"\u001b[31mred"}`, 400, "name"},
		{"ErrC1_InField", "POST", "/in", `{"name":"a\u009bb"}`, 400, "name"},
		{"ErrDEL_InSlice", "POST", "/in", `{"tags":["ok","\u007f"]}`, 400, "tags[1]"},
		{"ErrBell_InNestedObject", "POST", "/in", `{"notes":[{"text":"ok"},{"text":"\u0007"}]}`, 400, "notes[1].text"},
		{"ErrNUL_InMapValue", "POST", "/in", `{"meta":{"k":"\u0000"}}`, 400, "meta.k"},
		{"ErrNUL_InMapKey", "POST", "/in", `{"meta":{"\u0000":"v"}}`, 400, "meta"},
		{"ErrNUL_InPath", "GET", "/records/%00/receipt", "", 400, "path"},
		{"ErrNUL_InPathParam", "GET", "/records/%00", "", 400, "path"},
		{"ErrEscape_InPath", "GET", "/records/%1B%5B2J", "", 400, "path"},
		{"ErrLineBreak_InPath", "GET", "/records/a%0Ab", "", 400, "path"},
		{"ErrInvalidUTF8_InPath", "GET", "/records/%FF", "", 400, "path"},
		{"ErrNUL_InQuery", "GET", "/records/a?cursor=%00", "", 400, "cursor"},
		{"ErrNUL_InQueryName", "GET", "/records/a?%00=1", "", 400, "query"},
		{"ErrMalformedQuery", "GET", "/records/a?cursor=%zz", "", 400, "query"},
		{"ErrNUL_OnUnknownRoute", "GET", "/nowhere/%00", "", 400, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, raw := do(t, s, tt.method, tt.path, tt.body)
			if status != tt.status {
				t.Fatalf("status = %d, want %d (%s)", status, tt.status, raw)
			}
			if tt.field == "" {
				return
			}
			if body.Error.Code != apperr.Invalid || len(body.Error.Fields) != 1 || body.Error.Fields[0].Field != tt.field {
				t.Errorf("error = %+v, want invalid naming %q", body.Error, tt.field)
			}
		})
	}
}
