package events

import (
	"slices"
	"time"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/record"
)

// Type names a kind of event ("consent.revoked"). Every type is in the
// Catalogue.
type Type string

// The event types. Producers record them with Record; organizations
// subscribe to them by these names.
const (
	ConsentAuthorised Type = "consent.authorised" // a farmer granted the organization a consent
	ConsentRevoked    Type = "consent.revoked"    // a farmer revoked a consent of the organization
	ConsentExpiring   Type = "consent.expiring"   // a live consent of the organization expires within 7 days

	EvidenceAttested Type = "evidence.attested" // a consented farmer's record was verified and journaled
	ReviewDecided    Type = "review.decided"    // a supervisor (or a second agent's visit) decided a flagged record of a consented farmer

	LoanApplied       Type = "loan.applied"
	LoanOffered       Type = "loan.offered"
	LoanAccepted      Type = "loan.accepted"
	LoanDisbursed     Type = "loan.disbursed"
	LoanRepaid        Type = "loan.repaid"
	LoanInArrears     Type = "loan.in_arrears"
	LoanRestructured  Type = "loan.restructured"
	LoanWrittenOff    Type = "loan.written_off"
	RepaymentReceived Type = "repayment.received"
	RepaymentOverdue  Type = "repayment.overdue"

	OrderPlaced       Type = "order.placed"
	OrderUpdated      Type = "order.updated"
	DeliveryConfirmed Type = "delivery.confirmed"
	VoucherRedeemed   Type = "voucher.redeemed"
	VoucherSettled    Type = "voucher.settled"
)

// ConsentExpiringAhead is how long before a consent expires its
// consent.expiring event is recorded.
const ConsentExpiringAhead = 7 * 24 * time.Hour

// TypeInfo describes one event type for subscribers and the OpenAPI
// documents.
type TypeInfo struct {
	Type    Type
	Summary string
	// Audience are the kinds of organization that may subscribe to it.
	Audience []identity.Kind
	// Producer is the module that records it.
	Producer string
	// Data is the JSON Schema of the event's data, for the OpenAPI
	// documents' webhooks section.
	Data map[string]any
}

// For reports whether organizations of kind k may receive t.
func (i TypeInfo) For(k identity.Kind) bool { return slices.Contains(i.Audience, k) }

var (
	both         = []identity.Kind{identity.Bank, identity.Distributor}
	banks        = []identity.Kind{identity.Bank}
	distributors = []identity.Kind{identity.Distributor}
)

func object(required []string, props map[string]any) map[string]any {
	return map[string]any{"type": "object", "required": required, "properties": props}
}

var (
	uuidSchema = map[string]any{"type": "string", "format": "uuid"}
	timeSchema = map[string]any{"type": "string", "format": "date-time"}
	scopesList = map[string]any{"type": "array", "items": map[string]any{"type": "string", "enum": scopeNames()}}
)

func scopeNames() []any {
	out := []any{}
	for _, s := range []consent.Scope{consent.Identity, consent.Plots, consent.Crops, consent.Inputs, consent.Harvests, consent.Sales, consent.Credit, consent.Orders} {
		out = append(out, string(s))
	}
	return out
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

// open is the data schema of types whose producer documents its fields in
// its own API (lending, marketplace, vouchers): an object of ids.
func open(desc string) map[string]any {
	return map[string]any{"type": "object", "description": desc, "additionalProperties": true}
}

// consentData is the data of the consent.* events.
var consentData = object([]string{"consent_id", "farmer_id", "scopes", "expires_at", "granted_record_id"}, map[string]any{
	"consent_id":        uuidSchema,
	"farmer_id":         uuidSchema,
	"scopes":            scopesList,
	"expires_at":        timeSchema,
	"granted_record_id": str("the signed consent.granted record; its journal receipt proves the consent"),
	"revoked_at":        timeSchema,
	"revoked_record_id": str("the signed consent.revoked record (consent.revoked)"),
})

// Catalogue lists every event type, in a stable order.
var Catalogue = []TypeInfo{
	{Type: ConsentAuthorised, Summary: "A farmer granted your organization a consent (the signed consent record was stored).", Audience: both, Producer: "ingest", Data: consentData},
	{Type: ConsentRevoked, Summary: "A farmer revoked a consent of your organization: reads under it are refused from now on.", Audience: both, Producer: "ingest", Data: consentData},
	{Type: ConsentExpiring, Summary: "A live consent of your organization expires within 7 days.", Audience: both, Producer: "ingest", Data: consentData},
	{Type: EvidenceAttested, Summary: "A record of a farmer who consented to your organization (covering the record's scope) was verified and journaled; fetch it through the API, prove it with its receipt.", Audience: both, Producer: "attest",
		Data: object([]string{"record_id", "record_type", "farmer_id", "scope", "leaf_index", "receipt_path"}, map[string]any{
			"record_id":    uuidSchema,
			"record_type":  map[string]any{"type": "string", "enum": recordTypes()},
			"farmer_id":    uuidSchema,
			"plot_id":      uuidSchema,
			"scope":        map[string]any{"type": "string", "enum": scopeNames()},
			"leaf_index":   map[string]any{"type": "integer", "description": "the record's index in Tani's journal"},
			"receipt_path": str("path of the record's journal receipt, relative to the Tani API's base URL (/ledger/v1/records/{id}/receipt)"),
		})},
	{Type: ReviewDecided, Summary: "A flagged record of a farmer who consented to your organization was approved or rejected by a supervisor or a second agent's visit.", Audience: both, Producer: "attest",
		Data: object([]string{"review_id", "record_id", "record_type", "farmer_id", "scope", "outcome", "decided_at"}, map[string]any{
			"review_id":   uuidSchema,
			"record_id":   uuidSchema,
			"record_type": map[string]any{"type": "string", "enum": recordTypes()},
			"farmer_id":   uuidSchema,
			"scope":       map[string]any{"type": "string", "enum": scopeNames()},
			"outcome":     map[string]any{"type": "string", "enum": []any{"approved", "rejected"}},
			"method":      map[string]any{"type": "string", "enum": []any{"supervisor_review", "second_agent_visit"}},
			"decided_at":  timeSchema,
		})},
	{Type: LoanApplied, Summary: "A loan was applied for.", Audience: banks, Producer: "lending", Data: open("the loan's ids; see the lending API")},
	{Type: LoanOffered, Summary: "A loan was offered.", Audience: banks, Producer: "lending", Data: open("the loan's ids; see the lending API")},
	{Type: LoanAccepted, Summary: "A loan offer was accepted.", Audience: banks, Producer: "lending", Data: open("the loan's ids; see the lending API")},
	{Type: LoanDisbursed, Summary: "A loan was disbursed.", Audience: banks, Producer: "lending", Data: open("the loan's ids; see the lending API")},
	{Type: LoanRepaid, Summary: "A loan was repaid in full.", Audience: banks, Producer: "lending", Data: open("the loan's ids; see the lending API")},
	{Type: LoanInArrears, Summary: "A loan fell into arrears.", Audience: banks, Producer: "lending", Data: open("the loan's ids; see the lending API")},
	{Type: LoanRestructured, Summary: "A loan was restructured.", Audience: banks, Producer: "lending", Data: open("the loan's ids; see the lending API")},
	{Type: LoanWrittenOff, Summary: "A loan was written off.", Audience: banks, Producer: "lending", Data: open("the loan's ids; see the lending API")},
	{Type: RepaymentReceived, Summary: "A repayment was received.", Audience: banks, Producer: "lending", Data: open("the repayment's ids; see the lending API")},
	{Type: RepaymentOverdue, Summary: "A scheduled repayment is overdue.", Audience: banks, Producer: "lending", Data: open("the repayment's ids; see the lending API")},
	{Type: OrderPlaced, Summary: "An input order was placed.", Audience: distributors, Producer: "marketplace", Data: open("the order's ids; see the distributor API")},
	{Type: OrderUpdated, Summary: "An input order changed state.", Audience: distributors, Producer: "marketplace", Data: open("the order's ids; see the distributor API")},
	{Type: DeliveryConfirmed, Summary: "A delivery of inputs was confirmed.", Audience: distributors, Producer: "marketplace", Data: open("the delivery's ids; see the distributor API")},
	{Type: VoucherRedeemed, Summary: "A voucher was redeemed against a verified delivery.", Audience: both, Producer: "marketplace", Data: open("the voucher's ids; see the vouchers API")},
	{Type: VoucherSettled, Summary: "A redeemed voucher was settled by its bank.", Audience: both, Producer: "lending", Data: open("the voucher's ids; see the vouchers API")},
}

// Lookup returns the catalogue entry of t.
func Lookup(t Type) (TypeInfo, bool) {
	for _, i := range Catalogue {
		if i.Type == t {
			return i, true
		}
	}
	return TypeInfo{}, false
}

// TypesFor lists the types organizations of kind k may subscribe to.
func TypesFor(k identity.Kind) []Type {
	var out []Type
	for _, i := range Catalogue {
		if i.For(k) {
			out = append(out, i.Type)
		}
	}
	return out
}

// RecordScope is the consent scope covering a farm record of type t, for
// the evidence.* and review.* events about it. Consent records have none:
// consents are told by the consent.* events.
func RecordScope(t record.Type) (consent.Scope, bool) {
	switch t {
	case record.TypeFarmerRegistered:
		return consent.Identity, true
	case record.TypePlotMapped:
		return consent.Plots, true
	case record.TypeCropPlanted:
		return consent.Crops, true
	case record.TypeInputApplied:
		return consent.Inputs, true
	case record.TypeHarvestRecorded:
		return consent.Harvests, true
	case record.TypeSaleRecorded:
		return consent.Sales, true
	}
	return "", false
}

func recordTypes() []any {
	var out []any
	for _, t := range []record.Type{record.TypeFarmerRegistered, record.TypePlotMapped, record.TypeCropPlanted, record.TypeInputApplied, record.TypeHarvestRecorded, record.TypeSaleRecorded} {
		out = append(out, string(t))
	}
	return out
}
