package lending

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/events"
)

// stateEvent is the event a bank is told of when one of its loans moves
// into a state (internal/events catalogue); false for declined and
// expired loans, which have no event type.
func stateEvent(to State) (events.Event, bool) {
	switch to {
	case Applied:
		return events.Event{Type: events.LoanApplied}, true
	case Offered:
		return events.Event{Type: events.LoanOffered}, true
	case Accepted:
		return events.Event{Type: events.LoanAccepted}, true
	case Disbursed:
		return events.Event{Type: events.LoanDisbursed}, true
	case Repaid:
		return events.Event{Type: events.LoanRepaid}, true
	case InArrears:
		return events.Event{Type: events.LoanInArrears}, true
	case Restructured:
		return events.Event{Type: events.LoanRestructured}, true
	case WrittenOff:
		return events.Event{Type: events.LoanWrittenOff}, true
	}
	return events.Event{}, false
}

// loanEventData is what a loan event carries: ids and links, never the
// farmer's data (the bank fetches the loan through the API).
type loanEventData struct {
	LoanID    string `json:"loan_id"`
	FarmerID  string `json:"farmer_id"`
	ProductID string `json:"product_id"`
	State     State  `json:"state"`
	From      *State `json:"from"`
	Revision  int    `json:"revision"`
	Kind      string `json:"journal_kind"`
	LoanPath  string `json:"loan_path"`
	// DaysPastDue, for loan.in_arrears and repayment.overdue.
	DaysPastDue *int `json:"days_past_due,omitempty"`
}

// recordStateEvent records, in tx, the event of l's move to its current
// state as journal revision rev (nothing for a move without an event type
// or a cure). A loan falling into arrears is also repayment.overdue.
func recordStateEvent(ctx context.Context, tx pgx.Tx, l *loan, from *State, kind string, at time.Time, dpd *int) error {
	ev, ok := stateEvent(l.State)
	if !ok || kind == "loan.cured" {
		return nil
	}
	data := loanEventData{LoanID: l.ID, FarmerID: l.FarmerID, ProductID: l.ProductID, State: l.State, From: from, Revision: l.Revision,
		Kind: kind, LoanPath: "/bank/v1/loans/" + l.ID, DaysPastDue: dpd}
	key := fmt.Sprintf("%s:%d", l.ID, l.Revision)
	ev.ID, ev.OrganizationID, ev.FarmerID, ev.OccurredAt, ev.Data = events.DeriveID(ev.Type, key), l.OrgID, l.FarmerID, at, data
	evs := []events.Event{ev}
	if l.State == InArrears {
		evs = append(evs, events.Event{ID: events.DeriveID(events.RepaymentOverdue, key), Type: events.RepaymentOverdue,
			OrganizationID: l.OrgID, FarmerID: l.FarmerID, OccurredAt: at, Data: data})
	}
	return events.RecordAll(ctx, tx, evs)
}

// repaymentEventData is what repayment.received carries.
type repaymentEventData struct {
	RepaymentID    string `json:"repayment_id"`
	LoanID         string `json:"loan_id"`
	FarmerID       string `json:"farmer_id"`
	PayerReference string `json:"payer_reference"`
	Amount         Money  `json:"amount"`
	Balance        Money  `json:"balance"`
	Channel        string `json:"channel"`
	LoanPath       string `json:"loan_path"`
}

// queueRepaymentEvents queues on b (sent in the transaction that stores
// the repayments) repayment.received for each repayment applied.
func queueRepaymentEvents(b *pgx.Batch, results []RepaymentResult, loans map[string]*loan, at time.Time) error {
	var evs []events.Event
	for _, r := range results {
		if r.Status != "applied" {
			continue
		}
		l := loans[r.Repayment.LoanID]
		evs = append(evs, events.Event{ID: events.DeriveID(events.RepaymentReceived, r.Repayment.ID), Type: events.RepaymentReceived,
			OrganizationID: l.OrgID, FarmerID: l.FarmerID, OccurredAt: at, Data: repaymentEventData{
				RepaymentID: r.Repayment.ID, LoanID: l.ID, FarmerID: l.FarmerID, PayerReference: r.Repayment.PayerReference, Amount: r.Repayment.Amount,
				Balance: *r.Balance, Channel: r.Repayment.Channel, LoanPath: "/bank/v1/loans/" + l.ID}})
	}
	return events.QueueAll(b, evs)
}
