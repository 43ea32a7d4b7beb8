package attest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// waitAttested asks the phone's status endpoint, as the agent's app does,
// until the record has a final status: verified (journaled, so a receipt
// can be had), flagged or rejected.
func waitAttested(t *testing.T, agent *clienttest.Agent, id string) (status, reason string) {
	t.Helper()
	polltest.Eventually(t, 30*time.Second, func() error {
		st, err := agent.Status(context.Background(), id)
		if err != nil {
			return fmt.Errorf("record %s not decided: %w", id, err)
		}
		status, reason = st.Status, ""
		if st.Reason != nil {
			reason = *st.Reason
		}
		switch status {
		case "verified", "flagged", "rejected":
			return nil
		}
		return fmt.Errorf("record %s not decided (last status %q %q)", id, status, reason)
	})
	return status, reason
}

func TestEndToEnd_SyncToVerifiableReceipt(t *testing.T) {
	dataDir := t.TempDir()
	tani := apptest.MustStart(t, "-data-dir="+dataDir)
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	loc := client.Location{Lat: -7.2505, Lon: 110.4005, AccuracyM: 4}
	farmer, plot := uuid.NewString(), uuid.NewString()
	p := clienttest.Payloads(farmer, plot, time.Now())
	p["farmer.registered"]["phone"] = phone()
	p["plot.mapped"]["declared_area"] = map[string]any{"value": 1.22, "unit": "ha"}
	var batch []json.RawMessage
	var ids []string
	for _, typ := range []string{"farmer.registered", "plot.mapped"} {
		raw, id, err := agent.Record(record.Type(typ), time.Now().Add(-time.Hour), loc, p[typ])
		if err != nil {
			t.Fatal(err)
		}
		batch, ids = append(batch, raw), append(ids, id)
	}
	if _, err := agent.Sync(ctx, batch); err != nil {
		t.Fatalf("sync: %v", err)
	}
	for _, id := range ids {
		if st, reason := waitAttested(t, agent, id); st != "verified" {
			t.Fatalf("record %s: got %s (%s), want verified", id, st, reason)
		}
	}
	resp := tani.Get(t, "/ledger/v1/records/"+ids[1]+"/receipt")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("receipt: got %d %s, want 200", resp.StatusCode, body)
	}
	key, err := os.ReadFile(filepath.Join(dataDir, "ledger.pub"))
	if err != nil {
		t.Fatalf("log public key: %v", err)
	}
	res, err := verify.VerifyReceipt(body, strings.TrimSpace(string(key)))
	if err != nil {
		t.Fatalf("receipt does not verify: %v", err)
	}
	if res.Entry.RecordID != ids[1] || res.Entry.Kind != "plot.mapped" {
		t.Errorf("receipt proves %s %s, want %s plot.mapped", res.Entry.RecordID, res.Entry.Kind, ids[1])
	}

	t.Run("ErrNotYetJournaled_SaidSoNot404", func(t *testing.T) {
		// The journal's storage refuses new entries: attest decides the
		// record (its decision row is the outbox) but cannot journal it.
		for _, sql := range []string{
			`CREATE FUNCTION public.journal_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'journal storage unavailable'; END $$`,
			`CREATE TRIGGER journal_down BEFORE INSERT ON ledger.entries FOR EACH STATEMENT EXECUTE FUNCTION public.journal_down()`,
		} {
			if _, err := tani.DB.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		q := clienttest.Payloads(uuid.NewString(), "", time.Now())["farmer.registered"]
		q["phone"] = phone()
		raw, id, err := agent.Record("farmer.registered", time.Now().Add(-time.Hour), loc, q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Sync(ctx, []json.RawMessage{raw}); err != nil {
			t.Fatal(err)
		}
		polltest.Eventually(t, 30*time.Second, func() error {
			st, err := agent.Status(ctx, id)
			if st.Status == "verified" {
				t.Fatalf("got status %+v, want journaling while the journal is down", st)
			}
			if err != nil || st.Status != "journaling" {
				return fmt.Errorf("got status %+v (%v), want journaling while the journal is down", st, err)
			}
			return nil
		})
		resp := tani.Get(t, "/ledger/v1/records/"+id+"/receipt")
		body, _ := io.ReadAll(resp.Body)
		if want := "has no journal entry: not yet journaled"; resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), want) {
			t.Errorf("receipt while journaling: got %d %s, want 409 saying %q", resp.StatusCode, body, want)
		}

		if _, err := tani.DB.Exec(ctx, `DROP TRIGGER journal_down ON ledger.entries`); err != nil {
			t.Fatal(err)
		}
		if st, reason := waitAttested(t, agent, id); st != "verified" {
			t.Fatalf("after the journal is back: got %s (%s), want verified", st, reason)
		}
		if resp := tani.Get(t, "/ledger/v1/records/"+id+"/receipt"); resp.StatusCode != http.StatusOK {
			t.Errorf("receipt once verified: got %d, want 200", resp.StatusCode)
		}
	})
	t.Run("OK_FlaggedApprovedAndJournaled", func(t *testing.T) {
		far := client.Location{Lat: -6.2, Lon: 106.8, AccuracyM: 4} // Jakarta, not the plot
		raw, id, err := agent.Record("crop.planted", time.Now().Add(-time.Hour), far, p["crop.planted"])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Sync(ctx, []json.RawMessage{raw}); err != nil {
			t.Fatal(err)
		}
		if st, reason := waitAttested(t, agent, id); st != "flagged" || !strings.Contains(reason, "capture.near_plot") {
			t.Fatalf("got %s (%s), want flagged by capture.near_plot", st, reason)
		}
		var review string
		if err := tani.DB.QueryRow(ctx, `SELECT id::text FROM attest.reviews WHERE record_id = $1`, id).Scan(&review); err != nil {
			t.Fatal(err)
		}
		reviewer, reviewerID := tani.MustOperatorUser(t, "reviewer")
		req, _ := http.NewRequest(http.MethodPost, tani.URL+"/admin/v1/reviews/"+review+"/approve",
			bytes.NewReader([]byte(`{"reason":"farmer synced from the cooperative office"}`)))
		req.Header.Set("Authorization", "Bearer "+reviewer)
		req.Header.Set("Content-Type", "application/json")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		if r.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(r.Body)
			t.Fatalf("approve: got %d %s, want 200", r.StatusCode, b)
		}
		if st, _ := waitAttested(t, agent, id); st != "verified" {
			t.Errorf("after approval: got %s, want verified", st)
		}
		for _, rec := range []string{id, review} {
			if resp := tani.Get(t, "/ledger/v1/records/"+rec+"/receipt"); resp.StatusCode != http.StatusOK {
				t.Errorf("receipt of %s: got %d, want 200", rec, resp.StatusCode)
			}
		}
		var method, verifier string
		if err := tani.DB.QueryRow(ctx, `SELECT method, verifier FROM attest.provenance WHERE record_id = $1 AND attribute = 'location'`, id).Scan(&method, &verifier); err != nil {
			t.Fatal(err)
		}
		if method != "supervisor_review" || !strings.HasSuffix(verifier, "(user:"+reviewerID+")") || !strings.HasPrefix(verifier, "reviewer:") {
			t.Errorf("got location provenance %s by %s, want supervisor_review by the signed-in reviewer %s", method, verifier, reviewerID)
		}
	})
}
