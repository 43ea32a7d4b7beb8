package mobileapi_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestSyncCrossOrganizationWrite is the attack of issue 11: a payload that
// names another organization's farmer in farmer_id and the agent's own
// farmer in FARMER_ID. A case-insensitive, last-key-wins reader saw the
// agent's own farmer; the canonical bytes ingest stores name the victim.
// The record must be refused at /sync, and nothing stored.
func TestSyncCrossOrganizationWrite(t *testing.T) {
	tani := apptest.MustStart(t)
	ctx := context.Background()
	attacker := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	other := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java") // another organization
	own, victim := registered(t, attacker), registered(t, other)

	// Members in this order: the victim first, the agent's own farmer
	// last, where encoding/json's last-key-wins reading picks it up; in
	// canonical order FARMER_ID sorts first and farmer_id (the victim)
	// wins.
	payloads := map[string]string{
		"sale.recorded": `{"farmer_id":"` + victim + `","buyer":"KUD Makmur","crop":"rice","quantity":{"value":999,"unit":"t"},` +
			`"price":{"amount":1,"currency":"IDR"},"sold_on":"` + time.Now().Format(time.DateOnly) + `","FARMER_ID":"` + own + `"}`,
		"farmer.registered": `{"farmer_id":"` + victim + `","name":"Attacker","national_id":"3374015505800099","phone":"+6289900000000",` +
			`"village":"Elsewhere","gender":"male","birth_year":1980,"FARMER_ID":"` + uuid.NewString() + `"}`,
		"plot.mapped": `{"farmer_id":"` + victim + `","plot_id":"` + uuid.NewString() + `","boundary":{"type":"Polygon","coordinates":[[[110.4,-7.25],[110.41,-7.25],[110.41,-7.26],[110.4,-7.26],[110.4,-7.25]]]},` +
			`"declared_area":{"value":122,"unit":"ha"},"tenure":"owned","gps_accuracy_m":3,"mock_location":false,"FARMER_ID":"` + own + `"}`,
	}
	for typ, payload := range payloads {
		t.Run("ErrCaseVariantKey_"+typ, func(t *testing.T) {
			raw, id, err := attacker.Record(typ, time.Now().Add(-time.Hour), loc, json.RawMessage(payload))
			if err != nil {
				t.Fatal(err)
			}
			_, err = attacker.Sync(ctx, []json.RawMessage{raw})
			wantAPIError(t, err, http.StatusBadRequest, "records[0].payload.FARMER_ID")
			var received, stored int
			tani.DB.QueryRow(ctx, `SELECT count(*) FROM mobile.received WHERE id = $1`, id).Scan(&received)
			tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.submissions WHERE id = $1`, id).Scan(&stored)
			if received+stored != 0 {
				t.Errorf("refused record left %d received and %d stored rows", received, stored)
			}
		})
	}
	// Anything that did slip through would be ingested by now: the
	// victim's data must be only what their own agent sent.
	var name string
	var sales, plots int
	tani.DB.QueryRow(ctx, `SELECT name FROM ingest.farmers WHERE farmer_id = $1`, victim).Scan(&name)
	tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.sales WHERE farmer_id = $1`, victim).Scan(&sales)
	tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.plots WHERE farmer_id = $1`, victim).Scan(&plots)
	if name == "Attacker" || sales+plots != 0 {
		t.Errorf("victim's data was written by the attacker: name %q, %d sales, %d plots", name, sales, plots)
	}
}

// TestSyncNeverStoredClasses feeds through /sync each kind of record that
// used to be acknowledged and then never stored (refused by Postgres,
// PostGIS or the journal after the 2xx). Each must be refused at /sync
// with a field error, or stored and decided (and journaled if verified):
// never dead-lettered, never left "received".
func TestSyncNeverStoredClasses(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	tani := apptest.MustStart(t, "-nats.url="+s.ClientURL())
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	farmer := registered(t, agent)
	deadBefore := natstest.Count(t, js, natsbus.StreamDead, "")

	payload := func(typ string, change func(map[string]any)) map[string]any {
		p := clienttest.Payloads(farmer, uuid.NewString(), time.Now())[typ]
		change(p)
		return p
	}
	square := [][2]float64{{110.4, -7.25}, {110.41, -7.25}, {110.41, -7.26}, {110.4, -7.26}, {110.4, -7.25}}
	boundary := func(rings ...any) func(map[string]any) {
		return func(p map[string]any) { p["boundary"] = map[string]any{"type": "Polygon", "coordinates": rings} }
	}
	tests := []struct {
		name     string
		id       string // the record id; a new one if empty
		typ      string
		captured *time.Time // an hour ago if nil
		payload  map[string]any
		field    string                        // the field error expected if refused
		intact   func(t *testing.T, id string) // if accepted: what was stored is what was sent
	}{
		{name: "NULInString", typ: "sale.recorded", payload: payload("sale.recorded", func(p map[string]any) { p["buyer"] = "KUD\x00Makmur" }), field: "payload.buyer"},
		{name: "ANSIEscapeInName", typ: "farmer.registered", payload: payload("farmer.registered", func(p map[string]any) {
			p["farmer_id"], p["name"] = uuid.NewString(), "\x1b[2J\x1b[31mSiti"
		}), field: "payload.name"},
		{name: "DateInYear0000", typ: "sale.recorded", payload: payload("sale.recorded", func(p map[string]any) { p["sold_on"] = "0000-01-01" }), field: "payload.sold_on"},
		{name: "CapturedInYear0001", typ: "farmer.registered", captured: new(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)), // Go's zero time
			payload: payload("farmer.registered", func(p map[string]any) {
				p["farmer_id"], p["phone"] = uuid.NewString(), fmt.Sprintf("+6281%09d", time.Now().UnixNano()%1e9)
			}), field: "captured_at"},
		{name: "HoleCrossingOuterRing", typ: "plot.mapped", payload: payload("plot.mapped", boundary(square,
			[][2]float64{{110.405, -7.255}, {110.42, -7.255}, {110.42, -7.256}, {110.405, -7.256}, {110.405, -7.255}})), field: "payload.boundary.coordinates[1]"},
		{name: "HoleOutsideOuterRing", typ: "plot.mapped", payload: payload("plot.mapped", boundary(square,
			[][2]float64{{110.5, -7.3}, {110.51, -7.3}, {110.51, -7.31}, {110.5, -7.31}, {110.5, -7.3}})), field: "payload.boundary.coordinates[1]"},
		{name: "HoleEqualToOuterRing", typ: "plot.mapped", payload: payload("plot.mapped", boundary(square, square)), field: "payload.boundary.coordinates[1]"},
		{name: "ZeroAreaRing", typ: "plot.mapped", payload: payload("plot.mapped", boundary(
			[][2]float64{{110.4, -7.25}, {110.41, -7.25}, {110.42, -7.25}, {110.4, -7.25}})), field: "payload.boundary.coordinates[0]"},
		{name: "NearGlobalPolygon", typ: "plot.mapped", payload: payload("plot.mapped", boundary(
			[][2]float64{{-179, -89}, {179, -89}, {179, 89}, {-179, 89}, {-179, -89}})), field: "payload.boundary.coordinates"},
		{name: "ThirdCoordinate", typ: "plot.mapped", payload: payload("plot.mapped", boundary(
			[][3]float64{{110.4, -7.25, 12}, {110.41, -7.25, 12}, {110.41, -7.26, 12}, {110.4, -7.26, 12}, {110.4, -7.25, 12}})), field: "payload.boundary.coordinates[0][0]",
			intact: func(t *testing.T, id string) {
				var dims int
				tani.DB.QueryRow(ctx, `SELECT ST_NDims(boundary::geometry) FROM ingest.plots WHERE record_id = $1`, id).Scan(&dims)
				if dims != 3 {
					t.Errorf("stored boundary has %d dimensions; the altitude sent was dropped", dims)
				}
			}},
		{name: "NilUUIDAsID", id: "00000000-0000-0000-0000-000000000000", typ: "harvest.recorded", payload: payload("harvest.recorded", func(map[string]any) {}), field: "id"},
		{name: "NilUUIDAsPlot", typ: "harvest.recorded", payload: payload("harvest.recorded", func(p map[string]any) { p["plot_id"] = "00000000-0000-0000-0000-000000000000" }), field: "payload.plot_id"},
		{name: "IntegerBeyond2To53", typ: "sale.recorded", payload: payload("sale.recorded", func(p map[string]any) {
			p["price"] = map[string]any{"amount": int64(1<<53 + 1), "currency": "IDR"}
		}), field: "payload.price.amount", intact: func(t *testing.T, id string) {
			var amount int64
			tani.DB.QueryRow(ctx, `SELECT price_minor FROM ingest.sales WHERE record_id = $1`, id).Scan(&amount)
			if amount != 1<<53+1 {
				t.Errorf("stored amount %d, sent %d", amount, int64(1<<53+1))
			}
		}},
		{name: "UppercaseID", id: strings.ToUpper(uuid.NewString()), typ: "harvest.recorded", payload: payload("harvest.recorded", func(map[string]any) {}), field: "id"},
		{name: "UppercasePlotID", typ: "harvest.recorded", payload: payload("harvest.recorded", func(p map[string]any) { p["plot_id"] = strings.ToUpper(uuid.NewString()) }), field: "payload.plot_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, captured := cmp.Or(tt.id, uuid.NewString()), time.Now().Add(-time.Hour)
			if tt.captured != nil {
				captured = *tt.captured
			}
			raw, _, err := agent.RecordWithID(id, tt.typ, captured, loc, tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			_, err = agent.Sync(ctx, []json.RawMessage{raw})
			var apiErr *client.Error
			if errors.As(err, &apiErr) {
				wantAPIError(t, err, http.StatusBadRequest, "records[0]."+tt.field)
				var received int
				tani.DB.QueryRow(ctx, `SELECT count(*) FROM mobile.received WHERE id = $1::uuid`, id).Scan(&received)
				if received != 0 {
					t.Errorf("refused record %s was remembered as received", id)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Accepted: then it must be stored as sent, verified and
			// journaled. A record flagged for review, rejected by attest
			// or stored altered was acknowledged and then not kept.
			st := waitStatus(t, agent, id, "decided")
			if st.Status != "verified" {
				t.Fatalf("accepted at /sync, then %s (%s): neither refused nor journaled", st.Status, *cmp.Or(st.Reason, new(string)))
			}
			waitJournaled(t, tani, id)
			if tt.intact != nil {
				tt.intact(t, id)
			}
		})
	}
	if dead := natstest.Count(t, js, natsbus.StreamDead, "") - deadBefore; dead != 0 {
		t.Errorf("%d records dead-lettered", dead)
	}
}

// waitJournaled polls the ledger until the record has a revision.
func waitJournaled(t *testing.T, tani *apptest.Running, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(tani.URL + "/ledger/v1/records/" + id + "/history")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("record %s verified but not journaled within 30s", id)
}
