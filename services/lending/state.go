package lending

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
)

// State is where a loan is in its life.
type State string

// The states. applied → offered → accepted → disbursed → repaid, with
// in_arrears, restructured and written_off for loans that do not go to
// plan; declined and expired end a loan before it starts.
const (
	Applied      State = "applied"
	Declined     State = "declined"
	Offered      State = "offered"
	Expired      State = "expired"
	Accepted     State = "accepted"
	Disbursed    State = "disbursed"
	InArrears    State = "in_arrears"
	Restructured State = "restructured"
	Repaid       State = "repaid"
	WrittenOff   State = "written_off"
)

// transitions is the state machine: the states each state may move to.
// Anything else is refused with a conflict, so that a loan cannot be
// disbursed before it was accepted, repaid twice, or revived.
var transitions = map[State][]State{
	Applied:      {Offered, Declined},
	Offered:      {Accepted, Expired, Declined},
	Accepted:     {Disbursed},
	Disbursed:    {Repaid, InArrears, Restructured, WrittenOff},
	InArrears:    {Disbursed, Restructured, Repaid, WrittenOff},
	Restructured: {InArrears, Restructured, Repaid, WrittenOff},
}

// servicing are the states of a loan that is out with the farmer: it takes
// repayments, falls due, may be restructured or written off.
var servicing = []State{Disbursed, InArrears, Restructured}

func canMove(from, to State) bool { return slices.Contains(transitions[from], to) }

// kindOf is the journal kind of the entry that moves a loan into to.
func kindOf(to State) string {
	if to == Accepted {
		return "loan.agreement"
	}
	return "loan." + string(to)
}

// loanEvent is one state change, as stored and journaled.
type loanEvent struct {
	LoanID   string
	Revision int
	Kind     string
	Payload  []byte
	At       time.Time
}

// eventPayload is the journaled record of a state change: who moved which
// loan of which bank and farmer from where to where, when and why, plus
// the details of the step (the terms for an offer and an agreement, the
// disbursement, the new due date of a restructuring…).
type eventPayload struct {
	Format         string         `json:"format"`
	LoanID         string         `json:"loan_id"`
	OrganizationID string         `json:"organization_id"`
	FarmerID       string         `json:"farmer_id"`
	ProductID      string         `json:"product_id"`
	Revision       int            `json:"revision"`
	Kind           string         `json:"kind"`
	From           *State         `json:"from"`
	To             State          `json:"to"`
	At             time.Time      `json:"at"`
	Actor          string         `json:"actor"`
	Reason         string         `json:"reason"`
	Details        map[string]any `json:"details"`
}

// move is one state change as its author describes it.
type move struct {
	To     State
	Actor  string
	Reason string
	// Kind overrides the journal kind (loan.cured for arrears cleared).
	Kind    string
	Details map[string]any
}

// transition moves l as m says in tx: it refuses a move the state machine
// does not allow (409), writes the state and the loan_events row whose
// payload will be journaled, and returns the event for journalAfter.
// The caller holds l's row lock (lockLoan), sets l's other columns and
// saves l (saveLoan) in the same transaction.
func (s *Service) transition(ctx context.Context, tx pgx.Tx, l *loan, m move) (loanEvent, error) {
	to, actor, reason, details := m.To, m.Actor, m.Reason, m.Details
	kind := m.Kind
	if kind == "" {
		kind = kindOf(to)
	}
	from := l.State
	if from != "" && !canMove(from, to) {
		return loanEvent{}, conflictMove(l, to)
	}
	at := s.now().UTC().Truncate(time.Microsecond)
	l.Revision++
	var fromPtr *State
	if from != "" {
		fromPtr = &from
	}
	if details == nil {
		details = map[string]any{}
	}
	payload, err := canonical(eventPayload{
		Format: "tani.loan-event/v1", LoanID: l.ID, OrganizationID: l.OrgID, FarmerID: l.FarmerID, ProductID: l.ProductID,
		Revision: l.Revision, Kind: kind, From: fromPtr, To: to, At: at, Actor: actor, Reason: reason, Details: details,
	})
	if err != nil {
		return loanEvent{}, fmt.Errorf("loan %s event: %w", l.ID, err)
	}
	var fromText *string
	if from != "" {
		f := string(from)
		fromText = &f
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO lending.loan_events (loan_id, revision, kind, from_state, to_state, actor, reason, at, payload)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		l.ID, l.Revision, kind, fromText, string(to), actor, reason, at, payload); err != nil {
		return loanEvent{}, fmt.Errorf("record loan %s event: %w", l.ID, err)
	}
	l.State = to
	l.UpdatedAt = at
	var dpd *int
	if v, ok := details["days_past_due"].(int); ok {
		dpd = &v
	}
	if err := recordStateEvent(ctx, tx, l, fromPtr, kind, at, dpd); err != nil {
		return loanEvent{}, fmt.Errorf("loan %s event: %w", l.ID, err)
	}
	return loanEvent{LoanID: l.ID, Revision: l.Revision, Kind: kind, Payload: payload, At: at}, nil
}

// conflictMove is the answer to a move out of order.
func conflictMove(l *loan, to State) error {
	allowed := transitions[l.State]
	if len(allowed) == 0 {
		return apperr.Errorf(apperr.Conflict, "loan %s is %s: it cannot become %s (it is closed)", l.ID, l.State, to)
	}
	return apperr.Errorf(apperr.Conflict, "loan %s is %s: it cannot become %s (from %s it may become %v)", l.ID, l.State, to, l.State, allowed)
}

// journalEvents appends committed loan events to the journal and records
// where they landed. Append is idempotent, so a repeat (the sweeper after
// a crash between the append and the update) is a no-op. Failures are the
// sweeper's to retry: the events are durable in loan_events already.
func (s *Service) journalEvents(ctx context.Context, evs []loanEvent) error {
	if len(evs) == 0 {
		return nil
	}
	revs := make([]ledger.Revision, len(evs))
	for i, e := range evs {
		revs[i] = ledger.Revision{RecordID: e.LoanID, Kind: e.Kind, Revision: int64(e.Revision), Payload: e.Payload, OccurredAt: e.At, SignatureRef: "lending"}
	}
	app, err := s.journal.Append(ctx, revs...)
	if err != nil {
		return fmt.Errorf("journal %d loan events: %w", len(evs), err)
	}
	ids, revisions, leaves := make([]string, len(app)), make([]int32, len(app)), make([]int64, len(app))
	for i, a := range app {
		ids[i], revisions[i], leaves[i] = a.RecordID, int32(a.Revision), a.LeafIndex
	}
	if err := recordLeaves(ctx, s.pool, `
		UPDATE lending.loan_events e SET leaf_index = u.leaf
		FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS u(loan, rev, leaf)
		WHERE e.loan_id = u.loan AND e.revision = u.rev AND e.leaf_index IS NULL`, ids, revisions, leaves); err != nil {
		return fmt.Errorf("record journal leaves of %d loan events: %w", len(evs), err)
	}
	return nil
}

// recordLeaves runs an update recording where entries landed in the
// journal without waiting for its commit to be flushed: the leaf index is
// a cache of what the journal holds, and the append it records is durable
// already. Lost in a crash, it is recorded again by the servicing loop's
// sweep, whose append of the same revisions is a no-op returning the same
// leaves.
// The transaction is one round trip: a batch from BEGIN to COMMIT (a
// failure in it skips the rest, COMMIT included, and the pool discards a
// connection left in a transaction).
func recordLeaves(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) error {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`)
	b.Queue(sql, args...)
	b.Queue(`COMMIT`)
	return pool.SendBatch(ctx, b).Close()
}

// journalAfter journals events of a committed transaction, logging a
// failure for the sweeper rather than failing the request: the state
// change is committed and the entry will follow.
func (s *Service) journalAfter(ctx context.Context, evs ...loanEvent) {
	if err := s.journalEvents(context.WithoutCancel(ctx), evs); err != nil {
		s.logger.WarnContext(ctx, "loan events not journaled yet; the servicing loop retries", "err", err)
	}
}
