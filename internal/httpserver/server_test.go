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
