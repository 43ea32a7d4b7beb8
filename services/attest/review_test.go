package attest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/services/attest"
)

// admin is a service with its admin API served on a real echo instance
// with Tani's common error handler, announcing on an in-process JetStream.
type admin struct {
	*env
	js  jetstream.JetStream
	srv *httptest.Server
	// token is the bearer token of reviewer "bu.rina", signed in as
	// operators do; reviewerID is her user id.
	token, reviewerID string
}

// bootstrapToken guards the test's /admin/v1 as the operator token does.
const bootstrapToken = "test-bootstrap-operator-token-0123456789"

func mustAdmin(t *testing.T) *admin {
	t.Helper()
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	e := mustEnvJS(t, nil, js)
	dir, err := identity.New(identity.Config{DefaultKeyTTL: time.Hour}, identity.Deps{Pool: e.pool, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s := httpserver.New(httpserver.Config{BodyLimit: "1M"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	e.svc.Routes(httpserver.Router{Admin: s.Echo.Group("/admin/v1", identity.RequireOperator(bootstrapToken, func() *identity.Directory { return dir }))})
	s.Echo.POST("/admin/v1/auth/login", dir.OperatorSignIn)
	srv := httptest.NewServer(s.Echo)
	t.Cleanup(srv.Close)
	a := &admin{env: e, js: js, srv: srv}
	ctx := context.Background()
	org := uuid.NewString()
	if _, err := e.pool.Exec(ctx, `INSERT INTO identity.organizations (id, name, kind) VALUES ($1, 'Tani operations', 'operator')`, org); err != nil {
		t.Fatal(err)
	}
	u, err := dir.CreateUser(ctx, identity.NewUser{OrganizationID: org, Username: "bu.rina", Name: "Bu Rina", Role: identity.RoleReviewer, Password: "correct horse battery", CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	a.reviewerID = u.ID
	a.token = bootstrapToken
	code, body := a.do(t, http.MethodPost, "/admin/v1/auth/login", `{"username":"bu.rina","password":"correct horse battery"}`)
	var tok identity.OperatorToken
	if err := json.Unmarshal(body, &tok); code != http.StatusOK || err != nil {
		t.Fatalf("reviewer login: %d %s", code, body)
	}
	a.token = tok.Token
	return a
}

// actor is how the audit names bu.rina.
func (a *admin) actor() string { return "reviewer:bu.rina (user:" + a.reviewerID + ")" }

// do sends a request as the signed-in reviewer and returns the status and
// the body.
func (a *admin) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	return a.doAs(t, a.token, method, path, body)
}

// doAs sends a request with the given bearer token.
func (a *admin) doAs(t *testing.T, token, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// mustReview decodes a review answer.
func mustReview(t *testing.T, body []byte) attest.Review {
	t.Helper()
	var v attest.Review
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode review %s: %v", body, err)
	}
	return v
}

// errorFields returns the fields an error answer names.
func errorFields(t *testing.T, body []byte) []string {
	t.Helper()
	var e httpserver.ErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode error %s: %v", body, err)
	}
	var out []string
	for _, f := range e.Error.Fields {
		out = append(out, f.Field)
	}
	return out
}

// reviewOf returns the id of the review opened for a flagged record.
func (a *admin) reviewOf(t *testing.T, recordID string) string {
	t.Helper()
	var id string
	if err := a.pool.QueryRow(context.Background(), `SELECT id::text FROM attest.reviews WHERE record_id = $1`, recordID).Scan(&id); err != nil {
		t.Fatalf("review of %s: %v", recordID, err)
	}
	return id
}

// record reads what attest stored about a record.
func (a *admin) record(t *testing.T, id string) (status string, decision, published int, journaled bool) {
	t.Helper()
	if err := a.pool.QueryRow(context.Background(), `SELECT status, decision, published, leaf_index IS NOT NULL FROM attest.records WHERE record_id = $1`, id).
		Scan(&status, &decision, &published, &journaled); err != nil {
		t.Fatalf("record %s: %v", id, err)
	}
	return status, decision, published, journaled
}

// mustOverlapping maps, for a new farmer of ag, a plot overlapping half of
// a plot of another farmer mapped at lon, lat first, and returns the
// flagged plot.mapped record.
func (a *admin) mustOverlapping(t *testing.T, ag agent, lon, lat float64) attest.Input {
	t.Helper()
	mustProcess(t, a.env, farm(t, ag, lon, lat, 0.001, nationalID(), phone())...)
	over := farm(t, ag, lon-0.0005, lat, 0.001, nationalID(), phone())[:2]
	ds := mustProcess(t, a.env, over...)
	if ds[1].Status != attest.StatusFlagged || verdict(ds[1], "plot.overlap") != attest.Flag {
		t.Fatalf("fixture: got %s (%s), want flagged by plot.overlap", ds[1].Status, ds[1].Reason)
	}
	return over[1]
}

// remap is ag mapping the plot of rec again with a square of side d at
// lon, lat, as a visiting agent does.
func remap(t *testing.T, ag agent, rec attest.Input, lon, lat, d float64) attest.Input {
	t.Helper()
	p := rec.Payload.(*record.PlotMapped)
	areaHa := d * 110.6 * d * 109.7 * 100
	return ag.input(t, "plot.mapped", lon+d/2, lat-d/2, map[string]any{"farmer_id": p.FarmerID, "plot_id": p.PlotID, "boundary": square(lon, lat, d),
		"declared_area": map[string]any{"value": areaHa, "unit": "ha"}, "tenure": "owned", "gps_accuracy_m": 3.5, "mock_location": false})
}

func TestReviews_Reject(t *testing.T) {
	a := mustAdmin(t)
	ag := a.mustAgent(t, "Central Java")
	ctx := context.Background()
	flagged := a.mustOverlapping(t, ag, 110.40, -7.25)
	review := a.reviewOf(t, flagged.Env.ID)
	path := "/admin/v1/reviews/" + review + "/reject"

	t.Run("ErrInvalid_ReasonRequired", func(t *testing.T) {
		for _, body := range []string{`{"reviewer":"Bu Rina"}`, `{"reviewer":"Bu Rina","reason":"   "}`} {
			code, resp := a.do(t, http.MethodPost, path, body)
			if code != http.StatusBadRequest || !slices.Contains(errorFields(t, resp), "reason") {
				t.Errorf("%s: got %d %s, want 400 naming reason", body, code, resp)
			}
		}
		if status, decision, _, _ := a.record(t, flagged.Env.ID); status != attest.StatusFlagged || decision != 1 {
			t.Errorf("after refused rejections: got %s decision %d, want still flagged decision 1", status, decision)
		}
	})
	t.Run("ErrForbidden_BootstrapTokenNamesNobody", func(t *testing.T) {
		for _, p := range []string{path, "/admin/v1/reviews/" + review + "/approve", "/admin/v1/reviews/" + review + "/visits"} {
			code, resp := a.doAs(t, bootstrapToken, http.MethodPost, p, `{"reviewer":"Bu Rina"}`)
			if code != http.StatusForbidden || !strings.Contains(string(resp), "named operator or reviewer") {
				t.Errorf("%s: got %d %s, want 403 asking for a named user", p, code, resp)
			}
		}
		if status, decision, _, _ := a.record(t, flagged.Env.ID); status != attest.StatusFlagged || decision != 1 {
			t.Errorf("got %s decision %d, want still flagged decision 1", status, decision)
		}
		// Reading the queue with the bootstrap token still works.
		if code, resp := a.doAs(t, bootstrapToken, http.MethodGet, "/admin/v1/reviews/"+review, ""); code != http.StatusOK {
			t.Errorf("read with the bootstrap token: got %d %s", code, resp)
		}
	})
	t.Run("OK_Rejected", func(t *testing.T) {
		code, resp := a.do(t, http.MethodPost, path, `{"reason":"the neighbour's field, walked by mistake"}`)
		if code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", code, resp)
		}
		v := mustReview(t, resp)
		last := v.Events[len(v.Events)-1]
		if v.State != attest.ReviewRejected || last.Action != "reject" || last.Actor != a.actor() || !strings.Contains(last.Reason, "walked by mistake") {
			t.Errorf("got state %s, last event %+v, want rejected by %s with the reason", v.State, last, a.actor())
		}
		if last.LeafIndex == nil {
			t.Errorf("the rejection was not journaled")
		}
		// The journal names the reviewer's session, and its payload the
		// reviewer: a real identity, not a name from the request body.
		revs, err := a.journal.History(ctx, review, ledger.AsOf{})
		if err != nil || len(revs) != 1 {
			t.Fatalf("journal history of the review: %v, %d revisions", err, len(revs))
		}
		if want := "session user:" + a.reviewerID; revs[0].SignatureRef != want || !strings.Contains(string(revs[0].Payload), a.actor()) {
			t.Errorf("journaled %q %s, want signature ref %q and actor %q", revs[0].SignatureRef, revs[0].Payload, want, a.actor())
		}
		status, decision, published, journaled := a.record(t, flagged.Env.ID)
		if status != attest.StatusRejected || decision != 2 || published != 2 || journaled {
			t.Errorf("got record %s decision %d published %d journaled %v, want rejected decision 2, announced, not journaled", status, decision, published, journaled)
		}
		var outcome, reviewID, scope string
		var n int
		if err := a.pool.QueryRow(ctx, `SELECT count(*) OVER (), data->>'outcome', data->>'review_id', scope FROM events.outbox
			WHERE type = 'review.decided' AND data->>'record_id' = $1`, flagged.Env.ID).Scan(&n, &outcome, &reviewID, &scope); err != nil || n != 1 {
			t.Fatalf("%d review.decided events (%v), want 1", n, err)
		}
		if outcome != "rejected" || reviewID != review || scope != "plots" {
			t.Errorf("review.decided says %s of review %s scope %s, want rejected of %s, plots", outcome, reviewID, scope, review)
		}
		var plots int
		if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM attest.plots WHERE record_id = $1`, flagged.Env.ID).Scan(&plots); err != nil {
			t.Fatal(err)
		}
		if plots != 0 {
			t.Errorf("the rejected plot is still evidence for other records")
		}
	})
	t.Run("ErrConflict_AlreadyDecided", func(t *testing.T) {
		for _, action := range []string{"reject", "approve"} {
			code, resp := a.do(t, http.MethodPost, "/admin/v1/reviews/"+review+"/"+action, `{"reviewer":"Pak Budi","reason":"second opinion"}`)
			if code != http.StatusConflict {
				t.Errorf("%s: got %d %s, want 409", action, code, resp)
			}
		}
		if status, decision, _, _ := a.record(t, flagged.Env.ID); status != attest.StatusRejected || decision != 2 {
			t.Errorf("got %s decision %d, want still rejected decision 2", status, decision)
		}
	})
}

func TestReviews_SecondAgentVisit(t *testing.T) {
	a := mustAdmin(t)
	first, second, elsewhere := a.mustAgent(t, "Central Java"), a.mustAgent(t, "Central Java"), a.mustAgent(t, "West Java")
	ctx := context.Background()
	visit := func(t *testing.T, review, body string) (int, []byte) {
		t.Helper()
		return a.do(t, http.MethodPost, "/admin/v1/reviews/"+review+"/visits", body)
	}

	t.Run("ErrInvalid_VisitorNotAnotherAgentOfTheRegion", func(t *testing.T) {
		flagged := a.mustOverlapping(t, first, 110.60, -7.25)
		review := a.reviewOf(t, flagged.Env.ID)
		for name, visitor := range map[string]string{"other region": elsewhere.id, "capturing agent": first.id} {
			code, resp := visit(t, review, `{"reviewer":"Bu Rina","agent_id":"`+visitor+`"}`)
			if code != http.StatusBadRequest || !slices.Contains(errorFields(t, resp), "agent_id") {
				t.Errorf("%s: got %d %s, want 400 naming agent_id", name, code, resp)
			}
		}
	})
	t.Run("OK_MatchingMappingCorroborates", func(t *testing.T) {
		flagged := a.mustOverlapping(t, first, 110.40, -7.25)
		review := a.reviewOf(t, flagged.Env.ID)
		code, resp := visit(t, review, `{"reviewer":"Bu Rina","agent_id":"`+second.id+`","note":"walk the boundary with the farmer"}`)
		if code != http.StatusCreated {
			t.Fatalf("request visit: got %d %s, want 201", code, resp)
		}
		v := mustReview(t, resp)
		if len(v.Visits) != 1 || v.Visits[0].AgentID != second.id || v.Visits[0].State != "open" || v.State != attest.ReviewHasIssues {
			t.Fatalf("got review %s with visits %+v, want has_issues with one open visit by %s", v.State, v.Visits, second.id)
		}
		var task string
		if err := a.pool.QueryRow(ctx, `SELECT id::text FROM attest.visit_tasks WHERE agent_id = $1`, second.id).Scan(&task); err != nil || task != v.Visits[0].ID {
			t.Fatalf("visit task for the second agent: got %q (%v), want %s", task, err, v.Visits[0].ID)
		}

		again := remap(t, second, flagged, 110.3995, -7.25, 0.001) // the same boundary, walked again
		mustProcess(t, a.env, again)

		code, resp = a.do(t, http.MethodGet, "/admin/v1/reviews/"+review, "")
		if code != http.StatusOK {
			t.Fatalf("get review: got %d %s", code, resp)
		}
		v = mustReview(t, resp)
		last := v.Events[len(v.Events)-1]
		if v.State != attest.ReviewApproved || last.Action != "visit_corroborated" || last.Actor != "agent:"+second.id || last.LeafIndex == nil {
			t.Errorf("got state %s, last event %+v, want approved by the visit of agent:%s and journaled", v.State, last, second.id)
		}
		if len(v.Visits) != 1 || v.Visits[0].State != "corroborated" || v.Visits[0].EvidenceRecord == nil || *v.Visits[0].EvidenceRecord != again.Env.ID {
			t.Errorf("got visits %+v, want one corroborated by record %s", v.Visits, again.Env.ID)
		}
		if status, decision, published, journaled := a.record(t, flagged.Env.ID); status != attest.StatusVerified || decision != 2 || published != 2 || !journaled {
			t.Errorf("got record %s decision %d published %d journaled %v, want verified decision 2, announced and journaled", status, decision, published, journaled)
		}
		prov, err := a.svc.Provenance(ctx, flagged.Env.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range prov {
			if p.Attribute == "boundary" && (p.Method != "second_agent_visit" || p.Verifier != "agent:"+second.id) {
				t.Errorf("got boundary provenance %s by %s, want second_agent_visit by agent:%s", p.Method, p.Verifier, second.id)
			}
		}
		if !slices.ContainsFunc(prov, func(p attest.Provenance) bool { return p.Attribute == "boundary" }) {
			t.Errorf("got provenance %+v, want the boundary's", prov)
		}
	})
	t.Run("OK_DifferentMappingContradictsAndLeavesReviewOpen", func(t *testing.T) {
		flagged := a.mustOverlapping(t, first, 110.50, -7.25)
		review := a.reviewOf(t, flagged.Env.ID)
		if code, resp := visit(t, review, `{"reviewer":"Bu Rina"}`); code != http.StatusCreated {
			t.Fatalf("request visit: got %d %s, want 201", code, resp)
		}
		mustProcess(t, a.env, remap(t, second, flagged, 110.4995, -7.25, 0.0004)) // a sixth of the boundary under review

		_, resp := a.do(t, http.MethodGet, "/admin/v1/reviews/"+review, "")
		v := mustReview(t, resp)
		last := v.Events[len(v.Events)-1]
		if v.State != attest.ReviewHasIssues || last.Action != "visit_contradicted" || len(v.Visits) != 1 || v.Visits[0].State != "contradicted" {
			t.Errorf("got state %s, last event %+v, visits %+v, want has_issues with the visit contradicted", v.State, last, v.Visits)
		}
		if status, decision, _, _ := a.record(t, flagged.Env.ID); status != attest.StatusFlagged || decision != 1 {
			t.Errorf("got record %s decision %d, want still flagged decision 1", status, decision)
		}
	})
}

func TestReviews_BadInput(t *testing.T) {
	a := mustAdmin(t)
	unknown := uuid.NewString()
	decision := `{"reviewer":"Bu Rina","reason":"checked"}`
	tests := []struct {
		name, method, path, body string
		want                     int
		field                    string // the field the 400 names
	}{
		{"ErrInvalid_ListUnknownState", http.MethodGet, "/admin/v1/reviews?state=done", "", http.StatusBadRequest, "state"},
		{"ErrInvalid_ListUnknownRule", http.MethodGet, "/admin/v1/reviews?rule=plot.overlapp", "", http.StatusBadRequest, "rule"},
		{"ErrInvalid_ListUnknownType", http.MethodGet, "/admin/v1/reviews?type=plot.maped", "", http.StatusBadRequest, "type"},
		{"ErrInvalid_ListBadAgent", http.MethodGet, "/admin/v1/reviews?agent_id=42", "", http.StatusBadRequest, "agent_id"},
		{"ErrInvalid_ListLimitZero", http.MethodGet, "/admin/v1/reviews?limit=0", "", http.StatusBadRequest, "limit"},
		{"ErrInvalid_ListLimitNotANumber", http.MethodGet, "/admin/v1/reviews?limit=ten", "", http.StatusBadRequest, "limit"},
		{"OK_ListKnownFilters", http.MethodGet, "/admin/v1/reviews?state=has_issues&rule=plot.overlap&type=plot.mapped&agent_id=" + unknown + "&limit=5", "", http.StatusOK, ""},
		{"ErrInvalid_GetBadUUID", http.MethodGet, "/admin/v1/reviews/not-a-uuid", "", http.StatusBadRequest, "id"},
		{"ErrNotFound_Get", http.MethodGet, "/admin/v1/reviews/" + unknown, "", http.StatusNotFound, ""},
		{"ErrInvalid_ApproveBadUUID", http.MethodPost, "/admin/v1/reviews/not-a-uuid/approve", decision, http.StatusBadRequest, "id"},
		{"ErrNotFound_Approve", http.MethodPost, "/admin/v1/reviews/" + unknown + "/approve", decision, http.StatusNotFound, ""},
		{"ErrNotFound_ApproveWithoutReviewerField", http.MethodPost, "/admin/v1/reviews/" + unknown + "/approve", `{"reason":"checked"}`, http.StatusNotFound, ""},
		{"ErrInvalid_ApproveMalformed", http.MethodPost, "/admin/v1/reviews/" + unknown + "/approve", `{"reviewer":`, http.StatusBadRequest, ""},
		{"ErrInvalid_RejectBadUUID", http.MethodPost, "/admin/v1/reviews/not-a-uuid/reject", decision, http.StatusBadRequest, "id"},
		{"ErrNotFound_Reject", http.MethodPost, "/admin/v1/reviews/" + unknown + "/reject", decision, http.StatusNotFound, ""},
		{"ErrInvalid_VisitBadUUID", http.MethodPost, "/admin/v1/reviews/not-a-uuid/visits", `{"reviewer":"Bu Rina"}`, http.StatusBadRequest, "id"},
		{"ErrNotFound_Visit", http.MethodPost, "/admin/v1/reviews/" + unknown + "/visits", `{"reviewer":"Bu Rina"}`, http.StatusNotFound, ""},
		{"ErrInvalid_VisitBadAgent", http.MethodPost, "/admin/v1/reviews/" + unknown + "/visits", `{"reviewer":"Bu Rina","agent_id":"42"}`, http.StatusBadRequest, "agent_id"},
		{"ErrInvalid_AttestationBadUUID", http.MethodGet, "/admin/v1/attestations/not-a-uuid", "", http.StatusBadRequest, "id"},
		{"ErrNotFound_Attestation", http.MethodGet, "/admin/v1/attestations/" + unknown, "", http.StatusNotFound, ""},
		{"ErrInvalid_QualityBadAgent", http.MethodGet, "/admin/v1/agents/quality?agent_id=42", "", http.StatusBadRequest, "agent_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := a.do(t, tt.method, tt.path, tt.body)
			if code != tt.want {
				t.Fatalf("got %d %s, want %d", code, body, tt.want)
			}
			if tt.field != "" && !slices.Contains(errorFields(t, body), tt.field) {
				t.Errorf("got %s, want it to name field %q", body, tt.field)
			}
		})
	}

	t.Run("ErrInvalid_VisitToAPlanting", func(t *testing.T) {
		ag := a.mustAgent(t, "Central Java")
		ins := farm(t, ag, 110.40, -7.25, 0.001, nationalID(), phone())
		mustProcess(t, a.env, ins...)
		p := ins[2].Payload.(*record.CropPlanted)
		far := ag.input(t, "crop.planted", 106.8, -6.2, map[string]any{"farmer_id": p.FarmerID, "plot_id": p.PlotID, "crop": "maize",
			"planted_on": day(-100), "expected_harvest_on": day(-3)}) // captured in Jakarta, not on the plot
		if d := mustProcess(t, a.env, far)[0]; d.Status != attest.StatusFlagged {
			t.Fatalf("fixture: got %s (%s), want flagged", d.Status, d.Reason)
		}
		code, body := a.do(t, http.MethodPost, "/admin/v1/reviews/"+a.reviewOf(t, far.Env.ID)+"/visits", `{"reviewer":"Bu Rina"}`)
		if code != http.StatusBadRequest || !slices.Contains(errorFields(t, body), "id") {
			t.Errorf("got %d %s, want 400: visits corroborate plot mappings only", code, body)
		}
	})
}
