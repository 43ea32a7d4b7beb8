package marketplace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger"
)

// Order statuses. An order is placed (by an agent's verified record or by
// the distributor; its stock is reserved then), then accepted or rejected
// (stock released), or cancelled by the distributor that placed it
// (stock released), shipped, and delivered once verified deliveries cover
// every line.
const (
	StatusPlaced    = "placed"
	StatusAccepted  = "accepted"
	StatusRejected  = "rejected"
	StatusCancelled = "cancelled"
	StatusShipped   = "shipped"
	StatusDelivered = "delivered"
)

// Order is an input order as the distributor sees it. It names the farmer
// by id only: who the farmer is (identity scope) is not part of an order.
type Order struct {
	ID           string `json:"id"`
	FarmerID     string `json:"farmer_id"`
	Region       string `json:"region"`
	Source       string `json:"source"`
	RecordID     string `json:"record_id,omitempty"`
	AgentID      string `json:"agent_id,omitempty"`
	PlacedBy     string `json:"placed_by,omitempty"`
	PlotID       string `json:"plot_id,omitempty"`
	Payment      string `json:"payment"`
	VoucherID    string `json:"voucher_id,omitempty"`
	Total        Money  `json:"total"`
	Status       string `json:"status"`
	RejectReason string `json:"reject_reason,omitempty"` // why it was rejected or cancelled
	// FarmerErased: the farmer asked to be forgotten; FarmerID is then a
	// pseudonym and PlotID is gone (the order itself is kept).
	FarmerErased bool        `json:"farmer_erased,omitempty"`
	Revision     int         `json:"revision"`
	LeafIndex    *int64      `json:"leaf_index,omitempty"`
	PlacedAt     time.Time   `json:"placed_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
	Lines        []OrderLine `json:"lines"`
	seq          int64
	// stockReserved: the order holds its packs (taken from the stock when
	// it was placed; given back when it is rejected or cancelled).
	stockReserved bool
}

// OrderLine is one product of an order.
type OrderLine struct {
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Category  string `json:"category"`
	Quantity  int64  `json:"quantity"`
	Delivered int64  `json:"delivered"`
	UnitPrice Money  `json:"unit_price"`
}

// OrderInput is an order the distributor places for a consenting farmer.
type OrderInput struct {
	FarmerID  string           `json:"farmer_id" validate:"required,uuidlower"`
	PlotID    string           `json:"plot_id,omitempty" validate:"omitempty,uuidlower"`
	Currency  string           `json:"currency" validate:"required,iso4217"`
	Payment   string           `json:"payment" validate:"required,oneof=cash voucher"`
	VoucherID string           `json:"voucher_id,omitempty" validate:"omitempty,uuidlower"`
	Items     []OrderItemInput `json:"items" validate:"required,min=1,max=50,dive"`
}

// OrderItemInput is packs of a catalog product.
type OrderItemInput struct {
	ProductID string `json:"product_id" validate:"required,uuidlower"`
	Quantity  int64  `json:"quantity" validate:"gt=0,lte=100000"`
}

const orderColumns = `o.order_id::text, o.seq, o.farmer_id::text, o.region, o.source, coalesce(o.record_id::text, ''), coalesce(o.agent_id::text, ''),
	coalesce(o.placed_by, ''), coalesce(o.plot_id::text, ''), o.payment, coalesce(o.voucher_id::text, ''), o.total, o.currency, o.status,
	coalesce(o.reject_reason, ''), o.revision, o.leaf_index, o.placed_at, o.updated_at, o.stock_reserved, o.farmer_erased`

func scanOrder(r pgx.Row) (Order, error) {
	var o Order
	err := r.Scan(&o.ID, &o.seq, &o.FarmerID, &o.Region, &o.Source, &o.RecordID, &o.AgentID, &o.PlacedBy, &o.PlotID, &o.Payment, &o.VoucherID,
		&o.Total.Amount, &o.Total.Currency, &o.Status, &o.RejectReason, &o.Revision, &o.LeafIndex, &o.PlacedAt, &o.UpdatedAt, &o.stockReserved, &o.FarmerErased)
	return o, err
}

// reserveStock takes every line's packs from the distributor's stock, one
// conditional update per product under its row lock, so that concurrent
// orders never take more than there is: the second waits for the first to
// commit and then sees what is left. Products are locked in one order
// (by id), so two orders sharing products cannot deadlock. It returns the
// index of the first line the stock cannot cover (-1: all reserved) and
// the packs left of that product; the caller then rolls back.
func reserveStock(ctx context.Context, tx pgx.Tx, org string, lines []OrderLine) (short int, left int64, err error) {
	order := make([]int, len(lines))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(lines[a].ProductID, lines[b].ProductID) })
	for _, i := range order {
		l := lines[i]
		tag, err := tx.Exec(ctx, `UPDATE marketplace.products SET stock = stock - $3, updated_at = now() WHERE product_id = $1 AND distributor_id = $2 AND stock >= $3`,
			l.ProductID, org, l.Quantity)
		if err != nil {
			return 0, 0, fmt.Errorf("reserve stock: %w", err)
		}
		if tag.RowsAffected() == 0 {
			if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT stock FROM marketplace.products WHERE product_id = $1 AND distributor_id = $2), 0)`,
				l.ProductID, org).Scan(&left); err != nil {
				return 0, 0, fmt.Errorf("stock of %s: %w", l.ProductID, err)
			}
			return i, left, nil
		}
	}
	return -1, 0, nil
}

// releaseStock gives an order's packs back to the stock.
func releaseStock(ctx context.Context, tx pgx.Tx, org string, lines []OrderLine) error {
	sorted := slices.Clone(lines)
	slices.SortFunc(sorted, func(a, b OrderLine) int { return strings.Compare(a.ProductID, b.ProductID) })
	for _, l := range sorted {
		if _, err := tx.Exec(ctx, `UPDATE marketplace.products SET stock = stock + $3, updated_at = now() WHERE product_id = $1 AND distributor_id = $2`,
			l.ProductID, org, l.Quantity); err != nil {
			return fmt.Errorf("release stock: %w", err)
		}
	}
	return nil
}

// catalogLine is a product as an order line needs it.
type catalogLine struct {
	id, name, category, currency string
	price, stock                 int64
	active                       bool
}

// loadCatalog reads the products named by ids from org's catalog.
func loadCatalog(ctx context.Context, q pgx.Tx, org string, ids []string) (map[string]catalogLine, error) {
	rows, err := q.Query(ctx, `
		SELECT product_id::text, name, category, currency, unit_price, stock, active FROM marketplace.products
		WHERE distributor_id = $1 AND product_id = ANY($2::uuid[])`, org, ids)
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	out := map[string]catalogLine{}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var c catalogLine
		err := r.Scan(&c.id, &c.name, &c.category, &c.currency, &c.price, &c.stock, &c.active)
		out[c.id] = c
		return struct{}{}, err
	})
	return out, err
}

// PlaceOrder places an order for a farmer through the consent gate (scope
// orders): the farmer must have consented to this distributor handling
// their orders. Unknown products, another currency and stock exceeded are
// refused with field errors, and nothing is stored.
func (s *Service) PlaceOrder(ctx context.Context, p identity.Principal, requestID string, in OrderInput) (Order, error) {
	if err := s.validator.Validate(&in); err != nil {
		return Order{}, err
	}
	var fields []apperr.FieldError
	seen := map[string]int{}
	ids := make([]string, len(in.Items))
	for i, it := range in.Items {
		if j, ok := seen[it.ProductID]; ok {
			fields = append(fields, apperr.FieldError{Field: fmt.Sprintf("items[%d].product_id", i), Message: fmt.Sprintf("repeats items[%d]; order a product on one line", j)})
		}
		seen[it.ProductID] = i
		ids[i] = it.ProductID
	}
	switch {
	case in.Payment == "voucher" && in.VoucherID == "":
		fields = append(fields, apperr.FieldError{Field: "voucher_id", Message: "is required when payment is voucher"})
	case in.Payment == "cash" && in.VoucherID != "":
		fields = append(fields, apperr.FieldError{Field: "voucher_id", Message: "must be empty when payment is cash"})
	}
	if len(fields) > 0 {
		return Order{}, apperr.Fields("bad order", fields...)
	}
	id := uuid.NewString()
	now := s.now().UTC()
	access := consent.Access{FarmerID: in.FarmerID, Scopes: []consent.Scope{consent.Orders}, Purpose: "place an input order", RequestID: requestID}
	err := s.gate.Read(ctx, p, access, func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
		cat, err := loadCatalog(ctx, tx, p.OrganizationID, ids)
		if err != nil {
			return err
		}
		var total int64
		for i, it := range in.Items {
			c, ok := cat[it.ProductID]
			field := fmt.Sprintf("items[%d]", i)
			switch {
			case !ok:
				fields = append(fields, apperr.FieldError{Field: field + ".product_id", Message: "is not a product in your catalog"})
			case !c.active:
				fields = append(fields, apperr.FieldError{Field: field + ".product_id", Message: "is withdrawn from your catalog"})
			case c.currency != in.Currency:
				fields = append(fields, apperr.FieldError{Field: field + ".product_id", Message: fmt.Sprintf("is priced in %s, not in the order's %s", c.currency, in.Currency)})
			case it.Quantity > c.stock:
				fields = append(fields, apperr.FieldError{Field: field + ".quantity", Message: fmt.Sprintf("exceeds the stock of %d packs", c.stock)})
			default:
				total += c.price * it.Quantity
			}
		}
		if len(fields) > 0 {
			return apperr.Fields("bad order", fields...)
		}
		if total > record.MaxMinorAmount {
			return apperr.Fields("bad order", apperr.FieldError{Field: "items", Message: "the order's total is too large"})
		}
		// A farmer who asked to be forgotten gets no new order: the
		// fence also waits for an erasure of them in progress.
		erased, err := eraser.Fence(ctx, tx, []string{in.FarmerID})
		if err != nil {
			return err
		}
		if erased.Has(in.FarmerID) {
			return errFarmerErased(in.FarmerID)
		}
		o := Order{ID: id, FarmerID: in.FarmerID, Source: "distributor", PlacedBy: p.Credential(), PlotID: in.PlotID, Payment: in.Payment,
			VoucherID: in.VoucherID, Total: Money{Amount: total, Currency: in.Currency}, Status: StatusPlaced, PlacedAt: now}
		for _, it := range in.Items {
			c := cat[it.ProductID]
			o.Lines = append(o.Lines, OrderLine{ProductID: it.ProductID, Name: c.name, Category: c.category, Quantity: it.Quantity, UnitPrice: Money{Amount: c.price, Currency: c.currency}})
		}
		// The stock read above may have been taken since by another
		// order: the reservation decides, row by row under its lock.
		short, left, err := reserveStock(ctx, tx, p.OrganizationID, o.Lines)
		if err != nil {
			return err
		}
		if short >= 0 {
			return apperr.Fields("bad order", apperr.FieldError{Field: fmt.Sprintf("items[%d].quantity", short), Message: fmt.Sprintf("exceeds the stock of %d packs", left)})
		}
		o.stockReserved = true
		return s.insertOrder(ctx, tx, p.OrganizationID, &o, "distributor="+p.OrganizationID+" "+p.Credential())
	})
	if err != nil {
		return Order{}, err
	}
	s.journalOrder(ctx, id)
	return s.Order(ctx, p.OrganizationID, id)
}

// insertOrder stores a new order, its lines and its first journal
// revision (kind order.placed), in tx.
func (s *Service) insertOrder(ctx context.Context, tx pgx.Tx, org string, o *Order, signatureRef string) error {
	if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT region FROM attest.farmer_regions WHERE farmer_id = $1), '')`, o.FarmerID).Scan(&o.Region); err != nil {
		return fmt.Errorf("farmer region: %w", err)
	}
	var record, agent, plot, voucher *string
	for _, v := range []struct {
		s   string
		dst **string
	}{{o.RecordID, &record}, {o.AgentID, &agent}, {o.PlotID, &plot}, {o.VoucherID, &voucher}} {
		if v.s != "" {
			x := v.s
			*v.dst = &x
		}
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO marketplace.orders (order_id, distributor_id, farmer_id, region, source, record_id, agent_id, placed_by, plot_id, payment,
		                                voucher_id, currency, total, status, placed_at, stock_reserved)
		VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, ''), $9, $10, $11, $12, $13, 'placed', $14, $15)
		ON CONFLICT DO NOTHING`,
		o.ID, org, o.FarmerID, o.Region, o.Source, record, agent, o.PlacedBy, plot, o.Payment, voucher, o.Total.Currency, o.Total.Amount, o.PlacedAt, o.stockReserved)
	if err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return apperr.Errorf(apperr.Conflict, "order %s exists already", o.ID)
	}
	for i, l := range o.Lines {
		if _, err := tx.Exec(ctx, `INSERT INTO marketplace.order_lines (order_id, line, product_id, quantity, unit_price) VALUES ($1, $2, $3, $4, $5)`,
			o.ID, i, l.ProductID, l.Quantity, l.UnitPrice.Amount); err != nil {
			return fmt.Errorf("insert order line: %w", err)
		}
	}
	o.Revision = 1
	return s.writeRevision(ctx, tx, o, 1, "order.placed", signatureRef, "")
}

// revisionPayload is what the journal holds for each revision of an order.
type revisionPayload struct {
	OrderID       string      `json:"order_id"`
	Revision      int         `json:"revision"`
	DistributorID string      `json:"distributor_id"`
	FarmerID      string      `json:"farmer_id"`
	Source        string      `json:"source"`
	RecordID      string      `json:"record_id,omitempty"`
	Status        string      `json:"status"`
	Reason        string      `json:"reason,omitempty"`
	Payment       string      `json:"payment"`
	VoucherID     string      `json:"voucher_id,omitempty"`
	Total         Money       `json:"total"`
	Lines         []OrderLine `json:"lines"`
	DeliveryID    string      `json:"delivery_id,omitempty"`
	By            string      `json:"by"`
	At            string      `json:"at"`
}

// writeRevision stores revision rev of order o (the outbox of its journal
// entry), in tx.
func (s *Service) writeRevision(ctx context.Context, tx pgx.Tx, o *Order, rev int, kind, by, deliveryID string) error {
	var org string
	if err := tx.QueryRow(ctx, `SELECT distributor_id::text FROM marketplace.orders WHERE order_id = $1`, o.ID).Scan(&org); err != nil {
		return fmt.Errorf("order %s: %w", o.ID, err)
	}
	at := s.now().UTC().Truncate(time.Microsecond)
	body, err := json.Marshal(revisionPayload{OrderID: o.ID, Revision: rev, DistributorID: org, FarmerID: o.FarmerID, Source: o.Source, RecordID: o.RecordID,
		Status: o.Status, Reason: o.RejectReason, Payment: o.Payment, VoucherID: o.VoucherID, Total: o.Total, Lines: o.Lines, DeliveryID: deliveryID,
		By: by, At: at.Format(time.RFC3339Nano)})
	if err != nil {
		return err
	}
	canonical, err := record.Canonical(body)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO marketplace.order_revisions (order_id, revision, kind, payload, signature_ref, occurred_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		o.ID, rev, kind, canonical, by, at); err != nil {
		return fmt.Errorf("order revision: %w", err)
	}
	// The distributor's webhook hears of it from the same transaction.
	data := map[string]any{"order_id": o.ID, "revision": rev, "status": o.Status, "source": o.Source, "record_id": o.RecordID, "delivery_id": deliveryID}
	key := fmt.Sprintf("%s:%d", o.ID, rev)
	if rev == 1 {
		return events.Record(ctx, tx, events.Event{ID: events.DeriveID(events.OrderPlaced, key), Type: events.OrderPlaced,
			OrganizationID: org, FarmerID: o.FarmerID, OccurredAt: at, Data: data})
	}
	return events.Record(ctx, tx, events.Event{ID: events.DeriveID(events.OrderUpdated, key), Type: events.OrderUpdated,
		OrganizationID: org, FarmerID: o.FarmerID, OccurredAt: at, Data: data})
}

// journalOrder journals the order's revisions not journaled yet. A failure
// is logged: the sweeper retries.
func (s *Service) journalOrder(ctx context.Context, orderID string) {
	if err := s.journalRevisions(ctx, orderID); err != nil {
		s.logger.WarnContext(ctx, "journal order revision (the sweeper retries)", "order_id", orderID, "err", err)
	}
}

// journalPending journals every order revision not journaled yet.
func (s *Service) journalPending(ctx context.Context) error { return s.journalRevisions(ctx, "") }

func (s *Service) journalRevisions(ctx context.Context, orderID string) error {
	rows, err := s.pool.Query(ctx, `
		SELECT order_id::text, revision, kind, payload, signature_ref, occurred_at FROM marketplace.order_revisions
		WHERE leaf_index IS NULL AND ($1::text = '' OR order_id::text = $1) ORDER BY occurred_at, revision LIMIT 500`, orderID)
	if err != nil {
		return fmt.Errorf("load unjournaled order revisions: %w", err)
	}
	revs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ledger.Revision, error) {
		var rev ledger.Revision
		err := r.Scan(&rev.RecordID, &rev.Revision, &rev.Kind, &rev.Payload, &rev.SignatureRef, &rev.OccurredAt)
		return rev, err
	})
	if err != nil || len(revs) == 0 {
		return err
	}
	done, err := s.journal.Append(ctx, revs...)
	if err != nil {
		return fmt.Errorf("journal %d order revisions: %w", len(revs), err)
	}
	b := &pgx.Batch{}
	for _, a := range done {
		b.Queue(`UPDATE marketplace.order_revisions SET leaf_index = $3 WHERE order_id = $1 AND revision = $2`, a.RecordID, a.Revision, a.LeafIndex)
		b.Queue(`UPDATE marketplace.orders SET leaf_index = $3 WHERE order_id = $1 AND revision = $2`, a.RecordID, a.Revision, a.LeafIndex)
	}
	return s.pool.SendBatch(ctx, b).Close()
}

// Order returns one of org's orders with its lines.
func (s *Service) Order(ctx context.Context, org, id string) (Order, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Order{}, apperr.Errorf(apperr.NotFound, "no such order")
	}
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM marketplace.orders o WHERE order_id = $1 AND distributor_id = $2`, id, org))
	if err != nil {
		return Order{}, postgres.MapError(err, "no such order", "")
	}
	lines, err := s.lines(ctx, s.pool, []string{id})
	if err != nil {
		return Order{}, err
	}
	o.Lines = lines[id]
	return o, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Service) lines(ctx context.Context, q querier, ids []string) (map[string][]OrderLine, error) {
	rows, err := q.Query(ctx, `
		SELECT l.order_id::text, l.product_id::text, coalesce(p.name, ''), coalesce(p.category, ''), l.quantity, l.delivered, l.unit_price, o.currency
		FROM marketplace.order_lines l JOIN marketplace.orders o USING (order_id)
		LEFT JOIN marketplace.products p ON p.product_id = l.product_id
		WHERE l.order_id = ANY($1::uuid[]) ORDER BY l.order_id, l.line`, ids)
	if err != nil {
		return nil, fmt.Errorf("load order lines: %w", err)
	}
	out := map[string][]OrderLine{}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var id string
		var l OrderLine
		err := r.Scan(&id, &l.ProductID, &l.Name, &l.Category, &l.Quantity, &l.Delivered, &l.UnitPrice.Amount, &l.UnitPrice.Currency)
		out[id] = append(out[id], l)
		return struct{}{}, err
	})
	return out, err
}

// OrderFilter narrows an order listing.
type OrderFilter struct {
	Status string
	Cursor string
	Limit  int
}

// Orders lists org's orders, newest first, by cursor.
func (s *Service) Orders(ctx context.Context, org string, f OrderFilter) (Page[Order], error) {
	cur, limit, err := pageArgs(f.Cursor, f.Limit)
	if err != nil {
		return Page[Order]{}, err
	}
	switch f.Status {
	case "", StatusPlaced, StatusAccepted, StatusRejected, StatusCancelled, StatusShipped, StatusDelivered:
	default:
		return Page[Order]{}, apperr.Fields("bad filter", apperr.FieldError{Field: "status", Message: "must be one of: placed accepted rejected cancelled shipped delivered"})
	}
	rows, err := s.readPool.Query(ctx, `
		SELECT `+orderColumns+` FROM marketplace.orders o
		WHERE distributor_id = $1 AND ($2 = 0 OR seq < $2) AND ($3 = '' OR status = $3)
		ORDER BY seq DESC LIMIT $4`, org, cur, f.Status, limit+1)
	if err != nil {
		return Page[Order]{}, fmt.Errorf("list orders: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) { return scanOrder(r) })
	if err != nil {
		return Page[Order]{}, fmt.Errorf("list orders: %w", err)
	}
	page := paginate(items, limit, func(o Order) int64 { return o.seq })
	ids := make([]string, len(page.Items))
	for i, o := range page.Items {
		ids[i] = o.ID
	}
	lines, err := s.lines(ctx, s.readPool, ids)
	if err != nil {
		return Page[Order]{}, err
	}
	for i := range page.Items {
		page.Items[i].Lines = lines[page.Items[i].ID]
	}
	return page, nil
}

// Transition is a distributor's action on an order.
type Transition string

// The actions.
const (
	Accept Transition = "accept"
	Reject Transition = "reject"
	Cancel Transition = "cancel"
	Ship   Transition = "ship"
)

// ErrTransition is the conflict of an action the order's status does not
// allow.
var ErrTransition = errors.New("transition not allowed")

// Act applies a distributor's action to one of org's orders: accept
// confirms an order whose stock was reserved when it was placed (an order
// placed before reservation at placement reserves it now, refused if any
// line exceeds it), reject (placed or accepted orders) and cancel (an
// order the distributor placed itself, not yet shipped) give the stock
// back, ship follows accept. Each action is a journal revision of the
// order.
func (s *Service) Act(ctx context.Context, p identity.Principal, id string, t Transition, reason string) (Order, error) {
	org := p.OrganizationID
	if _, err := uuid.Parse(id); err != nil {
		return Order{}, apperr.Errorf(apperr.NotFound, "no such order")
	}
	if (t == Reject || t == Cancel) && (len(reason) < 1 || len(reason) > 500) {
		return Order{}, apperr.Fields("bad "+string(t), apperr.FieldError{Field: "reason", Message: "must be 1 to 500 characters: the agent tells the farmer why"})
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		o, err := scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM marketplace.orders o WHERE order_id = $1 AND distributor_id = $2 FOR UPDATE`, id, org))
		if err != nil {
			return postgres.MapError(err, "no such order", "")
		}
		lines, err := s.lines(ctx, tx, []string{id})
		if err != nil {
			return err
		}
		o.Lines = lines[id]
		from := o.Status
		switch {
		case t == Accept && from == StatusPlaced:
			if !o.stockReserved {
				short, left, err := reserveStock(ctx, tx, org, o.Lines)
				if err != nil {
					return err
				}
				if short >= 0 {
					l := o.Lines[short]
					return apperr.Errorf(apperr.Conflict, "stock of %q (%d packs) is below the %d packs ordered; restock or reject the order", l.Name, left, l.Quantity)
				}
				o.stockReserved = true
			}
			o.Status = StatusAccepted
		case (t == Reject && (from == StatusPlaced || from == StatusAccepted)) ||
			(t == Cancel && o.Source == "distributor" && (from == StatusPlaced || from == StatusAccepted)):
			if o.stockReserved {
				if err := releaseStock(ctx, tx, org, o.Lines); err != nil {
					return err
				}
				o.stockReserved = false
			}
			o.Status, o.RejectReason = StatusRejected, reason
			if t == Cancel {
				o.Status = StatusCancelled
			}
		case t == Cancel && o.Source != "distributor":
			return apperr.Wrap(apperr.Conflict, ErrTransition, "the farmer's agent placed this order; reject it instead (the agent tells the farmer why)")
		case t == Ship && from == StatusAccepted:
			o.Status = StatusShipped
		default:
			return apperr.Wrap(apperr.Conflict, ErrTransition, "cannot %s an order that is %s", t, from)
		}
		o.Revision++
		if _, err := tx.Exec(ctx, `
			UPDATE marketplace.orders SET status = $2, reject_reason = nullif($3, ''), revision = $4, leaf_index = NULL, updated_at = now(), stock_reserved = $5
			WHERE order_id = $1`,
			id, o.Status, o.RejectReason, o.Revision, o.stockReserved); err != nil {
			return fmt.Errorf("update order: %w", err)
		}
		return s.writeRevision(ctx, tx, &o, o.Revision, "order.updated", "distributor="+org+" "+p.Credential(), "")
	})
	if err != nil {
		return Order{}, err
	}
	s.journalOrder(ctx, id)
	return s.Order(ctx, org, id)
}

// OrderReceipt is the journal receipt of one revision of an order.
type OrderReceipt struct {
	Revision  int             `json:"revision"`
	Kind      string          `json:"kind"`
	LeafIndex *int64          `json:"leaf_index,omitempty"`
	Receipt   json.RawMessage `json:"receipt,omitempty"`
	Pending   string          `json:"pending,omitempty"`
}

// OrderReceipts returns a receipt for every revision of one of org's
// orders (a revision not journaled yet says so).
func (s *Service) OrderReceipts(ctx context.Context, org, id string) ([]OrderReceipt, error) {
	if _, err := s.Order(ctx, org, id); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT revision, kind, leaf_index FROM marketplace.order_revisions WHERE order_id = $1 ORDER BY revision`, id)
	if err != nil {
		return nil, fmt.Errorf("order revisions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OrderReceipt, error) {
		var o OrderReceipt
		return o, r.Scan(&o.Revision, &o.Kind, &o.LeafIndex)
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].LeafIndex == nil {
			out[i].Pending = "not journaled yet; retry in a few seconds"
			continue
		}
		rc, err := s.journal.Receipt(ctx, id, int64(out[i].Revision))
		if err != nil {
			return nil, err
		}
		out[i].Receipt, err = json.Marshal(rc)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
