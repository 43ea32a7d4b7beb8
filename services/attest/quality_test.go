package attest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/services/attest"
)

// TestAgentQuality checks GET /agents/quality against a fixture whose
// figures are known: one agent whose farm is consistent, one who
// registered a farmer under an existing national ID and mapped a plot over
// another farmer's (both flagged; one approved, one rejected), and whose
// third record is pending because a rule errored.
func TestAgentQuality(t *testing.T) {
	a := mustAdmin(t)
	careful, sloppy := a.mustAgent(t, "Central Java"), a.mustAgent(t, "Central Java")
	ctx := context.Background()

	nid := nationalID()
	mustProcess(t, a.env, farm(t, careful, 110.40, -7.25, 0.001, nid, phone())...)
	copied := farm(t, sloppy, 110.3995, -7.25, 0.001, nid, phone())[:2]
	ds := mustProcess(t, a.env, copied...)
	if verdict(ds[0], "farmer.duplicate") != attest.Flag || verdict(ds[1], "plot.overlap") != attest.Flag {
		t.Fatalf("fixture: got %s (%s) and %s (%s), want flagged by farmer.duplicate and plot.overlap", ds[0].Status, ds[0].Reason, ds[1].Status, ds[1].Reason)
	}
	for rec, action := range map[string]string{copied[0].Env.ID: "approve", copied[1].Env.ID: "reject"} {
		if code, body := a.do(t, http.MethodPost, "/admin/v1/reviews/"+a.reviewOf(t, rec)+"/"+action, `{"reason":"checked in the field"}`); code != http.StatusOK {
			t.Fatalf("%s: got %d %s", action, code, body)
		}
	}
	broken := append(attest.Rules(), attest.Rule{Name: "test.unreachable", Version: 1, Check: func(*attest.Case) (attest.Verdict, string, error) {
		return "", "", fmt.Errorf("evidence store unreachable")
	}})
	erroring := mustAttest(t, attest.Config{}, attest.Deps{Pool: a.pool, Journal: a.journal, PII: mustPII(t), Logger: slog.New(slog.DiscardHandler), Rules: broken})
	held := farm(t, sloppy, 110.70, -7.25, 0.001, nationalID(), phone())[0]
	if d, err := erroring.Process(ctx, []attest.Input{held}); err != nil || d[0].Status != attest.StatusPending {
		t.Fatalf("fixture: got %+v, %v, want the record pending", d, err)
	}

	want := []attest.AgentQuality{
		{AgentID: careful.id, Records: 5, Verified: 5, ApprovalRate: 1, FlagsByRule: map[string]int{}},
		// Reviews count: the approved duplicate is verified, the rejected
		// overlap rejected; the pending record is left out of the rate.
		// Flags are counted as the rules first raised them.
		{AgentID: sloppy.id, Records: 3, Verified: 1, Rejected: 1, Pending: 1, ApprovalRate: 0.5,
			FlagsByRule: map[string]int{"farmer.duplicate": 1, "plot.overlap": 1}, Duplicates: 1, Overlaps: 1},
	}
	sort.Slice(want, func(i, j int) bool { return want[i].AgentID < want[j].AgentID })
	quality := func(t *testing.T, query string) []attest.AgentQuality {
		t.Helper()
		code, body := a.do(t, http.MethodGet, "/admin/v1/agents/quality"+query, "")
		if code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", code, body)
		}
		var got struct{ Agents []attest.AgentQuality }
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		return got.Agents
	}

	t.Run("OK_AllAgents", func(t *testing.T) {
		if diff := cmp.Diff(want, quality(t, "")); diff != "" {
			t.Errorf("quality (-want +got):\n%s", diff)
		}
	})
	t.Run("OK_OneAgent", func(t *testing.T) {
		var only []attest.AgentQuality
		for _, q := range want {
			if q.AgentID == sloppy.id {
				only = append(only, q)
			}
		}
		if diff := cmp.Diff(only, quality(t, "?agent_id="+sloppy.id)); diff != "" {
			t.Errorf("quality of one agent (-want +got):\n%s", diff)
		}
	})
	t.Run("OK_UnknownAgentHasNoFigures", func(t *testing.T) {
		if got := quality(t, "?agent_id="+a.mustAgent(t, "Central Java").id); len(got) != 0 {
			t.Errorf("got %+v for an agent without records, want none", got)
		}
	})
}
