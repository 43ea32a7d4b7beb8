package deadletter_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/deadletter"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

func adminGet(t *testing.T, tani *apptest.Running, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, tani.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tani.OperatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func adminPost(t *testing.T, tani *apptest.Running, path, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tani.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestDeadLetters(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	tani := apptest.MustStart(t, "-nats.url="+s.ClientURL())
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()

	// A record signed by a phone whose enrollment has not reached the
	// platform, published straight to the stream (as a replayed backup
	// would be): ingest refuses it and it dies with the reason.
	pub, key, _ := ed25519.GenerateKey(nil)
	device := uuid.NewString()
	lat, lon := -7.25, 110.4
	farmer := uuid.NewString()
	payload, _ := json.Marshal(clienttest.Payloads(farmer, "", time.Now())["farmer.registered"])
	env, raw, err := record.Sign(key, record.Envelope{ID: uuid.NewString(), Type: "farmer.registered", CapturedAt: time.Now().UTC().Format(time.RFC3339),
		DeviceID: device, Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: 4}, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	canonical, _ := record.Canonical(raw)
	if _, err := js.Publish(ctx, natsbus.SubjectSubmittedPrefix+env.Type, canonical, jetstream.WithMsgID(env.ID)); err != nil {
		t.Fatal(err)
	}

	var page deadletter.Page
	waitFor(t, func() bool {
		adminGet(t, tani, "/admin/v1/deadletters", &page)
		return len(page.Letters) == 1
	})
	l := page.Letters[0]
	if l.Subject != "farm.submitted.farmer.registered" || l.Consumer != "ingest" || !strings.Contains(l.Reason, "not enrolled") {
		t.Errorf("dead letter = %+v, want ingest's refusal of farm.submitted.farmer.registered naming the unenrolled device", l)
	}

	t.Run("OK_NoPIIInClear", func(t *testing.T) {
		p := clienttest.Payloads(farmer, "", time.Now())["farmer.registered"]
		nationalID, phone := p["national_id"].(string), p["phone"].(string)
		// Beside ingest's refusal, letters no parser would call a
		// record: PII under a case variant of its member, and a farmer
		// record cut short (not JSON at all).
		for i, data := range []string{
			`{"type":"farmer.registered","payload":{"National_ID":"` + nationalID + `","extra":{"PHONE":"` + phone + `"}}}`,
			string(raw[:len(raw)/2]),
		} {
			if _, err := js.Publish(ctx, natsbus.SubjectDeadPrefix+"farm.submitted.farmer.registered", []byte(data),
				jetstream.WithMsgID("pii-"+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		req, _ := http.NewRequest(http.MethodGet, tani.URL+"/admin/v1/deadletters", nil)
		req.Header.Set("Authorization", "Bearer "+tani.OperatorToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var all deadletter.Page
		if err := json.Unmarshal(body, &all); err != nil || len(all.Letters) != 3 {
			t.Fatalf("listing = %s (%v), want 3 letters", body, err)
		}
		for _, clear := range []string{nationalID, phone, strings.TrimPrefix(phone, "+")} {
			if strings.Contains(string(body), clear) {
				t.Errorf("listing shows %q in clear: %s", clear, body)
			}
		}
		var refused struct {
			Payload map[string]any `json:"payload"`
		}
		if err := json.Unmarshal(all.Letters[0].Data, &refused); err != nil || refused.Payload["national_id_hmac"] == nil || refused.Payload["name"] != p["name"] {
			t.Errorf("ingest's refused record shown as %s, want its protected form (national_id_hmac, the rest as sent)", all.Letters[0].Data)
		}
		if cut := all.Letters[2]; cut.Data != nil || cut.Bytes != len(raw)/2 || len(cut.SHA256) != 64 {
			t.Errorf("a record cut short is shown as %+v, want only its size and hash", cut)
		}
		// Leave only ingest's refusal for the replay below.
		st, err := js.Stream(ctx, natsbus.StreamDead)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range all.Letters[1:] {
			if err := st.DeleteMsg(ctx, l.Seq); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("ErrUnauthorized", func(t *testing.T) {
		if code := adminPost(t, tani, "/admin/v1/deadletters/1/replay", ""); code != http.StatusUnauthorized {
			t.Errorf("status = %d, want 401", code)
		}
		if code := adminPost(t, tani, "/admin/v1/deadletters/1/replay", "not-the-token"); code != http.StatusUnauthorized {
			t.Errorf("status = %d, want 401", code)
		}
	})
	t.Run("ErrBadInput", func(t *testing.T) {
		if code := adminPost(t, tani, "/admin/v1/deadletters/zero/replay", tani.OperatorToken); code != http.StatusBadRequest {
			t.Errorf("replay of seq 'zero' = %d, want 400", code)
		}
		if code := adminPost(t, tani, "/admin/v1/deadletters/999999/replay", tani.OperatorToken); code != http.StatusNotFound {
			t.Errorf("replay of unknown seq = %d, want 404", code)
		}
		if code := adminGet(t, tani, "/admin/v1/deadletters?limit=0", nil); code != http.StatusBadRequest {
			t.Errorf("limit=0 = %d, want 400", code)
		}
	})

	t.Run("OK_ReplayAfterFixStoresTheRecord", func(t *testing.T) {
		// The enrollment arrives (here written as the enrollment endpoint would).
		if _, err := tani.DB.Exec(ctx, `INSERT INTO mobile.devices (id, agent_id, public_key, name) VALUES ($1, $2, $3, 'late phone')`, device, agent.ID, []byte(pub)); err != nil {
			t.Fatal(err)
		}
		if code := adminPost(t, tani, "/admin/v1/deadletters/"+strconv.FormatUint(l.Seq, 10)+"/replay", tani.OperatorToken); code != http.StatusOK {
			t.Fatalf("replay = %d, want 200", code)
		}
		waitFor(t, func() bool {
			var n int
			tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.submissions WHERE id = $1`, env.ID).Scan(&n)
			return n == 1
		})
		adminGet(t, tani, "/admin/v1/deadletters", &page)
		if len(page.Letters) != 0 {
			t.Errorf("dead letters after a successful replay: %+v", page.Letters)
		}
		if code := adminPost(t, tani, "/admin/v1/deadletters/"+strconv.FormatUint(l.Seq, 10)+"/replay", tani.OperatorToken); code != http.StatusNotFound {
			t.Errorf("second replay = %d, want 404", code)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
