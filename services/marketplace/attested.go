package marketplace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger"
)

// attested is attest's announcement of a decision (farm.attested.<type>).
type attested struct {
	RecordID  string `json:"record_id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	LeafIndex *int64 `json:"leaf_index,omitempty"`
	Decision  int    `json:"decision"`
}

// HandleAttested handles a batch of attest's decisions. A verified
// order.placed record is projected into the distributor's orders and a
// verified delivery.confirmed record into its deliveries (redeeming the
// order's voucher), one by one and in stream order. Records attest did not
// verify change nothing: a flagged one may come back verified after
// review, in a later announcement. The record is read from the journal,
// the only copy whose receipt a bank can check. Decisions on farmer, plot
// and crop records, whatever they are, update the demand outlook's plan,
// all of the batch's at once (ApplyDemandRecords): one recomputation per
// record cost a transaction of a dozen statements each, the largest share
// of Postgres's time on the all-in-one path.
func (s *Service) HandleAttested(ctx context.Context, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	var demand []int // messages whose record moves the plan
	var records []string
	for i, msg := range msgs {
		var a attested
		if err := json.Unmarshal(msg.Data(), &a); err != nil {
			errs[i] = apperr.Wrap(apperr.Invalid, err, "undecodable attest decision")
			continue
		}
		switch {
		case demandRecordTypes[a.Type]: // whatever the decision: a rejection takes a record out
			if !validLowerUUID(a.RecordID) {
				errs[i] = apperr.Errorf(apperr.Invalid, "demand plan: bad record id %q", a.RecordID)
				continue
			}
			demand, records = append(demand, i), append(records, a.RecordID)
		case a.Status == "verified":
			errs[i] = s.ProjectVerified(ctx, a.RecordID, msg.Headers().Get(natsbus.HeaderAgentID))
		}
	}
	if len(records) == 0 {
		return errs
	}
	if err := s.ApplyDemandRecords(ctx, records...); err != nil {
		// One by one, so that a record that can never apply fails alone
		// and the others are not redelivered with it.
		for k, i := range demand {
			errs[i] = s.ApplyDemandRecords(ctx, records[k])
		}
	}
	return errs
}

// ProjectVerified projects one verified record (see HandleAttested).
func (s *Service) ProjectVerified(ctx context.Context, recordID, agentID string) error {
	rev, err := s.journal.Current(ctx, recordID, ledger.AsOf{})
	if err != nil {
		return fmt.Errorf("journal entry of verified record %s: %w", recordID, err)
	}
	if rev.Payload == nil {
		return nil // erased since: nothing to project
	}
	rec, problems := record.Check(s.validator, rev.Payload, s.now())
	if len(problems) > 0 {
		return apperr.Fields(fmt.Sprintf("journaled record %s does not check", recordID), problems...)
	}
	switch p := rec.Payload.(type) {
	case *record.OrderPlaced:
		return s.projectOrder(ctx, rec, p, agentID, rev.LeafIndex)
	case *record.DeliveryConfirmed:
		if err := s.projectDelivery(ctx, rec, p, agentID, rev.LeafIndex); err != nil {
			return err
		}
		return s.redeem(ctx, recordID)
	}
	return nil
}

func (s *Service) projectOrder(ctx context.Context, rec record.Record, p *record.OrderPlaced, agentID string, leaf int64) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var existing string
		err := tx.QueryRow(ctx, `SELECT coalesce(record_id::text, '') FROM marketplace.orders WHERE order_id = $1`, p.OrderID).Scan(&existing)
		switch {
		case err == nil && existing == rec.Env.ID:
			return nil // projected already
		case err == nil:
			return apperr.Errorf(apperr.Conflict, "order %s exists already; record %s cannot place it again", p.OrderID, rec.Env.ID)
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("order %s: %w", p.OrderID, err)
		}
		ids := make([]string, len(p.Items))
		for i, it := range p.Items {
			ids[i] = it.ProductID
		}
		cat, err := loadCatalog(ctx, tx, p.DistributorID, ids)
		if err != nil {
			return err
		}
		erased, err := eraser.Fence(ctx, tx, []string{p.FarmerID})
		if err != nil {
			return err
		}
		if erased.Has(p.FarmerID) {
			return nil // the farmer asked to be forgotten since the record was verified
		}
		o := Order{ID: p.OrderID, FarmerID: p.FarmerID, Source: "agent", RecordID: rec.Env.ID, AgentID: agentID, PlotID: p.PlotID,
			Payment: p.Payment, VoucherID: p.VoucherID, Total: Money{Amount: p.Total.Amount, Currency: p.Total.Currency},
			Status: StatusPlaced, PlacedAt: rec.Env.Captured()}
		for _, it := range p.Items {
			c := cat[it.ProductID]
			o.Lines = append(o.Lines, OrderLine{ProductID: it.ProductID, Name: c.name, Category: c.category, Quantity: it.Quantity,
				UnitPrice: Money{Amount: it.UnitPrice.Amount, Currency: it.UnitPrice.Currency}})
		}
		// The stock is reserved as the order arrives. mobile-api refused
		// an order above the stock at /sync, but the stock may have gone
		// to other orders since: the signed order is then kept and
		// rejected at once, with the reason the agent reads to the farmer.
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		short, left, err := reserveStock(ctx, sp, p.DistributorID, o.Lines)
		if err != nil {
			sp.Rollback(ctx)
			return err
		}
		if short >= 0 {
			if err := sp.Rollback(ctx); err != nil {
				return err
			}
		} else {
			if err := sp.Commit(ctx); err != nil {
				return err
			}
			o.stockReserved = true
		}
		by := fmt.Sprintf("record=%s leaf=%d agent=%s", rec.Env.ID, leaf, agentID)
		if err := s.insertOrder(ctx, tx, p.DistributorID, &o, by); err != nil {
			return err
		}
		if short < 0 {
			return nil
		}
		l := o.Lines[short]
		o.Status, o.RejectReason, o.Revision = StatusRejected, fmt.Sprintf("out of stock: %d packs of %q left, %d ordered", left, l.Name, l.Quantity), 2
		if _, err := tx.Exec(ctx, `UPDATE marketplace.orders SET status = $2, reject_reason = $3, revision = 2, leaf_index = NULL, updated_at = now() WHERE order_id = $1`,
			o.ID, o.Status, o.RejectReason); err != nil {
			return fmt.Errorf("reject order %s: %w", o.ID, err)
		}
		return s.writeRevision(ctx, tx, &o, 2, "order.updated", "marketplace stock "+by, "")
	})
	if err != nil {
		return err
	}
	s.journalOrder(ctx, p.OrderID)
	return nil
}

func (s *Service) projectDelivery(ctx context.Context, rec record.Record, p *record.DeliveryConfirmed, agentID string, leaf int64) error {
	receipt, err := s.journal.Receipt(ctx, rec.Env.ID, 0)
	if err != nil {
		return fmt.Errorf("receipt of delivery %s: %w", rec.Env.ID, err)
	}
	receiptJSON, err := json.Marshal(receipt)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(receiptJSON)
	items, _ := json.Marshal(p.Items)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM marketplace.deliveries WHERE record_id = $1)`, rec.Env.ID).Scan(&done); err != nil {
			return err
		}
		if done {
			return nil
		}
		erased, err := eraser.Fence(ctx, tx, []string{p.FarmerID})
		if err != nil {
			return err
		}
		if erased.Has(p.FarmerID) {
			return nil // the farmer asked to be forgotten since the record was verified
		}
		o, err := scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM marketplace.orders o WHERE order_id = $1 FOR UPDATE`, p.OrderID))
		if err != nil {
			return apperr.Wrap(apperr.Invalid, postgres.MapError(err, "no such order", ""), "delivery %s is for order %s, which the marketplace does not hold", rec.Env.ID, p.OrderID)
		}
		if o.FarmerID != p.FarmerID {
			return apperr.Errorf(apperr.Invalid, "delivery %s names farmer %s, but order %s is farmer %s's", rec.Env.ID, p.FarmerID, o.ID, o.FarmerID)
		}
		var org string
		if err := tx.QueryRow(ctx, `SELECT distributor_id::text FROM marketplace.orders WHERE order_id = $1`, o.ID).Scan(&org); err != nil {
			return err
		}
		lines, err := s.lines(ctx, tx, []string{o.ID})
		if err != nil {
			return err
		}
		o.Lines = lines[o.ID]
		byProduct := map[string]*OrderLine{}
		for i := range o.Lines {
			byProduct[o.Lines[i].ProductID] = &o.Lines[i]
		}
		var value int64
		for _, it := range p.Items {
			l := byProduct[it.ProductID]
			if l == nil || l.Delivered+it.Quantity > l.Quantity {
				// attest's delivery.order rule refuses this; two deliveries
				// decided in one batch could still add up past the order.
				return apperr.Errorf(apperr.Invalid, "delivery %s exceeds what order %s left to deliver of product %s", rec.Env.ID, o.ID, it.ProductID)
			}
			l.Delivered += it.Quantity
			value += it.Quantity * l.UnitPrice.Amount
			if _, err := tx.Exec(ctx, `UPDATE marketplace.order_lines SET delivered = delivered + $3 WHERE order_id = $1 AND product_id = $2`,
				o.ID, it.ProductID, it.Quantity); err != nil {
				return fmt.Errorf("order line delivered: %w", err)
			}
		}
		redemption := "none"
		var voucher *string
		if o.Payment == "voucher" && o.VoucherID != "" {
			redemption, voucher = "pending", &o.VoucherID
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO marketplace.deliveries (record_id, order_id, distributor_id, farmer_id, agent_id, items, value, currency, received_on, captured_at,
			                                    lat, lon, photo_hash, leaf_index, receipt, receipt_sha256, voucher_id, redemption)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
			rec.Env.ID, o.ID, org, p.FarmerID, agentID, items, value, o.Total.Currency, p.ReceivedOn, rec.Env.Captured(),
			*rec.Env.Location.Lat, *rec.Env.Location.Lon, p.PhotoHash, leaf, receiptJSON, hex.EncodeToString(sum[:]), voucher, redemption); err != nil {
			return fmt.Errorf("insert delivery: %w", err)
		}
		if err := events.Record(ctx, tx, events.Event{ID: events.DeriveID(events.DeliveryConfirmed, rec.Env.ID), Type: events.DeliveryConfirmed,
			OrganizationID: org, FarmerID: p.FarmerID, OccurredAt: rec.Env.Captured(),
			Data: map[string]any{"delivery_id": rec.Env.ID, "order_id": o.ID, "leaf_index": leaf, "voucher_id": o.VoucherID}}); err != nil {
			return err
		}
		complete := true
		for _, l := range o.Lines {
			complete = complete && l.Delivered == l.Quantity
		}
		if complete && o.Status != StatusDelivered {
			o.Status = StatusDelivered
			o.Revision++
			if _, err := tx.Exec(ctx, `UPDATE marketplace.orders SET status = 'delivered', revision = $2, leaf_index = NULL, updated_at = now() WHERE order_id = $1`,
				o.ID, o.Revision); err != nil {
				return err
			}
			return s.writeRevision(ctx, tx, &o, o.Revision, "order.updated", fmt.Sprintf("record=%s leaf=%d agent=%s", rec.Env.ID, leaf, agentID), rec.Env.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.journalOrder(ctx, p.OrderID)
	return nil
}

// redeem redeems the voucher of a pending delivery on the chain. A refusal
// by the chain is final and recorded; any other failure is recorded and
// retried by the sweeper.
func (s *Service) redeem(ctx context.Context, recordID string) error {
	var d struct {
		voucher, org, region, receipt string
		leaf                          int64
	}
	err := s.pool.QueryRow(ctx, `
		SELECT d.voucher_id::text, d.distributor_id::text, o.region, d.receipt_sha256, d.leaf_index
		FROM marketplace.deliveries d JOIN marketplace.orders o USING (order_id)
		WHERE d.record_id = $1 AND d.redemption = 'pending'`, recordID).Scan(&d.voucher, &d.org, &d.region, &d.receipt, &d.leaf)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delivery %s: %w", recordID, err)
	}
	goods, err := s.goodsOf(ctx, recordID)
	if err != nil {
		return err
	}
	if s.vouchers == nil {
		_, err := s.pool.Exec(ctx, `UPDATE marketplace.deliveries SET redemption_error = $2 WHERE record_id = $1`, recordID,
			"no vouchers chaincode is configured; the redemption waits for one")
		return err
	}
	tx, rerr := s.vouchers.Redeem(ctx, d.voucher, Redemption{DistributorOrg: d.org, DeliveryID: recordID, LeafIndex: d.leaf, ReceiptSHA256: d.receipt, Region: d.region, Goods: goods})
	switch {
	case rerr == nil:
		return s.redeemed(ctx, recordID, d.voucher, d.org, tx)
	case errors.Is(rerr, ErrVoucherRefused):
		_, err = s.pool.Exec(ctx, `UPDATE marketplace.deliveries SET redemption = 'refused', redemption_error = $2 WHERE record_id = $1`, recordID, rerr.Error())
		s.logger.WarnContext(ctx, "voucher redemption refused by the chain", "delivery", recordID, "voucher", d.voucher, "err", rerr)
		return err
	}
	if _, err := s.pool.Exec(ctx, `UPDATE marketplace.deliveries SET redemption_error = $2 WHERE record_id = $1`, recordID, rerr.Error()); err != nil {
		return err
	}
	s.logger.WarnContext(ctx, "voucher redemption failed (retried)", "delivery", recordID, "voucher", d.voucher, "err", rerr)
	return nil
}

// redeemed records a redemption the chain committed and tells the
// distributor and, when the projection already names it, the issuing bank.
func (s *Service) redeemed(ctx context.Context, recordID, voucher, org, txID string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := s.now()
		var farmer string
		if err := tx.QueryRow(ctx, `
			UPDATE marketplace.deliveries SET redemption = 'redeemed', redemption_tx = $2, redemption_error = NULL, redeemed_at = $3 WHERE record_id = $1
			RETURNING farmer_id::text`, recordID, txID, now).Scan(&farmer); err != nil {
			return fmt.Errorf("record redemption of %s: %w", voucher, err)
		}
		data := map[string]any{"voucher_id": voucher, "delivery_id": recordID, "tx_id": txID}
		evs := []events.Event{{ID: events.DeriveID(events.VoucherRedeemed, voucher+":"+org), Type: events.VoucherRedeemed, OrganizationID: org,
			FarmerID: farmer, OccurredAt: now, Data: data}}
		var bank *string
		err := tx.QueryRow(ctx, `SELECT bank_org::text FROM vouchers.voucher_states WHERE id = $1`, voucher).Scan(&bank)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("voucher %s: %w", voucher, err)
		}
		if bank != nil {
			evs = append(evs, events.Event{ID: events.DeriveID(events.VoucherRedeemed, voucher+":"+*bank), Type: events.VoucherRedeemed,
				OrganizationID: *bank, FarmerID: farmer, OccurredAt: now, Data: data})
		}
		return events.RecordAll(ctx, tx, evs)
	})
}

// goodsOf sums a delivery's value by input category.
func (s *Service) goodsOf(ctx context.Context, recordID string) ([]Goods, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT p.category, sum((i.quantity)::bigint * l.unit_price), d.currency
		FROM marketplace.deliveries d
		CROSS JOIN LATERAL jsonb_to_recordset(d.items) AS i(product_id uuid, quantity bigint)
		JOIN marketplace.order_lines l ON l.order_id = d.order_id AND l.product_id = i.product_id
		JOIN marketplace.products p ON p.product_id = i.product_id
		WHERE d.record_id = $1 GROUP BY p.category, d.currency ORDER BY p.category`, recordID)
	if err != nil {
		return nil, fmt.Errorf("goods of delivery %s: %w", recordID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Goods, error) {
		var g Goods
		return g, r.Scan(&g.Category, &g.Minor, &g.Currency)
	})
}

// redeemPending retries every pending redemption.
func (s *Service) redeemPending(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT record_id::text FROM marketplace.deliveries WHERE redemption = 'pending' ORDER BY seq LIMIT 100`)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	var errs []string
	for _, id := range ids {
		if err := s.redeem(ctx, id); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Delivery is a verified delivery as the distributor sees it.
type Delivery struct {
	RecordID   string          `json:"record_id"`
	OrderID    string          `json:"order_id"`
	FarmerID   string          `json:"farmer_id"`
	AgentID    string          `json:"agent_id"`
	Items      json.RawMessage `json:"items"`
	Value      Money           `json:"value"`
	ReceivedOn string          `json:"received_on"`
	CapturedAt time.Time       `json:"captured_at"`
	// Lat, Lon and PhotoHash are where the agent's phone confirmed the
	// delivery and the photo of the goods: null once the farmer was
	// erased (FarmerErased; FarmerID is then a pseudonym).
	Lat             *float64        `json:"lat"`
	Lon             *float64        `json:"lon"`
	PhotoHash       *string         `json:"photo_sha256"`
	FarmerErased    bool            `json:"farmer_erased,omitempty"`
	LeafIndex       int64           `json:"leaf_index"`
	ReceiptSHA256   string          `json:"receipt_sha256"`
	Receipt         json.RawMessage `json:"receipt,omitempty"`
	VoucherID       string          `json:"voucher_id,omitempty"`
	Redemption      string          `json:"redemption"`
	RedemptionTx    string          `json:"redemption_tx,omitempty"`
	RedemptionError string          `json:"redemption_error,omitempty"`
	seq             int64
}

// Place is where the delivery was confirmed ("lat, lon" to 4 decimals),
// or "" once erased with the farmer.
func (d Delivery) Place() string {
	if d.Lat == nil || d.Lon == nil {
		return ""
	}
	return fmt.Sprintf("%.4f, %.4f", *d.Lat, *d.Lon)
}

const deliveryColumns = `record_id::text, seq, order_id::text, farmer_id::text, agent_id::text, items, value, currency, received_on::text, captured_at,
	lat, lon, photo_hash, farmer_erased, leaf_index, receipt_sha256, coalesce(voucher_id::text, ''), redemption, coalesce(redemption_tx, ''), coalesce(redemption_error, '')`

func scanDelivery(r pgx.Row) (Delivery, error) {
	var d Delivery
	err := r.Scan(&d.RecordID, &d.seq, &d.OrderID, &d.FarmerID, &d.AgentID, &d.Items, &d.Value.Amount, &d.Value.Currency, &d.ReceivedOn, &d.CapturedAt,
		&d.Lat, &d.Lon, &d.PhotoHash, &d.FarmerErased, &d.LeafIndex, &d.ReceiptSHA256, &d.VoucherID, &d.Redemption, &d.RedemptionTx, &d.RedemptionError)
	return d, err
}

// DeliveryFilter narrows a delivery listing: Voucher lists only
// voucher-paid deliveries (the vouchers presented for redemption).
type DeliveryFilter struct {
	Voucher bool
	Cursor  string
	Limit   int
}

// Deliveries lists org's verified deliveries, newest first.
func (s *Service) Deliveries(ctx context.Context, org string, f DeliveryFilter) (Page[Delivery], error) {
	cur, limit, err := pageArgs(f.Cursor, f.Limit)
	if err != nil {
		return Page[Delivery]{}, err
	}
	rows, err := s.readPool.Query(ctx, `
		SELECT `+deliveryColumns+` FROM marketplace.deliveries
		WHERE distributor_id = $1 AND ($2 = 0 OR seq < $2) AND (NOT $3 OR voucher_id IS NOT NULL)
		ORDER BY seq DESC LIMIT $4`, org, cur, f.Voucher, limit+1)
	if err != nil {
		return Page[Delivery]{}, fmt.Errorf("list deliveries: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return Page[Delivery]{}, fmt.Errorf("list deliveries: %w", err)
	}
	return paginate(items, limit, func(d Delivery) int64 { return d.seq }), nil
}

// Delivery returns one of org's deliveries with its journal receipt.
func (s *Service) Delivery(ctx context.Context, org, id string) (Delivery, error) {
	if !validLowerUUID(id) {
		return Delivery{}, apperr.Errorf(apperr.NotFound, "no such delivery")
	}
	var receipt json.RawMessage
	row := s.pool.QueryRow(ctx, `SELECT `+deliveryColumns+`, receipt FROM marketplace.deliveries WHERE record_id = $1 AND distributor_id = $2`, id, org)
	var d Delivery
	err := row.Scan(&d.RecordID, &d.seq, &d.OrderID, &d.FarmerID, &d.AgentID, &d.Items, &d.Value.Amount, &d.Value.Currency, &d.ReceivedOn, &d.CapturedAt,
		&d.Lat, &d.Lon, &d.PhotoHash, &d.FarmerErased, &d.LeafIndex, &d.ReceiptSHA256, &d.VoucherID, &d.Redemption, &d.RedemptionTx, &d.RedemptionError, &receipt)
	if err != nil {
		return Delivery{}, postgres.MapError(err, "no such delivery", "")
	}
	d.Receipt = receipt
	return d, nil
}
