package vouchers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
)

// Querier is what the read functions need of Postgres: a *pgxpool.Pool, a
// pgx.Tx or a *pgx.Conn.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Projected is a voucher as the projection holds it: the chain's state
// after the event of BlockNumber.
type Projected struct {
	Voucher
	BlockNumber uint64 `json:"block_number"`
}

// Get reads voucher id from the projection (vouchers.voucher_states):
// apperr.NotFound if no event about it has been projected.
func Get(ctx context.Context, q Querier, id string) (*Projected, error) {
	if !isUUID(id) {
		return nil, apperr.Fields("invalid voucher id", apperr.FieldError{Field: "id", Message: "is not a lowercase UUID"})
	}
	var state []byte
	var block int64
	err := q.QueryRow(ctx, `SELECT state, block_number FROM vouchers.voucher_states WHERE id = $1`, id).Scan(&state, &block)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apperr.Errorf(apperr.NotFound, "voucher %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("vouchers: read %s: %w", id, err)
	}
	return decodeProjected(state, block)
}

// Filter selects vouchers for List; empty fields do not filter.
type Filter struct {
	IssuerMSP string
	BankOrg   string
	LoanID    string
	FarmerID  string
	Status    string
	// RedeemedByOrg selects the vouchers a distributor organization
	// redeemed.
	RedeemedByOrg string
	// RedeemableBy selects the issued, unexpired vouchers the distributor
	// (its MSP ID and, when set, its organization id) may redeem now.
	RedeemableBy *Distributor
	// After is the cursor of the previous page; Limit defaults to 50 and
	// is at most 500.
	After string
	Limit int
}

// Distributor is a distributor organization: its MSP and its Tani
// organization id.
type Distributor struct {
	MSPID string
	OrgID string
}

// List returns vouchers matching f, newest issue first, and the cursor of
// the next page ("" after the last).
func List(ctx context.Context, q Querier, f Filter) ([]Projected, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	if limit > 500 {
		return nil, "", apperr.Fields("invalid list", apperr.FieldError{Field: "limit", Message: "at most 500"})
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	for field, v := range map[string]string{"bank_org": f.BankOrg, "loan_id": f.LoanID, "farmer_id": f.FarmerID, "redeemed_by_org": f.RedeemedByOrg} {
		if v != "" && !isUUID(v) {
			return nil, "", apperr.Fields("invalid list", apperr.FieldError{Field: field, Message: "is not a lowercase UUID"})
		}
	}
	if d := f.RedeemableBy; d != nil && d.OrgID != "" && !isUUID(d.OrgID) {
		return nil, "", apperr.Fields("invalid list", apperr.FieldError{Field: "redeemable_by.org_id", Message: "is not a lowercase UUID"})
	}
	switch f.Status {
	case "", StatusIssued, StatusRedeemed, StatusSettled:
	default:
		return nil, "", apperr.Fields("invalid list", apperr.FieldError{Field: "status", Message: "is not issued, redeemed or settled"})
	}
	for _, c := range []struct{ col, v string }{
		{"issuer_msp", f.IssuerMSP}, {"bank_org", f.BankOrg}, {"loan_id", f.LoanID}, {"farmer_id", f.FarmerID},
		{"status", f.Status}, {"distributor_org", f.RedeemedByOrg},
	} {
		if c.v != "" {
			where = append(where, c.col+" = "+arg(c.v))
		}
	}
	if d := f.RedeemableBy; d != nil {
		where = append(where, "status = 'issued'", "expires_at > now()",
			"(cardinality(distributors) = 0 OR "+arg(d.MSPID)+" = ANY(distributors))")
		if d.OrgID != "" {
			where = append(where, "(cardinality(distributor_orgs) = 0 OR "+arg(d.OrgID)+"::uuid = ANY(distributor_orgs))")
		} else {
			where = append(where, "cardinality(distributor_orgs) = 0")
		}
	}
	if f.After != "" {
		at, id, err := decodeCursor(f.After)
		if err != nil {
			return nil, "", apperr.Fields("invalid cursor", apperr.FieldError{Field: "after", Message: "is not a cursor of this list"})
		}
		where = append(where, "(issued_at, id) < ("+arg(at)+", "+arg(id)+"::uuid)")
	}
	sql := `SELECT state, block_number, issued_at FROM vouchers.voucher_states`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY issued_at DESC, id DESC LIMIT " + arg(limit+1)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("vouchers: list: %w", err)
	}
	defer rows.Close()
	var out []Projected
	var last time.Time
	for rows.Next() {
		var state []byte
		var block int64
		var issued time.Time
		if err := rows.Scan(&state, &block, &issued); err != nil {
			return nil, "", fmt.Errorf("vouchers: list: %w", err)
		}
		if len(out) == limit {
			return out, encodeCursor(last, out[len(out)-1].ID), nil
		}
		p, err := decodeProjected(state, block)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *p)
		last = issued
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("vouchers: list: %w", err)
	}
	return out, "", nil
}

func decodeProjected(state []byte, block int64) (*Projected, error) {
	p := &Projected{BlockNumber: uint64(block)}
	if err := json.Unmarshal(state, &p.Voucher); err != nil {
		return nil, fmt.Errorf("vouchers: decode projected voucher: %w", err)
	}
	return p, nil
}

func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + "/" + id))
}

func decodeCursor(s string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", err
	}
	us, id, ok := strings.Cut(string(b), "/")
	if !ok || !isUUID(id) {
		return time.Time{}, "", errors.New("malformed cursor")
	}
	n, err := strconv.ParseInt(us, 10, 64)
	if err != nil {
		return time.Time{}, "", err
	}
	return time.UnixMicro(n), id, nil
}

// isUUID reports whether s is a lowercase, non-nil UUID, the only form
// the chain holds.
func isUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u != uuid.Nil && u.String() == s
}
