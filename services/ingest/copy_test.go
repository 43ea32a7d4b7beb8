package ingest_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
	"github.com/tani-platform/tani/services/ingest"
)

// batchRig is a platform (database, agent, device) and an ingest service
// of the test's own on a second NATS server, so that the test decides
// what one batch holds; the platform's ingest never sees it.
type batchRig struct {
	tani  *apptest.Running
	agent *clienttest.Agent
	// batch publishes records under fresh message ids (so that a record
	// sent again passes JetStream's de-duplication, as a republish after
	// its window would) and hands them to the service as one batch.
	batch func(records ...json.RawMessage) []error
	// count is how many submissions the ids have.
	count func(ids ...string) int
}

func mustBatchRig(t *testing.T, partitions int) batchRig {
	t.Helper()
	platformNATS := natstest.MustServer(t)
	tani := apptest.MustStart(t, "-nats.url="+platformNATS.ClientURL())
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	other := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, other)
	ctx := context.Background()
	if err := natsbus.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, pii.KeySize)
	rand.Read(key)
	keys, err := pii.New(key)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ingest.New(ingest.Config{MaxBatch: 512, Partitions: partitions}, ingest.Deps{
		Pool: tani.DB, JS: js, PII: keys, Logger: slog.New(slog.DiscardHandler),
		Consumer: natsbus.NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, natsbus.StreamFarm, jetstream.ConsumerConfig{Durable: "batch-rig", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: natsbus.SubjectSubmittedPrefix + ">"})
	if err != nil {
		t.Fatal(err)
	}
	batch := func(records ...json.RawMessage) []error {
		t.Helper()
		msgIDs := make([]string, len(records))
		for i := range msgIDs {
			msgIDs[i] = uuid.NewString()
		}
		publish(t, js, msgIDs, records)
		fetched, err := cons.Fetch(len(records), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var msgs []jetstream.Msg
		for msg := range fetched.Messages() {
			msgs = append(msgs, msg)
			msg.Ack()
		}
		if len(msgs) != len(records) {
			t.Fatalf("fetched %d messages, want %d", len(msgs), len(records))
		}
		return svc.HandleBatch(ctx, msgs)
	}
	count := func(ids ...string) int {
		t.Helper()
		var n int
		if err := tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.submissions WHERE id = ANY($1::uuid[])`, ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	return batchRig{tani: tani, agent: agent, batch: batch, count: count}
}

// TestHandleBatch_StoredBefore covers both ways a batch's submissions are
// written: a batch of records never seen is stored by COPY, and a batch
// holding an id already stored falls back to INSERT … ON CONFLICT, which
// must store the batch's new records, take the redelivered one as done
// and refuse the one whose content differs, keeping the original — the
// same outcomes, once each, as if every batch took the second path.
func TestHandleBatch_StoredBefore(t *testing.T) {
	rig := mustBatchRig(t, 2)
	ctx, tani, agent, batch, count := context.Background(), rig.tani, rig.agent, rig.batch, rig.count
	hour := time.Now().Add(-time.Hour)
	farmerA, farmerB, farmerC := uuid.NewString(), uuid.NewString(), uuid.NewString()
	redelivered, original, fresh := uuid.NewString(), uuid.NewString(), uuid.NewString()
	first := []json.RawMessage{
		sign(t, agent.Client, redelivered, "farmer.registered", farmerA, "", hour),
		sign(t, agent.Client, original, "farmer.registered", farmerB, "", hour),
	}
	t.Run("OK_NewRecordsCopied", func(t *testing.T) {
		for i, err := range batch(first...) {
			if err != nil {
				t.Errorf("record %d: %v, want stored", i, err)
			}
		}
		if n := count(redelivered, original); n != 2 {
			t.Errorf("%d of 2 records stored", n)
		}
	})
	t.Run("OK_BatchWithStoredRecords", func(t *testing.T) {
		changed := sign(t, agent.Client, original, "farmer.registered", farmerC, "", hour.Add(time.Minute))
		errs := batch(first[0], changed, sign(t, agent.Client, fresh, "farmer.registered", farmerC, "", hour))
		if errs[0] != nil {
			t.Errorf("redelivered record: %v, want nil (already stored, nothing to do)", errs[0])
		}
		if !apperr.Is(errs[1], apperr.Conflict) {
			t.Errorf("same id, different content: %v, want a conflict", errs[1])
		}
		if errs[2] != nil {
			t.Errorf("new record beside stored ones: %v, want stored", errs[2])
		}
		if n := count(redelivered, original, fresh); n != 3 {
			t.Errorf("%d submissions for the 3 ids, want each once", n)
		}
		var farmer string
		if err := tani.DB.QueryRow(ctx, `SELECT payload->>'farmer_id' FROM ingest.submissions WHERE id = $1`, original).Scan(&farmer); err != nil {
			t.Fatal(err)
		}
		if farmer != farmerB {
			t.Errorf("stored record %s is about farmer %s, want the original's %s", original, farmer, farmerB)
		}
		var farmers int
		if err := tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.farmers WHERE farmer_id = ANY($1::uuid[])`, []string{farmerA, farmerB, farmerC}).Scan(&farmers); err != nil {
			t.Fatal(err)
		}
		if farmers != 3 {
			t.Errorf("%d farmer rows, want 3 (two from the first batch, one from the new record)", farmers)
		}
	})
}

// TestHandleBatch_PlotsInOneStatement checks that upserting a batch's
// plots in rounds (the first record of every plot in one statement, the
// second records in the next, and so on) applies each plot's records as
// stream order says: the newest capture wins whatever order records
// arrive in, each applied capture counts as a revision, and a record
// mapping another farmer's plot is refused, whether the plot was stored
// earlier in the same batch or by an earlier batch.
func TestHandleBatch_PlotsInOneStatement(t *testing.T) {
	rig := mustBatchRig(t, 1)
	ctx, agent := context.Background(), rig.agent
	hour := time.Now().Add(-time.Hour).Truncate(time.Second)
	alice, bob := uuid.NewString(), uuid.NewString()
	mapped, taken := uuid.NewString(), uuid.NewString()
	ids := make([]string, 7)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	plot := func(id, farmer, plot string, at time.Time) json.RawMessage {
		return sign(t, agent.Client, id, "plot.mapped", farmer, plot, at)
	}
	type state struct {
		farmer, record string
		revisions      int
	}
	stateOf := func(plot string) state {
		t.Helper()
		var s state
		if err := rig.tani.DB.QueryRow(ctx, `SELECT farmer_id::text, record_id::text, revisions FROM ingest.plots WHERE plot_id = $1`, plot).
			Scan(&s.farmer, &s.record, &s.revisions); err != nil {
			t.Fatalf("plot %s: %v", plot, err)
		}
		return s
	}

	t.Run("OK_OneBatch", func(t *testing.T) {
		errs := rig.batch(
			plot(ids[0], alice, mapped, hour),                    // first of its plot: inserted
			plot(ids[1], alice, taken, hour),                     // first of its plot: inserted
			plot(ids[2], alice, mapped, hour.Add(2*time.Minute)), // newer: applied
			plot(ids[3], alice, mapped, hour.Add(time.Minute)),   // older than the stored one: kept, not refused
			plot(ids[4], bob, taken, hour.Add(time.Minute)),      // Alice's plot: refused
		)
		for i, err := range errs {
			switch {
			case i == 4 && !apperr.Is(err, apperr.Conflict):
				t.Errorf("Bob mapping Alice's plot: %v, want a conflict", err)
			case i != 4 && err != nil:
				t.Errorf("record %d: %v, want stored", i, err)
			}
		}
		if got, want := stateOf(mapped), (state{alice, ids[2], 2}); got != want {
			t.Errorf("plot mapped three times = %+v, want %+v (the newest capture, two applied)", got, want)
		}
		if got, want := stateOf(taken), (state{alice, ids[1], 1}); got != want {
			t.Errorf("plot Bob tried to take = %+v, want %+v", got, want)
		}
		if n := rig.count(ids[:5]...); n != 4 {
			t.Errorf("%d submissions, want 4 (all but Bob's)", n)
		}
	})
	t.Run("OK_AgainstEarlierBatch", func(t *testing.T) {
		errs := rig.batch(
			plot(ids[5], alice, mapped, hour.Add(3*time.Minute)), // newer than the stored one: applied
			plot(ids[6], bob, taken, hour.Add(5*time.Minute)),    // Alice's plot, stored by the earlier batch: refused
		)
		if errs[0] != nil {
			t.Errorf("newer capture of a stored plot: %v, want stored", errs[0])
		}
		if !apperr.Is(errs[1], apperr.Conflict) {
			t.Errorf("Bob mapping Alice's stored plot: %v, want a conflict", errs[1])
		}
		if got, want := stateOf(mapped), (state{alice, ids[5], 3}); got != want {
			t.Errorf("plot = %+v, want %+v", got, want)
		}
		if got, want := stateOf(taken), (state{alice, ids[1], 1}); got != want {
			t.Errorf("plot Bob tried to take = %+v, want %+v", got, want)
		}
	})
}

// TestHandleBatch_EventsStoredAlikeByCopyAndByInsert covers both ways a
// batch's events (plantings, inputs, harvests, sales) are written: by one
// binary COPY per kind, and, when a row of the same record is already
// there, by INSERT … ON CONFLICT DO NOTHING after the COPYs are rolled
// back. Both must store the same columns (a planting without a variety
// stores NULL), and the fallback must keep the row that was there and
// store every other event of the batch.
func TestHandleBatch_EventsStoredAlikeByCopyAndByInsert(t *testing.T) {
	rig := mustBatchRig(t, 1)
	ctx, agent, db := context.Background(), rig.agent, rig.tani.DB
	hour := time.Now().Add(-time.Hour).Truncate(time.Second)
	farmer, plot := uuid.NewString(), uuid.NewString()
	kinds := []string{"crop.planted", "input.applied", "harvest.recorded", "sale.recorded"}
	tables := map[string]string{"crop.planted": "crop_cycles", "input.applied": "input_applications", "harvest.recorded": "harvests", "sale.recorded": "sales"}
	// events signs one record of every kind and a planting without a
	// variety, under new ids.
	events := func() (ids []string, raws []json.RawMessage) {
		payloads := clienttest.Payloads(farmer, plot, time.Now())
		for _, kind := range kinds {
			id := uuid.NewString()
			ids, raws = append(ids, id), append(raws, sign(t, agent.Client, id, kind, farmer, plot, hour))
		}
		bare := map[string]any{}
		for k, v := range payloads["crop.planted"] {
			if k != "variety" {
				bare[k] = v
			}
		}
		id := uuid.NewString()
		raw, _, err := agent.Client.RecordWithID(id, "crop.planted", hour, loc, bare)
		if err != nil {
			t.Fatal(err)
		}
		return append(ids, id), append(raws, raw)
	}
	// stored returns a record's event row as JSON, without its record id.
	stored := func(table, id string) string {
		t.Helper()
		var row string
		if err := db.QueryRow(ctx, `SELECT (to_jsonb(e) - 'record_id')::text FROM ingest.`+table+` e WHERE record_id = $1`, id).Scan(&row); err != nil {
			t.Fatalf("%s of record %s: %v", table, id, err)
		}
		return row
	}
	storeAll := func(raws []json.RawMessage) {
		t.Helper()
		for i, err := range rig.batch(raws...) {
			if err != nil {
				t.Fatalf("record %d: %v, want stored", i, err)
			}
		}
	}

	copied, raws := events()
	storeAll(raws)
	if got := stored("crop_cycles", copied[4]); !strings.Contains(got, `"variety": null`) {
		t.Errorf("planting without a variety stored as %s, want a NULL variety", got)
	}

	// A planting row of the next batch's first record is already there:
	// its COPY fails on the primary key and the batch takes the INSERTs.
	inserted, raws := events()
	if _, err := db.Exec(ctx, `INSERT INTO ingest.crop_cycles (record_id, farmer_id, plot_id, crop, planted_on, expected_harvest_on)
		VALUES ($1, $2, $3, 'maize', '2020-01-01', '2020-05-01')`, inserted[0], farmer, plot); err != nil {
		t.Fatal(err)
	}
	storeAll(raws)
	if got := stored("crop_cycles", inserted[0]); !strings.Contains(got, `"crop": "maize"`) {
		t.Errorf("the planting row that was there became %s, want it kept", got)
	}
	for i, kind := range kinds[1:] {
		if a, b := stored(tables[kind], copied[i+1]), stored(tables[kind], inserted[i+1]); a != b {
			t.Errorf("%s stored by COPY as %s and by INSERT as %s, want the same", kind, a, b)
		}
	}
	if a, b := stored("crop_cycles", copied[4]), stored("crop_cycles", inserted[4]); a != b {
		t.Errorf("planting without a variety stored by COPY as %s and by INSERT as %s, want the same", a, b)
	}
}
