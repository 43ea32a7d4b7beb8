package httpserver

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
)

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail carries the machine-readable code, a human message and, for
// invalid input, the fields at fault.
type ErrorDetail struct {
	Code    apperr.Code         `json:"code"`
	Message string              `json:"message"`
	Fields  []apperr.FieldError `json:"fields,omitempty"`
}

var statusOf = map[apperr.Code]int{
	apperr.Invalid:      http.StatusBadRequest,
	apperr.NotFound:     http.StatusNotFound,
	apperr.Conflict:     http.StatusConflict,
	apperr.Unauthorized: http.StatusUnauthorized,
	apperr.Forbidden:    http.StatusForbidden,
	apperr.TooLarge:     http.StatusRequestEntityTooLarge,
	apperr.Unavailable:  http.StatusServiceUnavailable,
	apperr.TooMany:      http.StatusTooManyRequests,
	apperr.Internal:     http.StatusInternalServerError,
}

// codeOfStatus maps echo's own errors (unknown route, wrong method, body
// too large) into the vocabulary.
func codeOfStatus(status int) apperr.Code {
	switch {
	case status == http.StatusNotFound:
		return apperr.NotFound
	case status == http.StatusUnauthorized:
		return apperr.Unauthorized
	case status == http.StatusForbidden:
		return apperr.Forbidden
	case status == http.StatusConflict:
		return apperr.Conflict
	case status == http.StatusRequestEntityTooLarge:
		return apperr.TooLarge
	case status == http.StatusServiceUnavailable:
		return apperr.Unavailable
	case status == http.StatusTooManyRequests:
		return apperr.TooMany
	case status >= 500:
		return apperr.Internal
	}
	return apperr.Invalid
}

// RetryAfterSeconds is d as a Retry-After value: whole seconds, rounded
// up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

// Status returns the HTTP status for an error code.
func Status(code apperr.Code) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// errorHandler answers every error in the common shape. Only internal
// errors are logged as errors, and their details never reach the client.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, body := render(err)
		if e, ok := apperr.As(err); ok && e.Code == apperr.TooMany && e.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", RetryAfterSeconds(e.RetryAfter))
		}
		if body.Error.Code == apperr.Internal {
			logger.ErrorContext(c.Request().Context(), "request failed",
				"method", c.Request().Method, "path", c.Path(),
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
		}
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(status)
		} else {
			err = c.JSON(status, body)
		}
		if err != nil {
			logger.WarnContext(c.Request().Context(), "write error response", "err", err)
		}
	}
}

func render(err error) (int, ErrorBody) {
	var he *echo.HTTPError
	var slow *BodyTimeoutError
	if errors.As(err, &slow) {
		return http.StatusRequestTimeout, ErrorBody{Error: ErrorDetail{Code: apperr.Invalid, Message: "request body arrived too slowly; send it again"}}
	}
	if e, ok := apperr.As(err); ok {
		d := ErrorDetail{Code: e.Code, Message: e.Message, Fields: e.Fields}
		if e.Code == apperr.Internal {
			d.Message = "internal error"
			d.Fields = nil
		}
		return Status(e.Code), ErrorBody{Error: d}
	}
	if errors.As(err, &he) {
		code := codeOfStatus(he.Code)
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok && he.Code < 500 {
			msg = m
		}
		if code == apperr.Internal {
			msg = "internal error"
		}
		return he.Code, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}}
	}
	return http.StatusInternalServerError, ErrorBody{Error: ErrorDetail{Code: apperr.Internal, Message: "internal error"}}
}
