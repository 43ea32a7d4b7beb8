package marketplace

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
)

// A farmer's harvests and sales as EPCIS 2.0 events, for the buyers
// downstream of a distributor the farmer consented to (scope harvests,
// scope sales): only records attest verified and journaled, each with its
// journal leaf, read through the consent gate like every farmer read.
//
//   - A harvest is an ObjectEvent, action ADD: produce of one crop (a
//     class, urn:tani:crop:<crop>, in KGM) comes into being at the plot
//     (bizLocation urn:tani:plot:<id>): CBV bizStep creating_class_instance,
//     disposition active; the lot's master data (ILMD) is its quality grade
//     and harvest day.
//   - A sale is a TransactionEvent, action ADD: that produce bound to the
//     sale (bizTransaction urn:tani:sale:<record id>; no CBV transaction
//     type fits a farm-gate sale recorded by the seller, and the type is
//     optional), leaving the farmer (source owning_party) for the buyer:
//     bizStep shipping, disposition in_transit. The buyer as the farmer
//     named them, the price and the day are tani: extension members.

// Harvest and sale vocabulary (CBV 2.0 bare words).
const (
	harvestBizStep     = "creating_class_instance"
	harvestDisposition = "active"
	saleBizStep        = "shipping"
	saleDisposition    = "in_transit"
)

// FarmEPCIS returns one farmer's verified harvests (scope harvests) or
// sales (scope sales) as an EPCIS document, newest first by cursor, read
// through the consent gate for p.
func (s *Service) FarmEPCIS(ctx context.Context, p identity.Principal, requestID, farmerID string, scope consent.Scope, cursor string, limit int) (EPCISDocument, string, error) {
	cur, limit, err := pageArgs(cursor, limit)
	if err != nil {
		return EPCISDocument{}, "", err
	}
	erased, err := eraser.Erased(ctx, s.pool, []string{farmerID})
	if err != nil {
		return EPCISDocument{}, "", err
	}
	if erased.Has(farmerID) {
		return EPCISDocument{}, "", errFarmerErased(farmerID)
	}
	doc := s.epcisDocument()
	var next string
	access := consent.Access{FarmerID: farmerID, Scopes: []consent.Scope{scope}, Purpose: "export " + string(scope) + " as EPCIS events", RequestID: requestID, ReadOnly: true}
	err = s.gate.Read(ctx, p, access, func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
		var events []any
		var seqs []int64
		var err error
		switch scope {
		case consent.Harvests:
			events, seqs, err = harvestEvents(ctx, tx, farmerID, cur, limit+1)
		case consent.Sales:
			events, seqs, err = saleEvents(ctx, tx, farmerID, cur, limit+1)
		default:
			return fmt.Errorf("no EPCIS export of %s", scope)
		}
		if err != nil {
			return err
		}
		if len(events) > limit {
			events = events[:limit]
			next = paginate(seqs, limit, func(n int64) int64 { return n }).Next
		}
		doc.Body.EventList = append(doc.Body.EventList, events...)
		return nil
	})
	if err != nil {
		return EPCISDocument{}, "", err
	}
	return doc, next, nil
}

// A record's page order is its journal leaf; the cursor is leaf + 1 (a
// cursor is positive).

func harvestEvents(ctx context.Context, tx pgx.Tx, farmer string, cur int64, n int) ([]any, []int64, error) {
	rows, err := tx.Query(ctx, `
		SELECT h.record_id::text, h.plot_id::text, h.crop, h.quantity_kg, h.quality_grade, h.harvested_on::text, e.captured_at, e.leaf_index
		FROM ingest.harvest_facts h JOIN attest.evidence e ON e.record_id = h.record_id AND e.status = 'verified'
		WHERE h.farmer_id = $1 AND ($2 = 0 OR e.leaf_index + 1 < $2)
		ORDER BY e.leaf_index DESC LIMIT $3`, farmer, cur, n)
	if err != nil {
		return nil, nil, fmt.Errorf("verified harvests: %w", err)
	}
	var events []any
	var seqs []int64
	var id, plot, crop, grade, day string
	var kg float64
	var at time.Time
	var leaf int64
	_, err = pgx.ForEachRow(rows, []any{&id, &plot, &crop, &kg, &grade, &day, &at, &leaf}, func() error {
		events = append(events, ObjectEvent{
			Type: "ObjectEvent", EventTime: at.UTC().Format(time.RFC3339), EventTimeZoneOffset: "+00:00", EventID: "urn:uuid:" + id,
			Action: "ADD", BizStep: harvestBizStep, Disposition: harvestDisposition,
			BizLocation:  map[string]string{"id": "urn:tani:plot:" + plot},
			QuantityList: []EPCISQuantity{{EPCClass: cropClass(crop), Quantity: kg, UOM: "KGM"}},
			ILMD:         map[string]string{"tani:qualityGrade": grade, "tani:harvestedOn": day},
			JournalLeaf:  leaf,
		})
		seqs = append(seqs, leaf+1)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("verified harvests: %w", err)
	}
	return events, seqs, nil
}

func saleEvents(ctx context.Context, tx pgx.Tx, farmer string, cur int64, n int) ([]any, []int64, error) {
	rows, err := tx.Query(ctx, `
		SELECT s.record_id::text, s.buyer, s.crop, s.quantity_kg, s.price_minor, s.currency, s.sold_on::text, e.captured_at, e.leaf_index
		FROM ingest.sale_facts s JOIN attest.evidence e ON e.record_id = s.record_id AND e.status = 'verified'
		WHERE s.farmer_id = $1 AND ($2 = 0 OR e.leaf_index + 1 < $2)
		ORDER BY e.leaf_index DESC LIMIT $3`, farmer, cur, n)
	if err != nil {
		return nil, nil, fmt.Errorf("verified sales: %w", err)
	}
	var events []any
	var seqs []int64
	var id, buyer, crop, currency, day string
	var kg float64
	var price int64
	var at time.Time
	var leaf int64
	_, err = pgx.ForEachRow(rows, []any{&id, &buyer, &crop, &kg, &price, &currency, &day, &at, &leaf}, func() error {
		events = append(events, TransactionEvent{
			Type: "TransactionEvent", EventTime: at.UTC().Format(time.RFC3339), EventTimeZoneOffset: "+00:00", EventID: "urn:uuid:" + id,
			Action: "ADD", BizStep: saleBizStep, Disposition: saleDisposition,
			BizTransactionList: []map[string]string{{"bizTransaction": "urn:tani:sale:" + id}},
			QuantityList:       []EPCISQuantity{{EPCClass: cropClass(crop), Quantity: kg, UOM: "KGM"}},
			SourceList:         []map[string]string{{"type": "owning_party", "source": "urn:tani:farmer:" + farmer}},
			Buyer:              buyer, Price: Money{Amount: price, Currency: strings.TrimSpace(currency)}, SoldOn: day, JournalLeaf: leaf,
		})
		seqs = append(seqs, leaf+1)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("verified sales: %w", err)
	}
	return events, seqs, nil
}

// cropClass is the EPC class of a crop's produce (Tani's crop codes are
// lower-case words: rice, oil_palm…).
func cropClass(crop string) string { return "urn:tani:crop:" + crop }

func (s *Service) apiFarmEPCIS(scope consent.Scope) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := principal(c)
		if err != nil {
			return err
		}
		limit, err := limitParam(c)
		if err != nil {
			return err
		}
		doc, next, err := s.FarmEPCIS(c.Request().Context(), p, requestID(c), c.Param("id"), scope, c.QueryParam("cursor"), limit)
		if err != nil {
			return err
		}
		return writeEPCIS(c, doc, next, limit)
	}
}
