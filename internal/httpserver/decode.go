package httpserver

import (
	"errors"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/validate"
)

// DecodeJSON reads the request body strictly into v (see validate.Unmarshal)
// and refuses any string in it that is not clean text (a NUL or another
// control character, e.g. an ANSI escape; tab, line feed and carriage
// return are allowed), naming each such field. It does not check validate
// tags: call c.Validate for that.
func DecodeJSON(c echo.Context, v any) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" && !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return apperr.Fields("body must be JSON", apperr.FieldError{Field: "Content-Type", Message: "must be application/json"})
	}
	err := validate.Unmarshal(c.Request().Body, v)
	var tooLarge *echo.HTTPError
	if errors.As(err, &tooLarge) { // echo's body limit: already a 413
		return tooLarge
	}
	if err != nil {
		return err
	}
	if fields := dirtyText(v); len(fields) > 0 {
		return apperr.Fields("text must not hold control characters", fields...)
	}
	return nil
}

// Bind decodes the request body strictly (DecodeJSON) and checks its
// `validate` rules with the server's validator.
func Bind(c echo.Context, v any) error {
	if err := DecodeJSON(c, v); err != nil {
		return err
	}
	return c.Validate(v)
}

// PathUUID reads a path parameter that must be a lowercase UUID, and
// names it in the field error when it is not.
func PathUUID(c echo.Context, name string) (string, error) {
	v := c.Param(name)
	if !validate.LowerUUID(v) {
		return "", apperr.Fields("bad path", apperr.FieldError{Field: name, Message: "must be a lowercase UUID"})
	}
	return v, nil
}
