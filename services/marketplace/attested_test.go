package marketplace_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

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
	var published []*nats.Msg
	for _, b := range bodies {
		m := nats.NewMsg(natsbus.SubjectAttestedPrefix + "plot.mapped")
		m.Data = b
		published = append(published, m)
	}
	msgs := natstest.MustPublishFetch(t, js, published...)

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
