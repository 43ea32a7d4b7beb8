package lending

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/postgres"
)

// ProductRequest defines a loan product.
type ProductRequest struct {
	Name     string   `json:"name" validate:"required,min=1,max=100"`
	Crops    []string `json:"crops" validate:"required,min=1,max=12,unique,dive,crop"`
	Currency string   `json:"currency" validate:"required,iso4217"`
	// MinAmount and MaxAmount bound the principal, in minor units.
	MinAmount int64 `json:"min_amount" validate:"gt=0,lte=1000000000000000"`
	MaxAmount int64 `json:"max_amount" validate:"gtefield=MinAmount,lte=1000000000000000"`
	// FeeBps is a one-off fee, InterestBps a simple yearly rate, both in
	// basis points of the principal.
	FeeBps      int `json:"fee_bps" validate:"gte=0,lte=2000"`
	InterestBps int `json:"interest_bps" validate:"gte=0,lte=6000"`
	// TenorDays is the longest term; GraceDays follow the expected
	// harvest for bullet loans.
	TenorDays      int    `json:"tenor_days" validate:"gte=30,lte=1095"`
	GraceDays      int    `json:"grace_days" validate:"gte=0,lte=180"`
	RepaymentStyle string `json:"repayment_style" validate:"required,oneof=bullet flexible"`
	// LTVBps caps a loan at this share of the financed land's expected
	// revenue (the scorecard's limit).
	LTVBps int `json:"ltv_bps" validate:"gte=1,lte=10000"`
	// Policy: approve automatically at or above AutoApproveMinScore,
	// decline below AutoDeclineBelowScore; in between, or without them, a
	// credit officer decides.
	AutoApproveMinScore   *int     `json:"auto_approve_min_score,omitempty" validate:"omitempty,gte=0,lte=1000"`
	AutoDeclineBelowScore *int     `json:"auto_decline_below_score,omitempty" validate:"omitempty,gte=0,lte=1000"`
	OfferValidDays        int      `json:"offer_valid_days" validate:"gte=1,lte=60"`
	VoucherCategories     []string `json:"voucher_categories,omitempty" validate:"max=6,unique,dive,oneof=seed fertilizer crop_protection tools irrigation mechanization"`
}

// Product is a bank's loan product.
type Product struct {
	ID string `json:"id"`
	ProductRequest
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

const productColumns = `id::text, name, crops, currency, min_amount, max_amount, fee_bps, interest_bps, tenor_days, grace_days, repayment_style,
	ltv_bps, auto_approve_min_score, auto_decline_below_score, offer_valid_days, voucher_categories, status, created_at`

func scanProduct(row pgx.Row) (*Product, error) {
	var p Product
	err := row.Scan(&p.ID, &p.Name, &p.Crops, &p.Currency, &p.MinAmount, &p.MaxAmount, &p.FeeBps, &p.InterestBps, &p.TenorDays, &p.GraceDays,
		&p.RepaymentStyle, &p.LTVBps, &p.AutoApproveMinScore, &p.AutoDeclineBelowScore, &p.OfferValidDays, &p.VoucherCategories, &p.Status, &p.CreatedAt)
	if err != nil {
		return nil, err
	}
	if p.VoucherCategories == nil {
		p.VoucherCategories = []string{}
	}
	return &p, nil
}

func (s *Service) createProduct(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	var req ProductRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	var fields []apperr.FieldError
	if a, d := req.AutoApproveMinScore, req.AutoDeclineBelowScore; a != nil && d != nil && *d > *a {
		fields = append(fields, apperr.FieldError{Field: "auto_decline_below_score", Message: "must not exceed auto_approve_min_score"})
	}
	if req.Currency != s.model.Benchmarks.Currency {
		fields = append(fields, apperr.FieldError{Field: "currency", Message: fmt.Sprintf("scorecard %s has benchmarks in %s only", s.model.Version, s.model.Benchmarks.Currency)})
	}
	for i, crop := range req.Crops {
		if _, ok := s.model.Benchmarks.Crops[crop]; !ok {
			fields = append(fields, apperr.FieldError{Field: fmt.Sprintf("crops[%d]", i), Message: fmt.Sprintf("scorecard %s has no yield and price benchmark for %s", s.model.Version, crop)})
		}
	}
	if len(fields) > 0 {
		return apperr.Fields("invalid product", fields...)
	}
	if req.VoucherCategories == nil {
		req.VoucherCategories = []string{}
	}
	id := uuid.NewString()
	p, err := scanProduct(s.pool.QueryRow(c.Request().Context(), `
		INSERT INTO lending.products (id, organization_id, name, crops, currency, min_amount, max_amount, fee_bps, interest_bps, tenor_days, grace_days,
		                              repayment_style, ltv_bps, auto_approve_min_score, auto_decline_below_score, offer_valid_days, voucher_categories)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
		RETURNING `+productColumns,
		id, bank.OrganizationID, req.Name, req.Crops, req.Currency, req.MinAmount, req.MaxAmount, req.FeeBps, req.InterestBps, req.TenorDays, req.GraceDays,
		req.RepaymentStyle, req.LTVBps, req.AutoApproveMinScore, req.AutoDeclineBelowScore, req.OfferValidDays, req.VoucherCategories))
	if err != nil {
		return postgres.MapError(err, "", "your organization already has a product with this name")
	}
	return c.JSON(http.StatusCreated, p)
}

func (s *Service) listProducts(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	rows, err := s.readPool.Query(c.Request().Context(), `SELECT `+productColumns+` FROM lending.products WHERE organization_id = $1 ORDER BY created_at, id`, bank.OrganizationID)
	if err != nil {
		return fmt.Errorf("list products: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Product, error) { return scanProduct(r) })
	if err != nil {
		return fmt.Errorf("list products: %w", err)
	}
	if out == nil {
		out = []*Product{}
	}
	return c.JSON(http.StatusOK, map[string]any{"products": out})
}

// loadProduct reads one of org's products; another bank's is not found.
// loadProduct reads one of org's products, in a transaction or in one
// statement on a pool.
func loadProduct(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, org, id string) (*Product, error) {
	p, err := scanProduct(q.QueryRow(ctx, `SELECT `+productColumns+` FROM lending.products WHERE id = $1 AND organization_id = $2`, id, org))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apperr.Errorf(apperr.NotFound, "no product %s", id)
	}
	if err != nil {
		return nil, fmt.Errorf("load product %s: %w", id, err)
	}
	return p, nil
}

func (s *Service) getProduct(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	var p *Product
	err = pgx.BeginFunc(c.Request().Context(), s.readPool, func(tx pgx.Tx) error {
		p, err = loadProduct(c.Request().Context(), tx, bank.OrganizationID, id)
		return err
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// retireProduct stops new applications for a product; its loans go on.
// It changes only the product's status: its terms never change once
// created, which is what lets scoringProduct keep them in memory (a
// change of terms would have to drop them there).
func (s *Service) retireProduct(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	id, err := httpserver.PathUUID(c, "id")
	if err != nil {
		return err
	}
	p, err := scanProduct(s.pool.QueryRow(c.Request().Context(), `
		UPDATE lending.products SET status = 'retired', updated_at = now() WHERE id = $1 AND organization_id = $2
		RETURNING `+productColumns, id, bank.OrganizationID))
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.Errorf(apperr.NotFound, "no product %s", id)
	}
	if err != nil {
		return fmt.Errorf("retire product %s: %w", id, err)
	}
	return c.JSON(http.StatusOK, p)
}

// checkAmount says what is wrong with an amount for a product, under field.
func checkAmount(p *Product, m Money, field string) []apperr.FieldError {
	var out []apperr.FieldError
	if m.Currency != p.Currency {
		out = append(out, apperr.FieldError{Field: field + ".currency", Message: fmt.Sprintf("must be %s, the product's currency", p.Currency)})
	}
	if m.Amount < p.MinAmount || m.Amount > p.MaxAmount {
		out = append(out, apperr.FieldError{Field: field + ".amount", Message: fmt.Sprintf("must be within the product's range, %d to %d", p.MinAmount, p.MaxAmount)})
	}
	return out
}

// finances reports whether crop is one of the product's.
func (p *Product) finances(crop string) bool { return slices.Contains(p.Crops, crop) }
