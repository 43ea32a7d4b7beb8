package events

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/validate"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the events schema (the outbox).
var Migrations = postgres.Migrations{Name: "events", FS: postgres.MustSub(migrationsFS, "migrations")}

// MaxData is the largest Data an event may carry, as JSON. Events carry
// ids and links; a receiver fetches the rest through the API.
const MaxData = 16 << 10

// Event is one thing that happened which an organization may be told of.
type Event struct {
	// ID is a lowercase UUID, unique for the event: it is the JetStream
	// message id and every delivery's webhook-id. Producers that may run
	// twice for one change derive it with DeriveID so the repeat is a no-op.
	ID   string
	Type Type
	// OrganizationID is the recipient. Empty: every organization holding
	// a live consent of FarmerID covering Scope, judged when the event is
	// delivered (and again at each attempt).
	OrganizationID string
	// FarmerID is the farmer the event is about, if any.
	FarmerID string
	// Scope, when set, makes delivery conditional: the recipient must hold
	// a live consent of FarmerID covering Scope at every attempt (a
	// revoked consent stops the event at once). Required with an empty
	// OrganizationID.
	Scope      consent.Scope
	OccurredAt time.Time
	// Data is the event's data as JSON: an object (a struct or a map), at
	// most MaxData bytes; nil (or a nil map or pointer) is {}. Ids and links only, never personal
	// data.
	Data any
}

// DeriveID returns a deterministic event id for the event of type t about
// key (a record id, a consent id and its expiry…): a producer that runs
// again for the same change records the same id, which Record ignores.
func DeriveID(t Type, key string) string {
	return uuid.NewSHA1(namespace, []byte(string(t)+"\x00"+key)).String()
}

// namespace is Tani's UUIDv5 namespace for event ids.
var namespace = uuid.MustParse("6b1f3f0e-2f4c-5b7e-9a51-7d0c1c7e3a42")

// Record writes ev to the outbox in tx, the transaction of the change it
// reports. Recording an id already in the outbox does nothing (producers
// retry with DeriveID ids). An invalid event is the producer's bug: the
// error fails the transaction.
func Record(ctx context.Context, tx pgx.Tx, ev Event) error {
	return RecordAll(ctx, tx, []Event{ev})
}

// RecordAll is Record for many events in one statement.
func RecordAll(ctx context.Context, tx pgx.Tx, evs []Event) error {
	b := &pgx.Batch{}
	if err := QueueAll(b, evs); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record %d events (first %s %s): %w", len(evs), evs[0].Type, evs[0].ID, err)
	}
	return nil
}

// QueueAll is RecordAll's statement queued on b, a batch the producer
// sends in the transaction of the change with its other writes (one round
// trip for them all). An invalid event is an error before anything is
// queued.
func QueueAll(b *pgx.Batch, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	n := len(evs)
	ids, types, orgs, farmers, scopes, data := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	occurred := make([]time.Time, n)
	for i, ev := range evs {
		b, err := check(ev)
		if err != nil {
			return err
		}
		ids[i], types[i], orgs[i], farmers[i], scopes[i], data[i] = ev.ID, string(ev.Type), ev.OrganizationID, ev.FarmerID, string(ev.Scope), string(b)
		occurred[i] = ev.OccurredAt.UTC()
	}
	b.Queue(`
		INSERT INTO events.outbox (id, type, organization_id, farmer_id, scope, occurred_at, data)
		SELECT u.id, u.type, nullif(u.org, '')::uuid, nullif(u.farmer, '')::uuid, nullif(u.scope, ''), u.occurred, u.data::jsonb
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
		     AS u(id, type, org, farmer, scope, occurred, data)
		ON CONFLICT (id) DO NOTHING`, ids, types, orgs, farmers, scopes, occurred, data)
	return nil
}

// check validates ev and returns its data as JSON.
func check(ev Event) ([]byte, error) {
	var errs []error
	if !validate.LowerUUID(ev.ID) {
		errs = append(errs, fmt.Errorf("id %q is not a lowercase UUID", ev.ID))
	}
	if _, ok := Lookup(ev.Type); !ok {
		errs = append(errs, fmt.Errorf("type %q is not in the catalogue", ev.Type))
	}
	if ev.OrganizationID != "" && !validate.LowerUUID(ev.OrganizationID) {
		errs = append(errs, fmt.Errorf("organization id %q is not a lowercase UUID", ev.OrganizationID))
	}
	if ev.FarmerID != "" && !validate.LowerUUID(ev.FarmerID) {
		errs = append(errs, fmt.Errorf("farmer id %q is not a lowercase UUID", ev.FarmerID))
	}
	if ev.Scope != "" && !slices.Contains(validate.ConsentScopes, string(ev.Scope)) {
		errs = append(errs, fmt.Errorf("scope %q is not a consent scope", ev.Scope))
	}
	if ev.Scope != "" && ev.FarmerID == "" {
		errs = append(errs, errors.New("a scope needs the farmer whose consent covers it"))
	}
	if ev.OrganizationID == "" && ev.Scope == "" {
		errs = append(errs, errors.New("an event without a recipient organization needs a farmer and a scope (it goes to every organization the farmer consented to)"))
	}
	if ev.OccurredAt.IsZero() {
		errs = append(errs, errors.New("occurred at is zero"))
	}
	var b []byte
	if ev.Data == nil {
		b = []byte("{}")
	} else {
		var err error
		if b, err = json.Marshal(ev.Data); err != nil {
			errs = append(errs, fmt.Errorf("data: %w", err))
		} else if string(b) == "null" { // a nil map or pointer
			b = []byte("{}")
		} else if len(b) == 0 || b[0] != '{' {
			errs = append(errs, errors.New("data is not a JSON object"))
		} else if len(b) > MaxData {
			errs = append(errs, fmt.Errorf("data is %d bytes (at most %d)", len(b), MaxData))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("events: invalid %s event %s: %w", ev.Type, ev.ID, errors.Join(errs...))
	}
	return b, nil
}

// Erase deletes, in tx, every event about farmerID from the outbox (a
// farmer's erasure; see internal/forget) and returns how many. The
// webhooks module, the outbox's reader, runs it as an owner of farmer
// data; producers fence erased farmers themselves.
func Erase(ctx context.Context, tx pgx.Tx, farmerID string) (int64, error) {
	tag, err := tx.Exec(ctx, `DELETE FROM events.outbox WHERE farmer_id = $1`, farmerID)
	if err != nil {
		return 0, fmt.Errorf("erase events of farmer %s: %w", farmerID, err)
	}
	return tag.RowsAffected(), nil
}
