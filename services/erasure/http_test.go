package erasure_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/services/erasure"
)

// TestErasureAPI runs the erasure module alone: requests are stored,
// journaled and published, bad ones are refused with field errors and
// change nothing, and with no owner running nothing is reported done.
func TestErasureAPI(t *testing.T) {
	ns := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, ns)
	tani := apptest.MustStart(t, "-target=erasure", "-nats.url="+ns.ClientURL())
	ctx := context.Background()
	requests := func(t *testing.T) int {
		t.Helper()
		var n int
		if err := tani.DB.QueryRow(ctx, `SELECT count(*) FROM erasure.requests`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	farmer := uuid.NewString()
	for _, c := range []struct {
		name, path, body, field string
		status                  int
	}{
		{"ErrFarmerNotUUID", "/admin/v1/farmers/siti/erasure", `{"reason":"ticket 1","requested_by":"Dewi"}`, "id", http.StatusBadRequest},
		{"ErrNoReason", "/admin/v1/farmers/" + farmer + "/erasure", `{"requested_by":"Dewi"}`, "reason", http.StatusBadRequest},
		{"ErrBlankReason", "/admin/v1/farmers/" + farmer + "/erasure", `{"reason":"   ","requested_by":"Dewi"}`, "reason", http.StatusBadRequest},
		{"ErrNoRequester", "/admin/v1/farmers/" + farmer + "/erasure", `{"reason":"ticket 1"}`, "requested_by", http.StatusBadRequest},
		{"ErrUnknownField", "/admin/v1/farmers/" + farmer + "/erasure", `{"reason":"ticket 1","requested_by":"Dewi","name":"Siti"}`, "", http.StatusBadRequest},
		{"ErrNotJSON", "/admin/v1/farmers/" + farmer + "/erasure", `reason=ticket`, "", http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := adminDo(t, tani, http.MethodPost, c.path, c.body)
			var e httpserver.ErrorBody
			json.Unmarshal(body, &e)
			if code != c.status {
				t.Fatalf("got %d %s, want %d", code, body, c.status)
			}
			if c.field != "" && (len(e.Error.Fields) == 0 || e.Error.Fields[0].Field != c.field) {
				t.Errorf("got fields %+v, want one naming %s", e.Error.Fields, c.field)
			}
			if n := requests(t); n != 0 {
				t.Errorf("%d requests stored after a refused one", n)
			}
		})
	}
	t.Run("ErrNoOperatorToken", func(t *testing.T) {
		resp, err := http.Post(tani.URL+"/admin/v1/farmers/"+farmer+"/erasure", "application/json", strings.NewReader(`{"reason":"ticket 1","requested_by":"Dewi"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || requests(t) != 0 {
			t.Errorf("got %d with %d requests stored, want 401 and none", resp.StatusCode, requests(t))
		}
	})
	t.Run("ErrNeverRequested", func(t *testing.T) {
		if code, body := adminDo(t, tani, http.MethodGet, "/admin/v1/farmers/"+farmer+"/erasure", ""); code != http.StatusNotFound {
			t.Errorf("got %d %s, want 404", code, body)
		}
	})

	admin := client.NewAdmin(tani.URL, tani.OperatorToken)
	var first client.Erasure
	t.Run("OK_RequestedJournaledPublished", func(t *testing.T) {
		code, body := adminDo(t, tani, http.MethodPost, "/admin/v1/farmers/"+strings.ToUpper(farmer)+"/erasure", `{"reason":" ticket 1 ","requested_by":"Dewi"}`)
		if code != http.StatusAccepted {
			t.Fatalf("got %d %s, want 202", code, body)
		}
		if err := json.Unmarshal(body, &first); err != nil {
			t.Fatal(err)
		}
		if first.FarmerID != farmer || first.Reason != "ticket 1" || first.LeafIndex == nil || !first.Published || first.State != "requested" {
			t.Errorf("got %+v, want the request journaled and published, no owner started", first)
		}
		for _, o := range first.Owners {
			if o.State != "pending" {
				t.Errorf("owner %s is %s with no owner module running", o.Owner, o.State)
			}
		}
		if n := natstest.Count(t, js, natsbus.StreamErasure, natsbus.SubjectErasureRequested); n != 1 {
			t.Errorf("%d requests on the stream, want 1", n)
		}
		var kind string
		var payload []byte
		if err := tani.DB.QueryRow(ctx, `SELECT kind, payload FROM ledger.entries WHERE idx = $1`, *first.LeafIndex).Scan(&kind, &payload); err != nil {
			t.Fatal(err)
		}
		if kind != "farmer.erasure.requested" || !strings.Contains(string(payload), farmer) {
			t.Errorf("journaled %s %s, want the request naming the farmer", kind, payload)
		}
	})
	t.Run("OK_AskingAgainIsTheSameErasure", func(t *testing.T) {
		again, err := admin.EraseFarmer(ctx, farmer, "another ticket", "Budi")
		if err != nil {
			t.Fatal(err)
		}
		if again.ErasureID != first.ErasureID || again.Reason != "ticket 1" {
			t.Errorf("got %+v, want erasure %s as first asked", again, first.ErasureID)
		}
		if n := natstest.Count(t, js, natsbus.StreamErasure, natsbus.SubjectErasureRequested); n != 1 || requests(t) != 1 {
			t.Errorf("%d published, %d stored; want one erasure", n, requests(t))
		}
	})
	t.Run("OK_Status", func(t *testing.T) {
		st, err := admin.FarmerErasure(ctx, farmer)
		if err != nil || st.ErasureID != first.ErasureID || len(st.Owners) != len(erasure.Owners) {
			t.Errorf("got %+v %v, want erasure %s with its %d owners", st, err, first.ErasureID, len(erasure.Owners))
		}
	})
}
