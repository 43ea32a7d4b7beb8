package mobileapi

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
)

// Lists of the agent's phone other than sync-down (orders, consent
// requests) page like it: ?limit= rows (default listLimit, at most
// maxListLimit) and ?cursor=, the opaque cursor the previous page gave
// while its more was true. They are read in an order on columns that never
// change (a row's creation time, then its id), so that a row is never
// skipped or repeated by rows changing between pages.
const (
	listLimit    = 200
	maxListLimit = 500
)

// listCursor is the position after the row (At, ID) in a list's order.
type listCursor struct {
	At time.Time
	ID string
}

func (c listCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte("l1|" + strconv.FormatInt(c.At.UnixMicro(), 10) + "|" + c.ID))
}

// listPage reads ?cursor= (zero: the first page) and ?limit=.
func listPage(c echo.Context) (cur listCursor, limit int, err error) {
	var fields []apperr.FieldError
	limit = listLimit
	if v := c.QueryParam("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxListLimit {
			fields = append(fields, apperr.FieldError{Field: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(maxListLimit)})
		}
	}
	if v := c.QueryParam("cursor"); v != "" {
		var ok bool
		if cur, ok = parseListCursor(v); !ok {
			fields = append(fields, apperr.FieldError{Field: "cursor", Message: "must be a cursor returned by this endpoint"})
		}
	}
	if len(fields) > 0 {
		return listCursor{}, 0, apperr.Fields("bad query", fields...)
	}
	return cur, limit, nil
}

func parseListCursor(s string) (listCursor, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return listCursor{}, false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != "l1" {
		return listCursor{}, false
	}
	micros, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return listCursor{}, false
	}
	if _, err := uuid.Parse(parts[2]); err != nil {
		return listCursor{}, false
	}
	return listCursor{At: time.UnixMicro(micros).UTC(), ID: parts[2]}, true
}
