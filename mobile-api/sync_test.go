package mobileapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

var loc = client.Location{Lat: -7.25, Lon: 110.4, AccuracyM: 4}

// signed builds a signed record of typ for the farmer and plot.
func signed(t *testing.T, a *clienttest.Agent, typ, farmer, plot string) (json.RawMessage, string) {
	t.Helper()
	raw, id, err := a.Record(record.Type(typ), time.Now().Add(-time.Hour), loc, clienttest.Payloads(farmer, plot, time.Now())[typ])
	if err != nil {
		t.Fatal(err)
	}
	return raw, id
}

// registered returns a farmer the agent has registered (and so serves).
func registered(t *testing.T, a *clienttest.Agent) string {
	t.Helper()
	farmer := uuid.NewString()
	raw, _ := signed(t, a, "farmer.registered", farmer, "")
	mustSync(t, a, raw)
	return farmer
}

func mustSync(t *testing.T, a *clienttest.Agent, records ...json.RawMessage) []client.SyncResult {
	t.Helper()
	res, err := a.Sync(context.Background(), records)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

func TestSync(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	tani := apptest.MustStart(t, "-nats.url="+s.ClientURL())
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()

	t.Run("OK_EveryTypeStoredOnceWhenSentThreeTimes", func(t *testing.T) {
		farmer, plot := uuid.NewString(), uuid.NewString()
		var batch []json.RawMessage
		var ids []string
		for _, typ := range []string{"farmer.registered", "plot.mapped", "crop.planted", "input.applied", "harvest.recorded", "sale.recorded"} {
			raw, id := signed(t, agent, typ, farmer, plot)
			batch, ids = append(batch, raw), append(ids, id)
		}
		for i, want := range []string{mobileapi.Accepted, mobileapi.Duplicate, mobileapi.Duplicate} {
			for _, r := range mustSync(t, agent, batch...) {
				if r.Status != want {
					t.Errorf("send %d: %s is %q (%v), want %q", i+1, r.ID, r.Status, r.Errors, want)
				}
			}
		}
		for _, id := range ids {
			waitStatus(t, agent, id, "ingested")
			var n int
			tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.submissions WHERE id = $1`, id).Scan(&n)
			if n != 1 {
				t.Errorf("record %s stored %d times, want 1", id, n)
			}
		}
		var area float64
		var phone []byte
		if err := tani.DB.QueryRow(ctx, `SELECT p.area_ha, f.phone_enc FROM ingest.plots p JOIN ingest.farmers f USING (farmer_id) WHERE p.plot_id = $1`, plot).Scan(&area, &phone); err != nil {
			t.Fatalf("domain rows: %v", err)
		}
		if area < 1.1 || area > 1.3 { // 0.001° square near 7°S ≈ 1.22 ha
			t.Errorf("PostGIS area = %.3f ha, want about 1.22", area)
		}
		if bytes.Contains(phone, []byte("6281234567890")) {
			t.Error("phone stored in clear")
		}
	})

	t.Run("OK_RecordsOfATypeTravelTogether", func(t *testing.T) {
		farmer := registered(t, agent)
		var batch []json.RawMessage
		var ids []string
		for _, typ := range []string{"harvest.recorded", "sale.recorded", "harvest.recorded", "harvest.recorded", "sale.recorded"} {
			raw, id := signed(t, agent, typ, farmer, uuid.NewString())
			batch, ids = append(batch, raw), append(ids, id)
		}
		before := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectSubmittedPrefix+">")
		mustSync(t, agent, batch...)
		if n := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectSubmittedPrefix+">") - before; n != 2 {
			t.Errorf("%d messages for 5 records of 2 types, want 2 bundles", n)
		}
		st, err := js.Stream(ctx, natsbus.StreamFarm)
		if err != nil {
			t.Fatal(err)
		}
		last, err := st.GetLastMsgForSubject(ctx, natsbus.SubjectSubmittedPrefix+"harvest.recorded")
		if err != nil {
			t.Fatal(err)
		}
		if got := last.Header.Get(natsbus.HeaderRecords); got != "3" {
			t.Errorf("the harvests' bundle says %s %q, want 3", natsbus.HeaderRecords, got)
		}
		for _, id := range ids {
			waitStatus(t, agent, id, "ingested")
		}
	})

	t.Run("ErrConflict_OriginalKept", func(t *testing.T) {
		farmer := registered(t, agent)
		id := uuid.NewString()
		p := clienttest.Payloads(farmer, uuid.NewString(), time.Now())["harvest.recorded"]
		first, _, _ := agent.RecordWithID(id, "harvest.recorded", time.Now().Add(-time.Hour), loc, p)
		mustSync(t, agent, first)
		p["quality_grade"] = "C"
		changed, _, _ := agent.RecordWithID(id, "harvest.recorded", time.Now().Add(-time.Hour), loc, p)
		_, err := agent.Sync(ctx, []json.RawMessage{changed})
		wantAPIError(t, err, http.StatusBadRequest, "records[0].id")
		waitStatus(t, agent, id, "ingested")
		var grade string
		tani.DB.QueryRow(ctx, `SELECT quality_grade FROM ingest.harvests WHERE record_id = $1`, id).Scan(&grade)
		if grade != "A" {
			t.Errorf("stored grade %q, want the original A", grade)
		}
	})

	t.Run("ErrRecordLevel_RejectedNothingStored", func(t *testing.T) {
		farmer := registered(t, agent)
		other := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
		stranger := registered(t, other)

		tampered, _ := signed(t, agent, "harvest.recorded", farmer, uuid.NewString())
		tampered = bytes.Replace(tampered, []byte(`"quality_grade":"A"`), []byte(`"quality_grade":"B"`), 1)
		unsigned, _ := signed(t, agent, "harvest.recorded", farmer, uuid.NewString())
		var m map[string]any
		json.Unmarshal(unsigned, &m)
		delete(m, "signature")
		unsigned, _ = json.Marshal(m)
		foreign, _ := signed(t, agent, "harvest.recorded", stranger, uuid.NewString())
		otherDevice, _ := signed(t, other, "harvest.recorded", stranger, uuid.NewString()) // signed by a device not enrolled to agent
		future, _, _ := agent.Record("harvest.recorded", time.Now().Add(48*time.Hour), loc, clienttest.Payloads(farmer, uuid.NewString(), time.Now())["harvest.recorded"])
		bowtie := clienttest.Payloads(farmer, uuid.NewString(), time.Now())["plot.mapped"]
		bowtie["boundary"] = map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{{110, -7}, {110.001, -7.001}, {110.001, -7}, {110, -7.001}, {110, -7}}}}
		selfCrossing, _, _ := agent.Record("plot.mapped", time.Now(), loc, bowtie)
		openRing := clienttest.Payloads(farmer, uuid.NewString(), time.Now())["plot.mapped"]
		openRing["boundary"] = map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{{110, -7}, {110.001, -7}, {110.001, -7.001}, {110, -7.001}, {110, -7.0005}}}}
		open, _, _ := agent.Record("plot.mapped", time.Now(), loc, openRing)
		farAway, _, _ := agent.Record("harvest.recorded", time.Now(), client.Location{Lat: 95, Lon: 200}, clienttest.Payloads(farmer, uuid.NewString(), time.Now())["harvest.recorded"])
		unknownType, _, _ := agent.Record("weather.observed", time.Now(), loc, map[string]any{"farmer_id": farmer})
		missingField := clienttest.Payloads(farmer, uuid.NewString(), time.Now())["harvest.recorded"]
		delete(missingField, "quantity")
		missing, _, _ := agent.Record("harvest.recorded", time.Now(), loc, missingField)

		before := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectSubmittedPrefix+">")
		var received int
		tani.DB.QueryRow(ctx, `SELECT count(*) FROM mobile.received`).Scan(&received)
		tests := []struct {
			name  string
			rec   json.RawMessage
			field string
		}{
			{"BadSignature", tampered, "signature"},
			{"MissingSignature", unsigned, "signature"},
			{"UnassignedFarmer", foreign, "payload.farmer_id"},
			{"DeviceNotEnrolledToAgent", otherDevice, "device_id"},
			{"CapturedInFuture", future, "captured_at"},
			{"SelfIntersectingPolygon", selfCrossing, "payload.boundary.coordinates[0]"},
			{"OpenPolygon", open, "payload.boundary.coordinates[0]"},
			{"CoordinatesOutOfRange", farAway, "location.lat"},
			{"UnknownType", unknownType, "type"},
			{"MissingField", missing, "payload.quantity"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := agent.Sync(ctx, []json.RawMessage{tt.rec})
				wantAPIError(t, err, http.StatusBadRequest, "records[0]."+tt.field)
			})
		}
		if after := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectSubmittedPrefix+">"); after != before {
			t.Errorf("FARM stream grew from %d to %d submitted records on bad input", before, after)
		}
		var after int
		tani.DB.QueryRow(ctx, `SELECT count(*) FROM mobile.received`).Scan(&after)
		if after != received {
			t.Errorf("mobile.received grew from %d to %d rows on bad input", received, after)
		}
	})

	t.Run("ErrRevokedDevice", func(t *testing.T) {
		a := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
		farmer := registered(t, a)
		if err := client.NewAdmin(tani.URL, tani.OperatorToken).RevokeDevice(ctx, a.DeviceID, "phone stolen"); err != nil {
			t.Fatal(err)
		}
		rec, _ := signed(t, a, "harvest.recorded", farmer, uuid.NewString())
		_, err := a.Sync(ctx, []json.RawMessage{rec})
		wantAPIError(t, err, http.StatusBadRequest, "records[0].device_id")
	})

	t.Run("OK_MixedBatchAnsweredPerRecord", func(t *testing.T) {
		farmer := registered(t, agent)
		good, goodID := signed(t, agent, "input.applied", farmer, uuid.NewString())
		bad, badID := signed(t, agent, "input.applied", uuid.NewString(), uuid.NewString())
		res := mustSync(t, agent, good, bad)
		if res[0].ID != goodID || res[0].Status != mobileapi.Accepted {
			t.Errorf("first = %+v, want %s accepted", res[0], goodID)
		}
		if res[1].ID != badID || res[1].Status != mobileapi.Rejected || len(res[1].Errors) == 0 || res[1].Errors[0].Field != "payload.farmer_id" {
			t.Errorf("second = %+v, want %s rejected on payload.farmer_id", res[1], badID)
		}
	})

	t.Run("ErrEnvelope", func(t *testing.T) {
		tooMany := make([]json.RawMessage, mobileapi.MaxBatch+1)
		for i := range tooMany {
			tooMany[i] = json.RawMessage(`{}`)
		}
		many, _ := json.Marshal(map[string]any{"records": tooMany})
		tests := []struct {
			name   string
			body   string
			status int
			field  string
		}{
			{"MalformedJSON", `{"records": [`, 400, "body"},
			{"NotAnObject", `[1,2]`, 400, "body"},
			{"UnknownTopLevelField", `{"records": [{}], "device": 1}`, 400, "device"},
			{"RecordsWrongType", `{"records": "all"}`, 400, "records"},
			{"EmptyBatch", `{"records": []}`, 400, "records"},
			{"TooManyRecords", string(many), 400, "records"},
			{"OversizedBody", `{"records": ["` + strings.Repeat("x", 7<<20) + `"]}`, 413, ""},
			{"OverFiveMegabytes", `{"records": ["` + strings.Repeat("x", 5<<20+1024) + `"]}`, 413, ""},
			{"RecordsTwice", `{"records": [{}], "records": [{}]}`, 400, "records"},
			{"RecordsInAnotherCase", `{"Records": [{}]}`, 400, "Records"},
			{"NullRecords", `{"records": null}`, 400, "records"},
			{"TrailingComma", `{"records": [{},]}`, 400, "body"},
			{"BracketsDoNotMatch", `{"records": [{"a": [1}]}`, 400, "body"},
			{"UnclosedString", `{"records": ["abc]}`, 400, "body"},
			{"DataAfterTheObject", `{"records": [{}]} {}`, 400, "body"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, body := rawSync(t, tani, agent, tt.body)
				if status != tt.status {
					t.Fatalf("status = %d, want %d: %s", status, tt.status, body)
				}
				var e httpserver.ErrorBody
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
					t.Fatalf("body %s is not the common error shape", body)
				}
				if tt.field != "" && !hasField(e, tt.field) {
					t.Errorf("fields = %+v, want one naming %q", e.Error.Fields, tt.field)
				}
			})
		}
		t.Run("Unauthenticated", func(t *testing.T) {
			resp, err := http.Post(tani.URL+"/mobile/v1/sync", "application/json", strings.NewReader(`{"records":[{}]}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", resp.StatusCode)
			}
		})
	})
}

func TestRecordStatus(t *testing.T) {
	tani := apptest.MustStart(t)
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	t.Run("OK_Ingested", func(t *testing.T) {
		farmer := uuid.NewString()
		raw, id := signed(t, agent, "farmer.registered", farmer, "")
		mustSync(t, agent, raw)
		if st := waitStatus(t, agent, id, "ingested"); st.Type != "farmer.registered" {
			t.Errorf("type = %q, want farmer.registered", st.Type)
		}
	})
	t.Run("ErrNotFound_OtherAgentsRecord", func(t *testing.T) {
		other := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
		raw, id := signed(t, other, "farmer.registered", uuid.NewString(), "")
		mustSync(t, other, raw)
		_, err := agent.Status(ctx, id)
		wantAPIError(t, err, http.StatusNotFound, "")
	})
	t.Run("ErrInvalidID", func(t *testing.T) {
		_, err := agent.Status(ctx, "not-a-uuid")
		wantAPIError(t, err, http.StatusBadRequest, "id")
	})
}

// waitStatus polls the status endpoint until the record reaches want. As
// attest decides right after ingest, "ingested" means "at least ingested":
// a verdict counts too; "decided" means any verdict.
func waitStatus(t *testing.T, a *clienttest.Agent, id, want string) client.Status {
	t.Helper()
	reached := map[string]bool{want: true}
	switch want {
	case "ingested":
		reached = map[string]bool{"ingested": true, "verified": true, "flagged": true, "rejected": true}
	case "decided": // attest's verdict
		reached = map[string]bool{"verified": true, "flagged": true, "rejected": true}
	}
	var st client.Status
	polltest.Eventually(t, 30*time.Second, func() error {
		var err error
		if st, err = a.Status(context.Background(), id); err != nil {
			return fmt.Errorf("record %s not %s: %w", id, want, err)
		}
		if !reached[st.Status] {
			return fmt.Errorf("record %s not %s (last %+v)", id, want, st)
		}
		return nil
	})
	return st
}

func wantAPIError(t *testing.T, err error, status int, field string) {
	t.Helper()
	var apiErr *client.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want an API error %d", err, status)
	}
	if apiErr.Status != status {
		t.Errorf("status = %d, want %d (%v)", apiErr.Status, status, apiErr)
	}
	if field == "" {
		return
	}
	for _, f := range apiErr.Fields {
		if strings.HasPrefix(f.Field, field) {
			return
		}
	}
	t.Errorf("fields = %+v, want one naming %q", apiErr.Fields, field)
}

func hasField(e httpserver.ErrorBody, field string) bool {
	for _, f := range e.Error.Fields {
		if strings.HasPrefix(f.Field, field) {
			return true
		}
	}
	return false
}

func rawSync(t *testing.T, tani *apptest.Running, a *clienttest.Agent, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tani.URL+"/mobile/v1/sync", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+accessToken(t, tani, a))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}
