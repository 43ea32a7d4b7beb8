package identity

import (
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/validate"
)

// bind decodes strictly and validates.
func bind(c echo.Context, v any) error {
	if err := httpserver.DecodeJSON(c, v); err != nil {
		return err
	}
	return c.Validate(v)
}

// pathUUID reads a path parameter that must be a lowercase UUID.
func pathUUID(c echo.Context, name string) (string, error) {
	v := c.Param(name)
	if !validate.LowerUUID(v) {
		return "", apperr.Fields("bad path", apperr.FieldError{Field: name, Message: "must be a lowercase UUID"})
	}
	return v, nil
}

// pgxCollect scans every row into a new T through the destinations fields
// gives, and returns them (an empty slice, never nil, so JSON shows []).
func pgxCollect[T any](rows pgx.Rows, fields func(*T) []any) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var t T
		if err := rows.Scan(fields(&t)...); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
