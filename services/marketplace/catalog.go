package marketplace

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres"
)

// Categories are the input categories of the catalog: the vouchers
// chaincode's, so that a voucher's categories name catalog categories.
var Categories = []string{"seed", "fertilizer", "crop_protection", "tools", "irrigation", "mechanization"}

// Money is an amount in minor units of an ISO 4217 currency.
type Money struct {
	Amount   int64  `json:"amount" validate:"gt=0,lte=9007199254740991"`
	Currency string `json:"currency" validate:"required,iso4217"`
}

// Product is one catalog entry of a distributor.
type Product struct {
	ID        string    `json:"id"`
	SKU       string    `json:"sku"`
	Name      string    `json:"name"`
	Category  string    `json:"category"`
	Crop      string    `json:"crop,omitempty"`
	PackSize  float64   `json:"pack_size"`
	PackUnit  string    `json:"pack_unit"`
	UnitPrice Money     `json:"unit_price"`
	Regions   []string  `json:"regions"`
	Stock     int64     `json:"stock"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	seq       int64
}

// ProductInput creates a product.
type ProductInput struct {
	SKU       string   `json:"sku" form:"sku" validate:"required,min=1,max=64"`
	Name      string   `json:"name" form:"name" validate:"required,min=1,max=200"`
	Category  string   `json:"category" form:"category" validate:"required,oneof=seed fertilizer crop_protection tools irrigation mechanization"`
	Crop      string   `json:"crop,omitempty" form:"crop" validate:"omitempty,crop"`
	PackSize  float64  `json:"pack_size" form:"pack_size" validate:"gt=0,lte=100000"`
	PackUnit  string   `json:"pack_unit" form:"pack_unit" validate:"required,oneof=kg l unit"`
	UnitPrice Money    `json:"unit_price" validate:"required"`
	Regions   []string `json:"regions" validate:"required,min=1,max=100,unique,dive,min=2,max=100"`
	Stock     int64    `json:"stock" form:"stock" validate:"gte=0,lte=1000000000"`
}

// ProductPatch changes a product; absent members stay as they are.
type ProductPatch struct {
	Name      *string   `json:"name,omitempty" validate:"omitempty,min=1,max=200"`
	UnitPrice *Money    `json:"unit_price,omitempty"`
	Regions   *[]string `json:"regions,omitempty" validate:"omitempty,min=1,max=100,unique,dive,min=2,max=100"`
	Stock     *int64    `json:"stock,omitempty" validate:"omitempty,gte=0,lte=1000000000"`
	Active    *bool     `json:"active,omitempty"`
}

const productColumns = `product_id::text, seq, sku, name, category, coalesce(crop, ''), pack_size, pack_unit, unit_price, currency, regions, stock, active, created_at, updated_at`

func scanProduct(r pgx.Row) (Product, error) {
	var p Product
	err := r.Scan(&p.ID, &p.seq, &p.SKU, &p.Name, &p.Category, &p.Crop, &p.PackSize, &p.PackUnit, &p.UnitPrice.Amount, &p.UnitPrice.Currency,
		&p.Regions, &p.Stock, &p.Active, &p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// CreateProduct adds a product to org's catalog.
func (s *Service) CreateProduct(ctx context.Context, org string, in ProductInput) (Product, error) {
	if err := s.validator.Validate(&in); err != nil {
		return Product{}, err
	}
	var crop *string
	if in.Crop != "" {
		crop = &in.Crop
	}
	row := s.pool.QueryRow(ctx, `
		INSERT INTO marketplace.products (product_id, distributor_id, sku, name, category, crop, pack_size, pack_unit, unit_price, currency, regions, stock)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		RETURNING `+productColumns,
		uuid.NewString(), org, in.SKU, in.Name, in.Category, crop, in.PackSize, in.PackUnit, in.UnitPrice.Amount, in.UnitPrice.Currency, in.Regions, in.Stock)
	p, err := scanProduct(row)
	if err != nil {
		return Product{}, postgres.MapError(err, "", "a product with this SKU is already in your catalog")
	}
	return p, nil
}

// Product returns one of org's products; another distributor's is not
// found.
func (s *Service) Product(ctx context.Context, org, id string) (Product, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Product{}, apperr.Errorf(apperr.NotFound, "no such product")
	}
	p, err := scanProduct(s.pool.QueryRow(ctx, `SELECT `+productColumns+` FROM marketplace.products WHERE product_id = $1 AND distributor_id = $2`, id, org))
	return p, postgres.MapError(err, "no such product", "")
}

// UpdateProduct applies a patch to one of org's products.
func (s *Service) UpdateProduct(ctx context.Context, org, id string, in ProductPatch) (Product, error) {
	if err := s.validator.Validate(&in); err != nil {
		return Product{}, err
	}
	if in.UnitPrice != nil {
		if err := s.validator.Validate(in.UnitPrice); err != nil {
			return Product{}, prefixed(err, "unit_price.")
		}
	}
	if _, err := uuid.Parse(id); err != nil {
		return Product{}, apperr.Errorf(apperr.NotFound, "no such product")
	}
	var price *int64
	var currency *string
	if in.UnitPrice != nil {
		price, currency = &in.UnitPrice.Amount, &in.UnitPrice.Currency
	}
	p, err := scanProduct(s.pool.QueryRow(ctx, `
		UPDATE marketplace.products SET name = coalesce($3, name), unit_price = coalesce($4, unit_price), currency = coalesce($5, currency),
		    regions = coalesce($6, regions), stock = coalesce($7, stock), active = coalesce($8, active), updated_at = now()
		WHERE product_id = $1 AND distributor_id = $2
		RETURNING `+productColumns, id, org, in.Name, price, currency, in.Regions, in.Stock, in.Active))
	return p, postgres.MapError(err, "no such product", "")
}

// ProductFilter narrows a catalog listing.
type ProductFilter struct {
	Category string
	Crop     string
	Cursor   string
	Limit    int
}

// Page is one page of a listing; Next is the cursor of the next page ("" at
// the end).
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next_cursor,omitempty"`
}

// Products lists org's catalog, newest first, by cursor.
func (s *Service) Products(ctx context.Context, org string, f ProductFilter) (Page[Product], error) {
	cur, limit, err := pageArgs(f.Cursor, f.Limit)
	if err != nil {
		return Page[Product]{}, err
	}
	rows, err := s.readPool.Query(ctx, `
		SELECT `+productColumns+` FROM marketplace.products
		WHERE distributor_id = $1 AND ($2 = 0 OR seq < $2) AND ($3 = '' OR category = $3) AND ($4 = '' OR crop = $4)
		ORDER BY seq DESC LIMIT $5`, org, cur, f.Category, f.Crop, limit+1)
	if err != nil {
		return Page[Product]{}, fmt.Errorf("list products: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Product, error) { return scanProduct(r) })
	if err != nil {
		return Page[Product]{}, fmt.Errorf("list products: %w", err)
	}
	return paginate(items, limit, func(p Product) int64 { return p.seq }), nil
}

// MaxPage is the largest page a listing returns.
const MaxPage = 200

// pageArgs reads a cursor (the seq of the last item seen, opaque to
// clients) and a limit.
func pageArgs(cursor string, limit int) (int64, int, error) {
	var cur int64
	if cursor != "" {
		c, err := strconv.ParseInt(cursor, 36, 64)
		if err != nil || c <= 0 {
			return 0, 0, apperr.Fields("bad cursor", apperr.FieldError{Field: "cursor", Message: "is not a cursor this listing returned"})
		}
		cur = c
	}
	switch {
	case limit == 0:
		limit = 50
	case limit < 0 || limit > MaxPage:
		return 0, 0, apperr.Fields("bad limit", apperr.FieldError{Field: "limit", Message: fmt.Sprintf("must be 1 to %d", MaxPage)})
	}
	return cur, limit, nil
}

func paginate[T any](items []T, limit int, seq func(T) int64) Page[T] {
	p := Page[T]{Items: items}
	if len(items) > limit {
		p.Items = items[:limit]
		p.Next = strconv.FormatInt(seq(items[limit-1]), 36)
	}
	if p.Items == nil {
		p.Items = []T{}
	}
	return p
}

// prefixed names the fields of a validation error under prefix.
func prefixed(err error, prefix string) error {
	e, ok := apperr.As(err)
	if !ok {
		return err
	}
	out := *e
	out.Fields = make([]apperr.FieldError, len(e.Fields))
	for i, f := range e.Fields {
		out.Fields[i] = apperr.FieldError{Field: prefix + f.Field, Message: f.Message}
	}
	return &out
}

// validLowerUUID reports whether s is a UUID in lowercase canonical form.
func validLowerUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
