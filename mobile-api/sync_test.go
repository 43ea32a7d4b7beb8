package mobileapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	mobileapi "github.com/tani-platform/tani/mobile-api"
)

func record(id, typ string) map[string]any {
	return map[string]any{
		"id": id, "type": typ, "captured_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339),
		"payload": map[string]any{"plot_id": "p-1", "quantity_kg": 950},
	}
}

func postSync(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		r = bytes.NewReader(buf)
	}
	resp, err := http.Post(url+"/mobile/v1/sync", "application/json", r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestSync(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	tani := apptest.MustStart(t, "-nats.url="+s.ClientURL())

	t.Run("OK_SameBatchThreeTimesStoredOnce", func(t *testing.T) {
		batch := map[string]any{"records": []any{
			record(uuid.NewString(), "harvest.recorded"),
			record(uuid.NewString(), "crop.planted"),
			record(uuid.NewString(), "sale.recorded"),
		}}
		want := []string{mobileapi.Accepted, mobileapi.Duplicate, mobileapi.Duplicate}
		for i := range 3 {
			code, body := postSync(t, tani.URL, batch)
			if code != http.StatusOK {
				t.Fatalf("send %d: status %d: %s", i+1, code, body)
			}
			var resp mobileapi.SyncResponse
			json.Unmarshal(body, &resp)
			for _, r := range resp.Results {
				if r.Status != want[i] {
					t.Errorf("send %d: %s is %q, want %q", i+1, r.ID, r.Status, want[i])
				}
			}
		}
		for _, rec := range batch["records"].([]any) {
			id := rec.(map[string]any)["id"].(string)
			waitIngested(t, tani, id)
			var n int
			tani.DB.QueryRow(context.Background(), `SELECT count(*) FROM ingest.submissions WHERE id = $1`, id).Scan(&n)
			if n != 1 {
				t.Errorf("record %s stored %d times, want 1", id, n)
			}
		}
	})

	t.Run("ErrConflict_OriginalKept", func(t *testing.T) {
		id := uuid.NewString()
		first := record(id, "harvest.recorded")
		if code, body := postSync(t, tani.URL, map[string]any{"records": []any{first}}); code != http.StatusOK {
			t.Fatalf("first send: %d %s", code, body)
		}
		changed := record(id, "harvest.recorded")
		changed["payload"] = map[string]any{"plot_id": "p-1", "quantity_kg": 9500}
		code, body := postSync(t, tani.URL, map[string]any{"records": []any{changed}})
		if code != http.StatusBadRequest || !strings.Contains(string(body), "different content") {
			t.Errorf("replay with different content: %d %s, want 400 naming the conflict", code, body)
		}
		waitIngested(t, tani, id)
		var qty float64
		tani.DB.QueryRow(context.Background(), `SELECT (payload->>'quantity_kg')::float FROM ingest.submissions WHERE id = $1`, id).Scan(&qty)
		if qty != 950 {
			t.Errorf("stored quantity_kg = %v, want the original 950", qty)
		}
	})

	t.Run("OK_MixedBatchAnsweredPerRecord", func(t *testing.T) {
		good := record(uuid.NewString(), "input.applied")
		bad := record(uuid.NewString(), "input.applied")
		bad["captured_at"] = time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
		code, body := postSync(t, tani.URL, map[string]any{"records": []any{good, bad}})
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		var resp mobileapi.SyncResponse
		json.Unmarshal(body, &resp)
		want := mobileapi.SyncResponse{Results: []mobileapi.SyncResult{
			{ID: good["id"].(string), Status: mobileapi.Accepted},
			{ID: bad["id"].(string), Status: mobileapi.Rejected, Errors: []apperr.FieldError{{Field: "captured_at", Message: "is in the future"}}},
		}}
		if diff := cmp.Diff(want, resp); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
	})

	t.Run("ErrBadInput_NothingPublishedNothingStored", func(t *testing.T) {
		before := streamMsgs(t, js)
		var received int
		tani.DB.QueryRow(context.Background(), `SELECT count(*) FROM mobile.received`).Scan(&received)

		tooMany := make([]any, mobileapi.MaxBatch+1)
		for i := range tooMany {
			tooMany[i] = record(uuid.NewString(), "harvest.recorded")
		}
		wrongType := record(uuid.NewString(), "harvest.recorded")
		wrongType["captured_at"] = 12
		unknownType := record(uuid.NewString(), "weather.observed")
		notUUID := record("42", "harvest.recorded")
		extra := record(uuid.NewString(), "harvest.recorded")
		extra["colour"] = "green"
		tests := []struct {
			name   string
			body   any
			status int
			field  string
		}{
			{"MalformedJSON", `{"records": [`, http.StatusBadRequest, "body"},
			{"NotJSONObject", `[1,2]`, http.StatusBadRequest, "body"},
			{"UnknownTopLevelField", `{"records": [], "device": 1}`, http.StatusBadRequest, "device"},
			{"RecordsWrongType", `{"records": "all"}`, http.StatusBadRequest, "records"},
			{"EmptyBatch", `{"records": []}`, http.StatusBadRequest, "records"},
			{"MissingRecords", `{}`, http.StatusBadRequest, "records"},
			{"TooManyRecords", map[string]any{"records": tooMany}, http.StatusBadRequest, "records"},
			{"OversizedBody", `{"records": ["` + strings.Repeat("x", 7<<20) + `"]}`, http.StatusRequestEntityTooLarge, ""},
			{"WrongFieldType", map[string]any{"records": []any{wrongType}}, http.StatusBadRequest, "records[0].captured_at"},
			{"UnknownRecordType", map[string]any{"records": []any{unknownType}}, http.StatusBadRequest, "records[0].type"},
			{"IDNotUUID", map[string]any{"records": []any{notUUID}}, http.StatusBadRequest, "records[0].id"},
			{"UnknownRecordField", map[string]any{"records": []any{extra}}, http.StatusBadRequest, "records[0].colour"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, body := postSync(t, tani.URL, tt.body)
				if code != tt.status {
					t.Fatalf("status = %d, want %d: %s", code, tt.status, body)
				}
				var e httpserver.ErrorBody
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
					t.Fatalf("body %s is not the common error shape", body)
				}
				if tt.field == "" {
					return
				}
				var fields []string
				for _, f := range e.Error.Fields {
					fields = append(fields, f.Field)
				}
				if !strings.Contains(strings.Join(fields, ","), tt.field) {
					t.Errorf("fields = %v, want one naming %q", fields, tt.field)
				}
			})
		}
		if after := streamMsgs(t, js); after != before {
			t.Errorf("FARM stream grew from %d to %d messages on bad input", before, after)
		}
		var after int
		tani.DB.QueryRow(context.Background(), `SELECT count(*) FROM mobile.received`).Scan(&after)
		if after != received {
			t.Errorf("mobile.received grew from %d to %d rows on bad input", received, after)
		}
	})
}

func TestRecordStatus(t *testing.T) {
	tani := apptest.MustStart(t)
	t.Run("OK_Ingested", func(t *testing.T) {
		id := uuid.NewString()
		if code, body := postSync(t, tani.URL, map[string]any{"records": []any{record(id, "plot.mapped")}}); code != http.StatusOK {
			t.Fatalf("sync: %d %s", code, body)
		}
		st := waitIngested(t, tani, id)
		if st.Type != "plot.mapped" {
			t.Errorf("type = %q, want plot.mapped", st.Type)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if resp := tani.Get(t, "/mobile/v1/records/"+uuid.NewString()); resp.StatusCode != http.StatusNotFound {
			t.Errorf("status = %d, want 404", resp.StatusCode)
		}
	})
	t.Run("ErrInvalidID", func(t *testing.T) {
		if resp := tani.Get(t, "/mobile/v1/records/not-a-uuid"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", resp.StatusCode)
		}
	})
}

// waitIngested polls the status endpoint until the record is ingested.
func waitIngested(t *testing.T, tani *apptest.Running, id string) mobileapi.RecordStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var st mobileapi.RecordStatus
	for time.Now().Before(deadline) {
		resp := tani.Get(t, "/mobile/v1/records/"+id)
		if resp.StatusCode == http.StatusOK {
			json.NewDecoder(resp.Body).Decode(&st)
			if st.Status == "ingested" {
				return st
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("record %s not ingested within 30s (last status %q)", id, st.Status)
	return st
}

// streamMsgs counts submitted records in the FARM stream (ingest adds
// farm.ingested messages concurrently; those are not counted).
func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), natsbus.StreamFarm)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(natsbus.SubjectSubmittedPrefix+">"))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}
