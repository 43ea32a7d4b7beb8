package marketplace

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
)

// EPCIS 2.0 export (GS1 EPCIS 2.0 / CBV 2.0, JSON-LD binding): each
// verified delivery is an ObjectEvent — goods observed being received at
// the farm (bizStep receiving, disposition in_progress), read where the
// agent's phone was, against the order as a purchase order, from the
// distributor to the farmer. Product classes and parties are Tani URNs:
// Tani's products have no GTIN of their own. Tani's own members (the
// journal leaf and receipt hash that prove the event) are extensions in
// the tani: namespace, as EPCIS 2.0 allows.

// EPCISContext is the standard's JSON-LD context.
const EPCISContext = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"

// TaniNamespace is the JSON-LD namespace of Tani's extension members.
const TaniNamespace = "https://tani.example/epcis/"

// EPCISDocument is an EPCIS 2.0 document of events.
type EPCISDocument struct {
	Context       []any     `json:"@context"`
	Type          string    `json:"type"`
	SchemaVersion string    `json:"schemaVersion"`
	CreationDate  string    `json:"creationDate"`
	Body          EPCISBody `json:"epcisBody"`
}

// EPCISBody holds the events: ObjectEvent and TransactionEvent values.
type EPCISBody struct {
	EventList []any `json:"eventList"`
}

// ObjectEvent is the EPCIS event of one verified delivery (goods
// received at the farm) or harvest (produce created at the plot).
type ObjectEvent struct {
	Type                string              `json:"type"`
	EventTime           string              `json:"eventTime"`
	EventTimeZoneOffset string              `json:"eventTimeZoneOffset"`
	EventID             string              `json:"eventID"`
	Action              string              `json:"action"`
	BizStep             string              `json:"bizStep"`
	Disposition         string              `json:"disposition"`
	ReadPoint           map[string]string   `json:"readPoint,omitempty"`
	BizLocation         map[string]string   `json:"bizLocation,omitempty"`
	QuantityList        []EPCISQuantity     `json:"quantityList"`
	BizTransactionList  []map[string]string `json:"bizTransactionList,omitempty"`
	SourceList          []map[string]string `json:"sourceList,omitempty"`
	DestinationList     []map[string]string `json:"destinationList,omitempty"`
	// ILMD is the lot's master data of produce a harvest created.
	ILMD          map[string]string `json:"ilmd,omitempty"`
	JournalLeaf   int64             `json:"tani:journalLeaf"`
	ReceiptSHA256 string            `json:"tani:receiptSHA256,omitempty"`
}

// TransactionEvent is the EPCIS event of one verified sale: produce
// associated with the sale as a business transaction.
type TransactionEvent struct {
	Type                string              `json:"type"`
	EventTime           string              `json:"eventTime"`
	EventTimeZoneOffset string              `json:"eventTimeZoneOffset"`
	EventID             string              `json:"eventID"`
	Action              string              `json:"action"`
	BizStep             string              `json:"bizStep"`
	Disposition         string              `json:"disposition"`
	BizTransactionList  []map[string]string `json:"bizTransactionList"`
	QuantityList        []EPCISQuantity     `json:"quantityList"`
	SourceList          []map[string]string `json:"sourceList"`
	Buyer               string              `json:"tani:buyer"`
	Price               Money               `json:"tani:price"`
	SoldOn              string              `json:"tani:soldOn"`
	JournalLeaf         int64               `json:"tani:journalLeaf"`
}

// EPCISQuantity is a quantity of a product class.
type EPCISQuantity struct {
	EPCClass string  `json:"epcClass"`
	Quantity float64 `json:"quantity"`
	UOM      string  `json:"uom,omitempty"`
}

// uomOf is the UN/ECE Recommendation 20 code of a pack unit.
func uomOf(unit string) string {
	switch unit {
	case "kg":
		return "KGM"
	case "l":
		return "LTR"
	}
	return "" // counted units: the quantity is a count
}

// epcisDocument is an empty EPCIS document created now.
func (s *Service) epcisDocument() EPCISDocument {
	return EPCISDocument{
		Context:       []any{EPCISContext, map[string]string{"tani": TaniNamespace}},
		Type:          "EPCISDocument",
		SchemaVersion: "2.0",
		CreationDate:  s.now().UTC().Format(time.RFC3339),
		Body:          EPCISBody{EventList: []any{}},
	}
}

// EPCIS returns org's verified deliveries as an EPCIS document, newest
// first by cursor, and the next cursor.
func (s *Service) EPCIS(ctx context.Context, org, cursor string, limit int) (EPCISDocument, string, error) {
	page, err := s.Deliveries(ctx, org, DeliveryFilter{Cursor: cursor, Limit: limit})
	if err != nil {
		return EPCISDocument{}, "", err
	}
	doc := s.epcisDocument()
	type pack struct {
		size float64
		unit string
	}
	packs := map[string]pack{}
	var ids []string
	for _, d := range page.Items {
		var items []struct {
			ProductID string `json:"product_id"`
		}
		if err := json.Unmarshal(d.Items, &items); err != nil {
			return EPCISDocument{}, "", fmt.Errorf("delivery %s items: %w", d.RecordID, err)
		}
		for _, it := range items {
			ids = append(ids, it.ProductID)
		}
	}
	rows, err := s.readPool.Query(ctx, `SELECT product_id::text, pack_size, pack_unit FROM marketplace.products WHERE product_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return EPCISDocument{}, "", fmt.Errorf("pack sizes: %w", err)
	}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var id string
		var p pack
		err := r.Scan(&id, &p.size, &p.unit)
		packs[id] = p
		return struct{}{}, err
	})
	if err != nil {
		return EPCISDocument{}, "", fmt.Errorf("pack sizes: %w", err)
	}
	for _, d := range page.Items {
		var items []struct {
			ProductID string `json:"product_id"`
			Quantity  int64  `json:"quantity"`
		}
		_ = json.Unmarshal(d.Items, &items)
		ev := ObjectEvent{
			Type: "ObjectEvent", EventTime: d.CapturedAt.UTC().Format(time.RFC3339), EventTimeZoneOffset: "+00:00",
			EventID: "urn:uuid:" + d.RecordID, Action: "OBSERVE", BizStep: "receiving", Disposition: "in_progress",
			BizTransactionList: []map[string]string{{"type": "po", "bizTransaction": "urn:tani:order:" + d.OrderID}},
			SourceList:         []map[string]string{{"type": "owning_party", "source": "urn:tani:organization:" + org}},
			DestinationList:    []map[string]string{{"type": "owning_party", "destination": "urn:tani:farmer:" + d.FarmerID}},
			JournalLeaf:        d.LeafIndex, ReceiptSHA256: d.ReceiptSHA256,
		}
		if d.Lat != nil && d.Lon != nil { // erased with the farmer: no read point
			ev.ReadPoint = map[string]string{"id": fmt.Sprintf("geo:%.6f,%.6f", *d.Lat, *d.Lon)}
		}
		for _, it := range items {
			p := packs[it.ProductID]
			q := EPCISQuantity{EPCClass: "urn:tani:product:" + it.ProductID, Quantity: float64(it.Quantity), UOM: uomOf(p.unit)}
			if q.UOM != "" {
				q.Quantity = float64(it.Quantity) * p.size
			}
			ev.QuantityList = append(ev.QuantityList, q)
		}
		doc.Body.EventList = append(doc.Body.EventList, ev)
	}
	return doc, page.Next, nil
}

func (s *Service) apiEPCIS(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	doc, next, err := s.EPCIS(c.Request().Context(), p.OrganizationID, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	return writeEPCIS(c, doc, next, limit)
}

// writeEPCIS answers with an EPCIS document and, when there is a next
// page, its Link.
func writeEPCIS(c echo.Context, doc EPCISDocument, next string, limit int) error {
	if next != "" {
		q := url.Values{"cursor": {next}}
		if limit > 0 {
			q.Set("limit", fmt.Sprint(limit))
		}
		c.Response().Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", c.Request().URL.Path, q.Encode()))
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/ld+json", body)
}
