package consent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/mobile-api/client"
)

// TestConsentErasure: a farmer's erasure deletes the organizations'
// consent requests to them and the consent state changes about them
// (their journal payloads redacted), and keeps the access log
// pseudonymised: every read and refused read stays, under the erasure's
// id, for the operator to answer who looked. Afterwards the farmer is
// unknown to consent requests, and a read of their id logged later is
// pseudonymised by the next sweep.
func TestConsentErasure(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	bank, dist := w.bank, w.dist

	req := w.request(t, bank, []string{"plots", "harvests"}, 90)
	mustSync(t, w.agent, w.grant(t, req.ID, bank.id, []string{"plots", "harvests"}, 90))
	w.waitConsent(t, bank, req.ID, func(c consent.Consent) error {
		if c.Status != consent.StatusAuthorised {
			return fmt.Errorf("status %s, want authorised", c.Status)
		}
		return nil
	})
	open := w.request(t, dist, []string{"orders"}, 30) // still awaiting an answer
	for _, o := range []struct {
		org org
		id  string
	}{{bank, req.ID}, {dist, open.ID}} {
		w.waitConsent(t, o.org, o.id, func(c consent.Consent) error {
			if len(c.Journal) == 0 || !c.Journal[0].Journaled {
				return fmt.Errorf("request %s not journaled yet", o.id)
			}
			return nil
		})
	}
	if code := w.history(t, bank, w.plotRec); code != http.StatusOK {
		t.Fatalf("bank reads the plot's history: %d, want 200", code)
	}
	if code := w.history(t, dist, w.plotRec); code != http.StatusForbidden {
		t.Fatalf("distributor reads the plot's history: %d, want 403", code)
	}
	type row struct{ Org, Credential, Purpose string }
	accessRows := func(cond string, arg any) []row {
		t.Helper()
		rows, err := w.tani.DB.Query(ctx, `SELECT organization_id::text, credential, purpose FROM consent.access_log WHERE `+cond+` ORDER BY id`, arg)
		if err != nil {
			t.Fatal(err)
		}
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.Org, &r.Credential, &r.Purpose); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	before := accessRows("farmer_id = $1", w.farmer)
	if len(before) < 2 {
		t.Fatalf("%d access-log rows about the farmer, want the allowed and the denied read", len(before))
	}
	var leaves []int64
	if err := w.tani.DB.QueryRow(ctx, `SELECT array_agg(leaf_index) FROM consent.events WHERE consent_id = ANY($1::uuid[])`,
		[]string{req.ID, open.ID}).Scan(&leaves); err != nil || len(leaves) != 2 {
		t.Fatalf("journaled consent events: %v %v, want the two requests", leaves, err)
	}

	admin := client.NewAdmin(w.tani.URL, w.tani.OperatorToken)
	if _, err := admin.EraseFarmer(ctx, w.farmer, "data protection request, ticket 88", "Dewi (operator)"); err != nil {
		t.Fatal(err)
	}
	var st client.Erasure
	polltest.Eventually(t, 60*time.Second, func() error {
		var err error
		if st, err = admin.FarmerErasure(ctx, w.farmer); err != nil || !st.Complete() {
			return fmt.Errorf("erasure %+v %v, want complete", st, err)
		}
		return nil
	})

	t.Run("OK_StatusSaysWhatWasErased", func(t *testing.T) {
		i := slices.IndexFunc(st.Owners, func(o client.ErasureOwnerStatus) bool { return o.Owner == "consent" })
		if i < 0 {
			t.Fatalf("no consent owner in %+v", st.Owners)
		}
		var got consent.Erased
		if err := json.Unmarshal(st.Owners[i].Erased, &got); err != nil {
			t.Fatal(err)
		}
		if got.Requests != 2 || got.Events < 2 || got.AccessLog != int64(len(before)) || got.Journal == nil || len(got.Journal.Redacted) < 2 {
			t.Errorf("consent erased %s, want 2 requests, ≥ 2 events, %d access-log rows pseudonymised, ≥ 2 journal entries redacted",
				st.Owners[i].Erased, len(before))
		}
	})
	t.Run("OK_RequestsAndEventsGone", func(t *testing.T) {
		var n int
		if err := w.tani.DB.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM consent.requests WHERE farmer_id = $1) +
			       (SELECT count(*) FROM consent.events WHERE consent_id = ANY($2::uuid[]))`, w.farmer, []string{req.ID, open.ID}).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d request or event rows remain (%v), want none", n, err)
		}
		for _, o := range []struct {
			org org
			id  string
		}{{bank, req.ID}, {dist, open.ID}} {
			if code, body := call(t, w.tani, "GET", o.org.api()+"/consents/"+o.id, o.org.key, nil); code != http.StatusNotFound {
				t.Errorf("GET consent %s: %d %s, want 404", o.id, code, body)
			}
		}
	})
	t.Run("OK_JournalPayloadsRedacted", func(t *testing.T) {
		var redacted int
		if err := w.tani.DB.QueryRow(ctx, `SELECT count(*) FROM ledger.entries WHERE idx = ANY($1) AND payload IS NULL AND redacted_by IS NOT NULL`, leaves).Scan(&redacted); err != nil || redacted != 2 {
			t.Errorf("%d of the requests' journal entries redacted (%v), want 2", redacted, err)
		}
	})
	t.Run("OK_AccessLogKeptPseudonymised", func(t *testing.T) {
		if rows := accessRows("farmer_id = $1", w.farmer); len(rows) != 0 {
			t.Errorf("%d access-log rows still name the farmer", len(rows))
		}
		if after := accessRows("erasure_id = $1", st.ErasureID); !slices.Equal(after, before) {
			t.Errorf("under the erasure's id: %+v, want the farmer's former rows %+v", after, before)
		}
		var got struct{ Entries []consent.AccessEntry }
		code, body := call(t, w.tani, "GET", "/admin/v1/access-log?erasure_id="+st.ErasureID, w.tani.OperatorToken, nil)
		mustJSON(t, code, body, http.StatusOK, &got)
		if len(got.Entries) != len(before) {
			t.Fatalf("operator view: %d entries, want %d", len(got.Entries), len(before))
		}
		for _, e := range got.Entries {
			if e.FarmerID != "" || e.ErasureID == nil || *e.ErasureID != st.ErasureID || e.OrganizationName == "" {
				t.Errorf("operator view entry %+v, want the organization named and the erasure instead of the farmer", e)
			}
		}
	})
	t.Run("ErrRequestToErasedFarmer", func(t *testing.T) {
		code, body := call(t, w.tani, "POST", bank.api()+"/consent-requests", bank.key,
			map[string]any{"farmer_id": w.farmer, "scopes": []string{"plots"}, "duration_days": 30, "purpose": "again"})
		if code != http.StatusBadRequest {
			t.Errorf("got %d %s, want 400 (unknown farmer)", code, body)
		}
		var n int
		w.tani.DB.QueryRow(ctx, `SELECT count(*) FROM consent.requests WHERE farmer_id = $1`, w.farmer).Scan(&n)
		if n != 0 {
			t.Errorf("%d requests stored", n)
		}
	})
	t.Run("OK_LaterReadPseudonymisedBySweep", func(t *testing.T) {
		if code := w.history(t, bank, uuid.NewString()); code != http.StatusForbidden {
			t.Fatalf("unknown record: %d, want 403", code)
		}
		// A read naming the farmer: the bank asks for the farmer's credit
		// profile (lending reads through the gate).
		if code, body := call(t, w.tani, "GET", "/bank/v1/farmers/"+w.farmer+"/profile", bank.key, nil); code != http.StatusForbidden {
			t.Fatalf("credit profile of the erased farmer: %d %s, want 403", code, body)
		}
		polltest.Eventually(t, 10*time.Second, func() error {
			if n := len(accessRows("farmer_id = $1", w.farmer)); n != 0 {
				return fmt.Errorf("%d rows name the farmer", n)
			}
			if n := len(accessRows("erasure_id = $1", st.ErasureID)); n != len(before)+1 {
				return fmt.Errorf("%d rows under the erasure, want %d", n, len(before)+1)
			}
			return nil
		})
	})
}
