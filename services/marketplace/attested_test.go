package marketplace_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
)

// TestHandleAttested_Batch hands the consumer's handler one batch of
// attest's decisions as JetStream delivers them: the farmers of every
// good decision reach the plan together, and a decision that can never
// apply (an undecodable body, a bad record id) fails alone, as poison.
func TestHandleAttested_Batch(t *testing.T) {
	e := mustEnv(t, nil)
	ctx := context.Background()
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	if _, err := e.svc.RefreshDemand(ctx); err != nil { // the plan the decisions update
		t.Fatal(err)
	}
	planted := time.Date(e.now.Year()-1, e.now.Month()+1, 5, 0, 0, 0, 0, time.UTC)

	var farmers []string
	var bodies [][]byte
	decision := func(id, typ string) []byte {
		b, err := json.Marshal(map[string]any{"record_id": id, "type": typ, "status": "verified", "decision": 1})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := range 3 {
		farmer := uuid.NewString()
		_, records := storeVerifiedPlot(t, e.pool, farmer, "Kabupaten Garut", 1+float64(i)*0.2, 107.8+float64(i)*0.002, -7.3, "rice", planted)
		farmers = append(farmers, farmer)
		bodies = append(bodies, decision(records[0], "plot.mapped"), decision(records[1], "crop.planted"))
	}
	bad := []int{1, 4}
	bodies[1] = []byte(`{"record_id": "not json`)
	bodies[4] = decision("NOT-A-UUID", "crop.planted")
	for _, b := range bodies {
		if _, err := js.Publish(ctx, natsbus.SubjectAttestedPrefix+"plot.mapped", b); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.OrderedConsumer(ctx, natsbus.StreamFarm, jetstream.OrderedConsumerConfig{FilterSubjects: []string{natsbus.SubjectAttestedPrefix + ">"}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(len(bodies), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != len(bodies) {
		t.Fatalf("fetched %d messages, want %d", len(msgs), len(bodies))
	}

	errs := e.svc.HandleAttested(ctx, msgs)
	for i, err := range errs {
		switch poison := i == bad[0] || i == bad[1]; {
		case poison && !apperr.Is(err, apperr.Invalid):
			t.Errorf("decision %d: error %v, want Invalid (poison)", i, err)
		case !poison && err != nil:
			t.Errorf("decision %d: error %v, want nil", i, err)
		}
	}
	if n := e.count(t, `SELECT count(DISTINCT farmer_id) FROM marketplace.demand_plan_plots WHERE farmer_id = ANY($1::uuid[])`, farmers); n != len(farmers) {
		t.Errorf("%d of %d farmers in the plan, want all (their plot decisions were good)", n, len(farmers))
	}
}
