package attest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/services/attest"
)

// ingested is a farm.ingested message as ingest publishes it.
func ingested(in attest.Input, agentID, deviceID string) *nats.Msg {
	m := nats.NewMsg(natsbus.SubjectIngestedPrefix + string(in.Env.Type))
	m.Data = in.Canonical
	m.Header.Set(jetstream.MsgIDHeader, "ingested:"+in.Env.ID)
	m.Header.Set("Tani-Agent-Id", agentID)
	m.Header.Set("Tani-Device-Id", deviceID)
	return m
}

// TestHandleBatch hands one batch of messages of every kind to the
// consumer's handler and checks each message's own outcome.
func TestHandleBatch(t *testing.T) {
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	var flaky string // the record whose rules error
	rules := append(attest.Rules(), attest.Rule{Name: "test.flaky", Version: 1, Check: func(c *attest.Case) (attest.Verdict, string, error) {
		if c.Env.ID == flaky {
			return "", "", fmt.Errorf("evidence store unreachable")
		}
		return attest.Pass, "reachable", nil
	}})
	e := mustEnvJS(t, rules, js)
	a, other := e.mustAgent(t, "Central Java"), e.mustAgent(t, "Central Java")
	ctx := context.Background()

	good := farm(t, a, 110.40, -7.25, 0.001, nationalID(), phone())
	pending := farm(t, a, 110.50, -7.25, 0.001, nationalID(), phone())[0]
	flaky = pending.Env.ID
	unmapped := a.input(t, "crop.planted", 110.6, -7.25, map[string]any{"farmer_id": good[0].Payload.Farmer(), "plot_id": uuid.NewString(),
		"crop": "rice", "planted_on": day(-110), "expected_harvest_on": day(-5)})
	foreign := farm(t, a, 110.70, -7.25, 0.001, nationalID(), phone())[0]

	type want string // what the consumer does with the message
	const (
		decided want = "ack"
		retried want = "redeliver"
		dead    want = "dead-letter"
	)
	var msgs []*nats.Msg
	var wants []want
	add := func(m *nats.Msg, w want) { msgs, wants = append(msgs, m), append(wants, w) }
	for _, in := range good {
		add(ingested(in, a.id, a.device), decided)
	}
	again := ingested(good[0], a.id, a.device)
	again.Header.Set(jetstream.MsgIDHeader, "ingested:"+good[0].Env.ID+":again") // a republish, not a JetStream duplicate
	add(again, decided)
	add(ingested(unmapped, a.id, a.device), decided)
	add(ingested(pending, a.id, a.device), retried)
	garbled := nats.NewMsg(natsbus.SubjectIngestedPrefix + "farmer.registered")
	garbled.Data = []byte(`{"id":`)
	garbled.Header.Set("Tani-Agent-Id", a.id)
	add(garbled, dead)
	add(ingested(foreign, a.id, other.device), dead) // headers name another device than the record
	fetched := natstest.MustPublishFetch(t, js, msgs...)

	errs := e.svc.HandleBatch(ctx, fetched)
	if len(errs) != len(fetched) {
		t.Fatalf("got %d outcomes for %d messages", len(errs), len(fetched))
	}
	check := func(t *testing.T, errs []error) {
		t.Helper()
		for i, err := range errs {
			poison := apperr.Is(err, apperr.Invalid) || apperr.Is(err, apperr.Conflict)
			var got want
			switch {
			case err == nil:
				got = decided
			case poison:
				got = dead
			default:
				got = retried
			}
			if got != wants[i] {
				t.Errorf("message %d (%s): got %s (%v), want %s", i, msgs[i].Subject, got, err, wants[i])
			}
		}
	}
	check(t, errs)

	t.Run("OK_DecidedRecordsJournaledAndAnnouncedOnce", func(t *testing.T) {
		ids := []string{unmapped.Env.ID}
		for _, in := range good {
			ids = append(ids, in.Env.ID)
		}
		var announced, journaled int
		if err := e.pool.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE published = decision), count(*) FILTER (WHERE leaf_index IS NOT NULL)
			FROM attest.records WHERE record_id = ANY($1::uuid[])`, ids).Scan(&announced, &journaled); err != nil {
			t.Fatal(err)
		}
		if announced != len(ids) || journaled != len(good) {
			t.Errorf("got %d announced and %d journaled, want %d announced and the %d verified journaled", announced, journaled, len(ids), len(good))
		}
		if got := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectAttestedPrefix+">"); got != uint64(len(ids)) {
			t.Errorf("got %d farm.attested messages, want %d (one per decided record)", got, len(ids))
		}
	})
	t.Run("OK_ErroringRuleLeavesRecordPendingNotAnnounced", func(t *testing.T) {
		var status string
		var published int
		if err := e.pool.QueryRow(ctx, `SELECT status, published FROM attest.records WHERE record_id = $1`, pending.Env.ID).Scan(&status, &published); err != nil {
			t.Fatal(err)
		}
		if status != attest.StatusPending || published != 0 {
			t.Errorf("got status %s published %d, want pending and never announced", status, published)
		}
	})
	t.Run("OK_RedeliveredBatchIsANoOp", func(t *testing.T) {
		var before, after int64
		e.pool.QueryRow(ctx, `SELECT size FROM ledger.tree`).Scan(&before)
		announced := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectAttestedPrefix+">")
		check(t, e.svc.HandleBatch(ctx, fetched))
		e.pool.QueryRow(ctx, `SELECT size FROM ledger.tree`).Scan(&after)
		if after != before {
			t.Errorf("journal grew from %d to %d leaves on redelivery, want unchanged", before, after)
		}
		if got := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectAttestedPrefix+">"); got != announced {
			t.Errorf("got %d farm.attested messages after redelivery, want still %d", got, announced)
		}
	})
}

// TestHandleBatch_FailingRecordDoesNotHoldBackOthers makes Postgres refuse
// one record of a batch, which fails the batch's transaction, and checks
// that the others are still decided.
func TestHandleBatch_FailingRecordDoesNotHoldBackOthers(t *testing.T) {
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	e := mustEnvJS(t, nil, js)
	a := e.mustAgent(t, "Central Java")
	ins := farm(t, a, 110.40, -7.25, 0.001, nationalID(), phone())
	refused := ins[2]
	mustExec(t, e.pool, `CREATE FUNCTION public.refuse_record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full writing this record'; END $$`)
	mustExec(t, e.pool, `CREATE TRIGGER refuse_record BEFORE INSERT ON attest.records FOR EACH ROW WHEN (NEW.record_id = '`+refused.Env.ID+`') EXECUTE FUNCTION public.refuse_record()`)
	var msgs []*nats.Msg
	for _, in := range ins {
		msgs = append(msgs, ingested(in, a.id, a.device))
	}

	errs := e.svc.HandleBatch(context.Background(), natstest.MustPublishFetch(t, js, msgs...))
	for i, err := range errs {
		switch {
		case ins[i].Env.ID == refused.Env.ID:
			if err == nil || apperr.Is(err, apperr.Invalid) || apperr.Is(err, apperr.Conflict) {
				t.Errorf("refused %s: got %v, want a transient error (redelivered, never dead-lettered at once)", ins[i].Env.Type, err)
			}
		case err != nil:
			t.Errorf("%s: got %v, want decided despite the refused record", ins[i].Env.Type, err)
		}
	}
	var stored int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM attest.records WHERE record_id = ANY($1::uuid[])`, idsOf(ins)).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(ins)-1 {
		t.Errorf("got %d records stored, want %d: all but the refused one", stored, len(ins)-1)
	}
}
