package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/internal/record"
)

func count(t *testing.T, pool *pgxpool.Pool, where string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM events.outbox WHERE `+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func record1(t *testing.T, pool *pgxpool.Pool, evs ...events.Event) error {
	t.Helper()
	return pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { return events.RecordAll(context.Background(), tx, evs) })
}

func okEvent() events.Event {
	return events.Event{ID: uuid.NewString(), Type: events.EvidenceAttested, FarmerID: uuid.NewString(), Scope: consent.Harvests,
		OccurredAt: time.Now(), Data: map[string]any{"record_id": uuid.NewString()}}
}

func TestRecord(t *testing.T) {
	pool := pgtest.MustDB(t, events.Migrations)

	t.Run("OK_OnceWhateverTheRepeats", func(t *testing.T) {
		id := events.DeriveID(events.ConsentRevoked, "c-1")
		ev := events.Event{ID: id, Type: events.ConsentRevoked, OrganizationID: uuid.NewString(), FarmerID: uuid.NewString(), OccurredAt: time.Now()}
		for range 3 {
			if err := record1(t, pool, ev, ev); err != nil {
				t.Fatal(err)
			}
		}
		if n := count(t, pool, fmt.Sprintf("id = '%s'", id)); n != 1 {
			t.Errorf("%d rows for a repeated event, want 1", n)
		}
		var data string
		if err := pool.QueryRow(context.Background(), `SELECT data::text FROM events.outbox WHERE id = $1`, id).Scan(&data); err != nil || data != "{}" {
			t.Errorf("nil data stored as %q (%v), want {}", data, err)
		}
	})

	t.Run("OK_RolledBackWithTheChange", func(t *testing.T) {
		ev := okEvent()
		err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
			if err := events.Record(context.Background(), tx, ev); err != nil {
				return err
			}
			return errors.New("the state change failed")
		})
		if err == nil {
			t.Fatal("transaction committed")
		}
		if n := count(t, pool, fmt.Sprintf("id = '%s'", ev.ID)); n != 0 {
			t.Errorf("event of a rolled-back change stored %d times", n)
		}
	})

	bad := map[string]func(*events.Event){
		"ErrUppercaseID":      func(e *events.Event) { e.ID = strings.ToUpper(e.ID) },
		"ErrUnknownType":      func(e *events.Event) { e.Type = "loan.eaten" },
		"ErrBadOrganization":  func(e *events.Event) { e.OrganizationID = "bank-1" },
		"ErrBadFarmer":        func(e *events.Event) { e.FarmerID = "farmer-1" },
		"ErrUnknownScope":     func(e *events.Event) { e.Scope = "everything" },
		"ErrNoRecipient":      func(e *events.Event) { e.Scope = "" },
		"ErrScopeNoFarmer":    func(e *events.Event) { e.OrganizationID, e.FarmerID = uuid.NewString(), "" },
		"ErrNoTime":           func(e *events.Event) { e.OccurredAt = time.Time{} },
		"ErrDataNotAnObject":  func(e *events.Event) { e.Data = []int{1, 2} },
		"ErrDataUnmarshaling": func(e *events.Event) { e.Data = map[string]any{"f": func() {}} },
		"ErrDataTooLarge":     func(e *events.Event) { e.Data = map[string]string{"x": strings.Repeat("a", events.MaxData)} },
	}
	for name, breakIt := range bad {
		t.Run(name, func(t *testing.T) {
			good, ev := okEvent(), okEvent()
			breakIt(&ev)
			err := record1(t, pool, good, ev)
			if err == nil {
				t.Fatal("recorded")
			}
			if n := count(t, pool, fmt.Sprintf("id IN ('%s', '%s')", good.ID, strings.ToLower(ev.ID))); n != 0 {
				t.Errorf("%d events stored with an invalid one", n)
			}
		})
	}
}

func TestCatalogue(t *testing.T) {
	seen := map[events.Type]bool{}
	for _, info := range events.Catalogue {
		if seen[info.Type] {
			t.Errorf("%s listed twice", info.Type)
		}
		seen[info.Type] = true
		if info.Summary == "" || info.Producer == "" || len(info.Audience) == 0 || info.Data["type"] != "object" {
			t.Errorf("%s: incomplete entry %+v", info.Type, info)
		}
	}
	// The types CONTRACTS.md promises every helper.
	for _, want := range strings.Fields(`consent.authorised consent.revoked consent.expiring evidence.attested review.decided
		loan.applied loan.offered loan.accepted loan.disbursed loan.repaid loan.in_arrears loan.restructured loan.written_off
		repayment.received repayment.overdue order.placed order.updated delivery.confirmed voucher.redeemed voucher.settled`) {
		if !seen[events.Type(want)] {
			t.Errorf("%s missing from the catalogue", want)
		}
	}
	if len(seen) != 20 {
		t.Errorf("catalogue has %d types, want 20", len(seen))
	}
	for _, k := range []identity.Kind{identity.Bank, identity.Distributor} {
		for _, typ := range []events.Type{events.ConsentRevoked, events.EvidenceAttested} {
			if info, _ := events.Lookup(typ); !info.For(k) {
				t.Errorf("%s not for %s", typ, k)
			}
		}
	}
	if info, _ := events.Lookup(events.LoanApplied); info.For(identity.Distributor) {
		t.Error("loan.applied offered to distributors")
	}
	if _, ok := events.RecordScope(record.TypeConsentGranted); ok {
		t.Error("consent records have a scope")
	}
	if s, _ := events.RecordScope(record.TypeHarvestRecorded); s != consent.Harvests {
		t.Errorf("harvest scope %q", s)
	}
}

func mustRelay(t *testing.T, pool *pgxpool.Pool, js jetstream.JetStream, batch int) *events.Relay {
	t.Helper()
	r, err := events.NewRelay(events.Config{Batch: batch, Retention: time.Hour}, events.Deps{Pool: pool, JS: js, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRelay_SeveralProcesses runs three relays at once over events being
// recorded: every event is on EVENTS exactly once, under its id, and the
// positions are unique and follow the stream's order.
func TestRelay_SeveralProcesses(t *testing.T) {
	pool := pgtest.MustDB(t, events.Migrations)
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	const n = 3000
	want := map[string]bool{}
	var evs []events.Event
	for range n {
		ev := okEvent()
		want[ev.ID] = true
		evs = append(evs, ev)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		r := mustRelay(t, pool, js, 200)
		wg.Go(func() { _ = r.Run(ctx) })
	}
	for i := 0; i < n; i += 100 {
		if err := record1(t, pool, evs[i:i+100]...); err != nil {
			t.Fatal(err)
		}
	}
	polltest.Eventually(t, 30*time.Second, func() error {
		if n := count(t, pool, "published_at IS NULL"); n > 0 {
			return fmt.Errorf("%d events unpublished", n)
		}
		return nil
	})
	cancel()
	wg.Wait()

	if got := natstest.Count(t, js, natsbus.StreamEvents, ""); got != n {
		t.Errorf("EVENTS holds %d messages, want %d", got, n)
	}
	cons, err := js.OrderedConsumer(context.Background(), natsbus.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var lastPos int64
	for i := range n {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		m, err := events.Decode(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if msg.Headers().Get(jetstream.MsgIDHeader) != m.ID || !want[m.ID] {
			t.Fatalf("message id %q for event %q", msg.Headers().Get(jetstream.MsgIDHeader), m.ID)
		}
		if msg.Subject() != events.Subject(m.Type) {
			t.Errorf("subject %s for %s", msg.Subject(), m.Type)
		}
		delete(want, m.ID)
		if m.Pos <= lastPos {
			t.Fatalf("position %d after %d: not in stream order", m.Pos, lastPos)
		}
		lastPos = m.Pos
		md, _ := msg.Metadata()
		var stored int64
		if err := pool.QueryRow(context.Background(), `SELECT stream_seq FROM events.outbox WHERE id = $1 AND pos = $2`, m.ID, m.Pos).Scan(&stored); err != nil || uint64(stored) != md.Sequence.Stream {
			t.Fatalf("event %s stored with stream seq %d (%v), published at %d", m.ID, stored, err, md.Sequence.Stream)
		}
	}
	if len(want) != 0 {
		t.Errorf("%d events never published", len(want))
	}
}

// TestRelay_Unacknowledged: with JetStream gone a batch stays unpublished
// and is published, once, when it is back.
func TestRelay_Unacknowledged(t *testing.T) {
	pool := pgtest.MustDB(t, events.Migrations)
	dir := t.TempDir()
	s := natstest.MustServerAt(t, dir)
	_, js := natstest.MustJetStream(t, s)
	ev := okEvent()
	if err := record1(t, pool, ev); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	r, err := events.NewRelay(events.Config{PublishTimeout: 500 * time.Millisecond}, events.Deps{Pool: pool, JS: js, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Publish(context.Background()); err == nil || n != 0 {
		t.Fatalf("published %d with JetStream down (err %v)", n, err)
	}
	if count(t, pool, "published_at IS NULL") != 1 {
		t.Fatal("event marked published without an acknowledgement")
	}
	s2 := natstest.MustServerOn(t, dir, s.ClientURL()[len("nats://"):])
	_, js2 := natstest.MustJetStream(t, s2)
	r2 := mustRelay(t, pool, js2, 10)
	if n, err := r2.Publish(context.Background()); err != nil || n != 1 {
		t.Fatalf("published %d (err %v), want 1", n, err)
	}
	if got := natstest.Count(t, js2, natsbus.StreamEvents, ""); got != 1 {
		t.Errorf("EVENTS holds %d, want 1", got)
	}
}

func TestRelay_Prune(t *testing.T) {
	pool := pgtest.MustDB(t, events.Migrations)
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	old, recent, unpublished := okEvent(), okEvent(), okEvent()
	if err := record1(t, pool, old, recent); err != nil {
		t.Fatal(err)
	}
	r := mustRelay(t, pool, js, 10)
	if _, err := r.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := record1(t, pool, unpublished); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), `UPDATE events.outbox SET recorded_at = now() - interval '2 hours' WHERE id = ANY($1::uuid[])`, []string{old.ID, unpublished.ID}); err != nil {
		t.Fatal(err)
	}
	n, err := r.Prune(context.Background(), time.Now())
	if err != nil || n != 1 {
		t.Fatalf("pruned %d (err %v), want 1", n, err)
	}
	if count(t, pool, fmt.Sprintf("id = '%s'", old.ID)) != 0 || count(t, pool, "true") != 2 {
		t.Error("pruned the wrong events: an unpublished event must stay whatever its age")
	}
}
