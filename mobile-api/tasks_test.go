package mobileapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestSecondAgentVisit: a plot whose declared area is far from the GPS
// measurement is flagged; the supervisor sends a second agent of the
// region, who sees the task, walks the plot (allowed although not assigned
// to the farmer) and so corroborates it: the first record turns verified.
func TestSecondAgentVisit(t *testing.T) {
	tani := apptest.MustStart(t)
	first := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	second := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()

	farmer, plot := uuid.NewString(), uuid.NewString()
	reg, _ := signed(t, first, "farmer.registered", farmer, plot)
	claimed := clienttest.Payloads(farmer, plot, time.Now())["plot.mapped"]
	claimed["declared_area"] = map[string]any{"value": 9, "unit": "ha"} // the walk measures ~1.2 ha
	mapped, mappedID, err := first.Record("plot.mapped", time.Now(), loc, claimed)
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, first, reg, mapped)
	if st := waitStatus(t, first, mappedID, "decided"); st.Status != "flagged" {
		t.Fatalf("over-declared plot is %s, want flagged", st.Status)
	}

	var reviews struct {
		Reviews []struct {
			ID       string `json:"id"`
			RecordID string `json:"record_id"`
		} `json:"reviews"`
	}
	adminGetJSON(t, tani, "/admin/v1/reviews?state=has_issues&limit=100", &reviews)
	review := ""
	for _, r := range reviews.Reviews {
		if r.RecordID == mappedID {
			review = r.ID
		}
	}
	if review == "" {
		t.Fatalf("no open review for %s in %+v", mappedID, reviews)
	}
	reviewer, _ := tani.MustOperatorUser(t, "reviewer")
	if code, body := post(t, tani.URL+"/admin/v1/reviews/"+review+"/visits", reviewer,
		map[string]string{"agent_id": second.ID, "note": "walk the plot again"}); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("request visit = %d %s", code, body)
	}

	var tasks struct {
		Tasks []mobileapi.Task `json:"tasks"`
	}
	agentGetJSON(t, tani, second, "/mobile/v1/tasks", &tasks)
	if len(tasks.Tasks) != 1 || tasks.Tasks[0].RecordID != mappedID || tasks.Tasks[0].PlotID == nil || *tasks.Tasks[0].PlotID != plot {
		t.Fatalf("second agent's tasks = %+v, want the visit of plot %s", tasks.Tasks, plot)
	}
	agentGetJSON(t, tani, first, "/mobile/v1/tasks", &tasks)
	if len(tasks.Tasks) != 0 {
		t.Errorf("first agent sees tasks %+v, want none", tasks.Tasks)
	}

	walk := clienttest.Payloads(farmer, plot, time.Now())["plot.mapped"] // the same boundary, walked again
	raw, _, err := second.Record("plot.mapped", time.Now().Add(time.Minute), loc, walk)
	if err != nil {
		t.Fatal(err)
	}
	res, err := second.Sync(ctx, []json.RawMessage{raw})
	if err != nil || res[0].Status != mobileapi.Accepted {
		t.Fatalf("visiting agent's walk: %v %+v, want accepted", err, res)
	}
	if st := waitStatus(t, first, mappedID, "verified"); st.Status != "verified" {
		t.Errorf("after the visit the plot is %s, want verified", st.Status)
	}
}

func adminGetJSON(t *testing.T, tani *apptest.Running, path string, out any) {
	t.Helper()
	getJSON(t, tani.URL+path, tani.OperatorToken, out)
}

func agentGetJSON(t *testing.T, tani *apptest.Running, a *clienttest.Agent, path string, out any) {
	t.Helper()
	getJSON(t, tani.URL+path, accessToken(t, tani, a), out)
}

func getJSON(t *testing.T, url, token string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}
