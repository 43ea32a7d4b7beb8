package mobileapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestRefusedAfterAck: records mobile-api acknowledged and a later stage
// then refused (or gave up on) are shown to the phone as refused, with the
// reason, on the status endpoint and in sync-down, and are listed and
// counted for operators. mobile-api runs alone first, so records wait in
// the stream while the test changes what ingest will find.
func TestRefusedAfterAck(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	api := apptest.MustStart(t, "-target=mobile-api", "-nats.url="+s.ClientURL())
	ctx := context.Background()

	// Agent A's phone is revoked after its records were acknowledged,
	// with a revocation time before they reached the platform (the
	// revocation raced the sync): ingest refuses them as invalid.
	a := clienttest.MustAgent(t, api.URL, api.OperatorToken, "Central Java")
	farmerA := uuid.NewString()
	regA, regAID := signed(t, a, "farmer.registered", farmerA, "")
	harvestA, harvestAID := signed(t, a, "harvest.recorded", farmerA, uuid.NewString())
	mustSync(t, a, regA, harvestA)
	if _, err := api.DB.Exec(ctx, `UPDATE mobile.devices SET revoked_at = now() - interval '1 hour', revoked_reason = 'stolen' WHERE id = $1`, a.DeviceID); err != nil {
		t.Fatal(err)
	}

	// Agent B's sale cannot be stored however often ingest tries (the
	// table refuses it, as a broken migration or a full disk would):
	// ingest gives up on it and on nothing else.
	b := clienttest.MustAgent(t, api.URL, api.OperatorToken, "Central Java")
	farmerB := uuid.NewString()
	regB, regBID := signed(t, b, "farmer.registered", farmerB, "")
	sale, saleID := signed(t, b, "sale.recorded", farmerB, "")
	mustSync(t, b, regB, sale)
	if _, err := api.DB.Exec(ctx, `
		CREATE FUNCTION ingest.test_refuse_sale() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'disk full'; END $$;
		CREATE TRIGGER test_refuse_sale BEFORE INSERT ON ingest.sales FOR EACH ROW EXECUTE FUNCTION ingest.test_refuse_sale()`); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{regAID, harvestAID, saleID} {
		if st, err := statusOf(a, b, id); err != nil || st.Status != "received" {
			t.Fatalf("before ingest, %s is %+v (%v), want received", id, st, err)
		}
	}

	apptest.MustStart(t, "-target=ingest", "-nats.url="+s.ClientURL(), "-database.url="+api.DatabaseURL, "-ingest.max-deliver=2")
	var bCursor string // B's sync-down position after its first sync

	t.Run("ErrDeviceRevokedBeforeIngest_RefusedWithReason", func(t *testing.T) {
		for _, id := range []string{regAID, harvestAID} {
			st := waitStatus(t, a, id, mobileapi.Refused)
			if st.Reason == nil || !strings.Contains(*st.Reason, "revoked") {
				t.Errorf("%s refused because %v, want the revocation named", id, reason(st))
			}
		}
	})
	t.Run("ErrGivenUp_RefusedWithoutInternalDetail", func(t *testing.T) {
		st := waitStatus(t, b, saleID, mobileapi.Refused)
		if st.Reason == nil || strings.Contains(*st.Reason, "disk full") || !strings.Contains(*st.Reason, "operators") {
			t.Errorf("sale refused because %v, want a notice that operators were alerted, without the database's error", reason(st))
		}
		waitStatus(t, b, regBID, "ingested") // only the sale fails
	})
	t.Run("OK_SyncDownListsRefusals", func(t *testing.T) {
		code, page := syncDown(t, api, a, "", 0)
		if code != http.StatusOK {
			t.Fatalf("sync-down = %d", code)
		}
		var got []string
		for _, r := range page.Refused {
			if r.Status != mobileapi.Refused || r.Reason == nil || !strings.Contains(*r.Reason, "revoked") {
				t.Errorf("sync-down refusal %+v, want status refused with the reason", r)
			}
			got = append(got, r.ID)
		}
		slices.Sort(got)
		want := []string{regAID, harvestAID}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("sync-down refused = %v, want %v", got, want)
		}
		// Later syncs start where the last one ended: once the window
		// has moved past them (a transaction still running when a cursor
		// is taken may send them once more), they stop coming.
		cursor := page.Cursor
		waitForCond(t, "refusals no longer synced down", func() bool {
			_, next := syncDown(t, api, a, cursor, 0)
			cursor = next.Cursor
			return len(next.Refused) == 0
		})
		_, other := syncDown(t, api, b, "", 0)
		if len(other.Refused) != 1 || other.Refused[0].ID != saleID {
			t.Errorf("B's sync-down refused = %+v, want only its sale", other.Refused)
		}
		bCursor = other.Cursor
	})
	t.Run("OK_AttestGivingUpAfterStorage_Refused", func(t *testing.T) {
		// What attest's consumer publishes when it gives up on a stored
		// record (natsbus's dead-letter path, tested in natsbus).
		msg := nats.NewMsg(natsbus.SubjectDeadPrefix + natsbus.SubjectIngestedPrefix + "farmer.registered")
		msg.Data = regB
		msg.Header.Set(jetstream.MsgIDHeader, "dead:attest:ingested:"+regBID)
		msg.Header.Set(natsbus.HeaderDeadConsumer, "attest")
		msg.Header.Set(natsbus.HeaderDeadSubject, natsbus.SubjectIngestedPrefix+"farmer.registered")
		msg.Header.Set(natsbus.HeaderDeadClass, natsbus.ClassGaveUp)
		msg.Header.Set(natsbus.HeaderDeadNotice, "the platform failed to process this record 10 times")
		msg.Header.Set(natsbus.HeaderDeadReason, "gave up after 10 deliveries: rule error")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		st := waitStatus(t, b, regBID, mobileapi.Refused)
		if st.Reason == nil || !strings.Contains(*st.Reason, "10 times") {
			t.Errorf("reason %v, want attest's notice", reason(st))
		}
		// A refusal recorded after B's last sync comes down in the next.
		_, page := syncDown(t, api, b, bCursor, 0)
		if !slices.ContainsFunc(page.Refused, func(r mobileapi.RecordStatus) bool { return r.ID == regBID }) {
			t.Errorf("B's next sync-down refused = %+v, want its registration", page.Refused)
		}
	})
	t.Run("OK_MalformedDeadLetterRecordedForOperators", func(t *testing.T) {
		// Anything may land in DEAD: no message ID, no record id, a NUL
		// in its type, an odd consumer name. It is recorded (never
		// retried forever) and listed, and it is nobody's record.
		msg := nats.NewMsg(natsbus.SubjectDeadPrefix + natsbus.SubjectSubmittedPrefix + "x")
		msg.Data = []byte(`{"id":"not-a-uuid","type":"a\u0000b"}`)
		msg.Header.Set(natsbus.HeaderDeadConsumer, "Odd Consumer!")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		waitForCond(t, "malformed dead letter listed", func() bool {
			var page mobileapi.RefusalsPage
			adminGet(t, api, "/admin/v1/refusals?limit=500", &page)
			return slices.ContainsFunc(page.Refusals, func(f mobileapi.Refusal) bool {
				return f.Stage == "Odd Consumer!" && f.RecordID == nil && f.RecordType != nil && strings.HasPrefix(f.LetterID, "DEAD#")
			})
		})
	})
	t.Run("OK_OperatorsListAndCount", func(t *testing.T) {
		var page mobileapi.RefusalsPage
		adminGet(t, api, "/admin/v1/refusals?limit=500", &page)
		byRecord := map[string]mobileapi.Refusal{}
		for _, f := range page.Refusals {
			if f.RecordID != nil {
				byRecord[*f.RecordID] = f
			}
		}
		for id, want := range map[string]struct{ stage, class, agent string }{
			regAID:     {"ingest", "invalid", a.ID},
			harvestAID: {"ingest", "invalid", a.ID},
			saleID:     {"ingest", "gave_up", b.ID},
			regBID:     {"attest", "gave_up", b.ID},
		} {
			f, ok := byRecord[id]
			if !ok {
				t.Errorf("record %s not in /admin/v1/refusals", id)
				continue
			}
			if f.Stage != want.stage || f.Class != want.class || f.AgentID == nil || *f.AgentID != want.agent || f.DeadSeq == 0 {
				t.Errorf("refusal of %s = stage %s class %s agent %v seq %d, want %s %s by %s with its DEAD sequence",
					id, f.Stage, f.Class, f.AgentID, f.DeadSeq, want.stage, want.class, want.agent)
			}
		}
		if f := byRecord[saleID]; !strings.Contains(f.Reason, "disk full") {
			t.Errorf("operators' reason %q, want the database's error", f.Reason)
		}
		// The count follows the row: a refusal is counted once its
		// insert has committed, so a listing can be a moment ahead.
		polltest.Eventually(t, 30*time.Second, func() error {
			metrics := api.Get(t, "/metrics")
			body, _ := io.ReadAll(metrics.Body)
			metrics.Body.Close()
			for _, want := range []string{
				`tani_records_refused_after_ack_total{reason_class="invalid",stage="ingest"} 2`,
				`tani_records_refused_after_ack_total{reason_class="gave_up",stage="ingest"} 1`,
				`tani_records_refused_after_ack_total{reason_class="gave_up",stage="attest"} 1`,
				`tani_records_refused_after_ack_total{reason_class="invalid",stage="other"} 1`,
			} {
				if !strings.Contains(string(body), want) {
					return fmt.Errorf("/metrics lacks %s", want)
				}
			}
			return nil
		})
	})
	t.Run("OK_ReplayedAfterTheFix_FollowsTheRecordAgain", func(t *testing.T) {
		if _, err := api.DB.Exec(ctx, `DROP TRIGGER test_refuse_sale ON ingest.sales`); err != nil {
			t.Fatal(err)
		}
		var page mobileapi.RefusalsPage
		adminGet(t, api, "/admin/v1/refusals?stage=ingest&limit=500", &page)
		i := slices.IndexFunc(page.Refusals, func(f mobileapi.Refusal) bool { return f.RecordID != nil && *f.RecordID == saleID })
		if i < 0 {
			t.Fatal("sale not listed under stage=ingest")
		}
		adminPost(t, api, fmt.Sprintf("/admin/v1/deadletters/%d/replay", page.Refusals[i].DeadSeq))
		waitStatus(t, b, saleID, "ingested")
	})
	t.Run("ErrBadListParameters", func(t *testing.T) {
		for _, q := range []string{"after=-1", "after=x", "limit=0", "limit=501"} {
			if code := adminStatus(t, api, "/admin/v1/refusals?"+q); code != http.StatusBadRequest {
				t.Errorf("?%s = %d, want 400", q, code)
			}
		}
	})
}

// statusOf asks whichever agent sent the record.
func statusOf(a, b *clienttest.Agent, id string) (client.Status, error) {
	st, err := a.Status(context.Background(), id)
	if err != nil {
		return b.Status(context.Background(), id)
	}
	return st, nil
}

func reason(st client.Status) string {
	if st.Reason == nil {
		return "(no reason)"
	}
	return *st.Reason
}

func adminRequest(t *testing.T, tani *apptest.Running, method, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, tani.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tani.OperatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func adminGet(t *testing.T, tani *apptest.Running, path string, out any) {
	t.Helper()
	resp := adminRequest(t, tani, http.MethodGet, path)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func adminPost(t *testing.T, tani *apptest.Running, path string) {
	t.Helper()
	resp := adminRequest(t, tani, http.MethodPost, path)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s = %d %s", path, resp.StatusCode, body)
	}
}

func adminStatus(t *testing.T, tani *apptest.Running, path string) int {
	t.Helper()
	return adminRequest(t, tani, http.MethodGet, path).StatusCode
}

// waitForCond polls cond until it holds; it fails the test after 30 s.
func waitForCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	polltest.Eventually(t, 30*time.Second, func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	})
}
