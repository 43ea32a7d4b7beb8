package lending

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/validate"
)

// Money is an amount in minor units of an ISO 4217 currency.
type Money struct {
	Amount   int64  `json:"amount" validate:"gt=0"`
	Currency string `json:"currency" validate:"required,iso4217"`
}

// MaxAmount bounds every amount: far above any smallholder loan, far below
// what int64 arithmetic on sums of them could overflow.
const MaxAmount = 1_000_000_000_000_000 // 10^15 minor units

// bankOf returns the calling bank.
func bankOf(c echo.Context) (identity.Principal, error) {
	p, ok := identity.PrincipalOf(c)
	if !ok || p.OrganizationID == "" {
		return identity.Principal{}, apperr.Errorf(apperr.Unauthorized, "no authenticated organization")
	}
	if p.Kind != identity.Bank {
		return identity.Principal{}, apperr.Errorf(apperr.Forbidden, "only banks use the lending API")
	}
	return p, nil
}

// bind decodes a JSON body strictly and checks its rules.
func (s *Service) bind(c echo.Context, v any) error {
	if err := httpserver.DecodeJSON(c, v); err != nil {
		return err
	}
	return s.validator.Validate(v)
}

// canonical returns v as RFC 8785 canonical JSON: the journaled bytes.
func canonical(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return jcs.Transform(b)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// day is a calendar date in UTC, as JSON "2006-01-02".
type day time.Time

func (d day) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(d).UTC().Format(time.DateOnly) + `"`), nil
}

func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// cursor is an opaque keyset position (time, id) for listings.
type cursor struct {
	At time.Time
	ID string
}

func (c cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.At.UTC().Format(time.RFC3339Nano) + "|" + c.ID))
}

func parseCursor(s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	bad := apperr.Fields("bad query", apperr.FieldError{Field: "cursor", Message: "is not a cursor this API returned"})
	if err != nil {
		return nil, bad
	}
	at, id, ok := strings.Cut(string(raw), "|")
	t, terr := time.Parse(time.RFC3339Nano, at)
	if !ok || terr != nil || !validate.LowerUUID(id) {
		return nil, bad
	}
	return &cursor{At: t, ID: id}, nil
}

// limitParam reads ?limit= (default def, at most max).
func limitParam(c echo.Context, def, max int) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, apperr.Fields("bad query", apperr.FieldError{Field: "limit", Message: fmt.Sprintf("must be 1 to %d", max)})
	}
	return n, nil
}
