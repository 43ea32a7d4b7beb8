package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

const monitoringDir = "monitoring"

// query is one PromQL expression and where it was found.
type query struct{ where, expr string }

func alertQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(raw, false, model.UTF8Validation)
	for _, err := range errs {
		t.Errorf("alerts.yaml: %v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	var out []query
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a recording rule %q; only alerts are expected here", g.Name, r.Record)
			}
			if r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s: no summary", r.Alert)
			}
			out = append(out, query{"alert " + r.Alert, r.Expr})
		}
	}
	return out
}

func dashboardQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string  `json:"title"`
		Type    string  `json:"type"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.UID == "" {
		t.Error("dashboard.json: no uid")
	}
	var out []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				out = append(out, query{"panel " + p.Title, tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return out
}

// selectors parses q and returns its vector selectors.
func selectors(t *testing.T, q query) []*parser.VectorSelector {
	t.Helper()
	expr, err := parser.ParseExpr(q.expr)
	if err != nil {
		t.Errorf("%s: %v", q.where, err)
		return nil
	}
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	if len(out) == 0 {
		t.Errorf("%s: %q selects no metric", q.where, q.expr)
	}
	return out
}

// TestMonitoring_QueriesNameExportedMetrics parses the alert rules with
// Prometheus's rule parser and every dashboard query with its PromQL
// parser, then runs `tani up` (with a read replica configured, so that
// the replica metrics exist), feeds it records until they are journaled
// and anchored, and checks that every metric the queries select is on
// its /metrics, and every route they name is a route it served.
func TestMonitoring_QueriesNameExportedMetrics(t *testing.T) {
	queries := append(alertQueries(t), dashboardQueries(t)...)
	want := map[string][]string{} // metric → where
	routes := map[string][]string{}
	for _, q := range queries {
		for _, vs := range selectors(t, q) {
			if vs.Name == "" {
				t.Errorf("%s: a selector without a metric name: %s", q.where, vs)
				continue
			}
			want[vs.Name] = append(want[vs.Name], q.where)
			for _, m := range vs.LabelMatchers {
				if m.Name == "route" && m.Type == labels.MatchEqual {
					routes[m.Value] = append(routes[m.Value], q.where)
				}
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if testing.Short() {
		t.Skip("the rest runs tani up")
	}

	// A read "replica" on the primary itself: not in recovery, so
	// tani_postgres_replica_up says 0, but every replica metric exists.
	dbURL := pgtest.URL(t, pgtest.MustDatabase(t))
	tani := apptest.MustStart(t, "-database.url="+dbURL, "-database.read-url="+dbURL,
		"-ledger.checkpoint-interval=100ms", "-anchor.interval=100ms")
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	p := clienttest.Payloads(uuid.NewString(), uuid.NewString(), time.Now())["farmer.registered"]
	raw, _, err := agent.Record("farmer.registered", time.Now().Add(-time.Hour), client.Location{Lat: -7.25, Lon: 110.4, AccuracyM: 4}, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Sync(context.Background(), []json.RawMessage{raw}); err != nil {
		t.Fatal(err)
	}

	var missing []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		names, seenRoutes := exported(t, tani.URL+"/metrics")
		missing = missing[:0]
		for name, where := range want {
			if !names[name] {
				missing = append(missing, fmt.Sprintf("%s (in %s)", name, strings.Join(slices.Compact(where), ", ")))
			}
		}
		for route, where := range routes {
			if !seenRoutes[route] {
				missing = append(missing, fmt.Sprintf("route=%q (in %s)", route, strings.Join(slices.Compact(where), ", ")))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			t.Fatalf("not on /metrics after the record was journaled and anchored:\n  %s", strings.Join(missing, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d queries name %d metrics, all exported", len(queries), len(want))
}

// exported returns the sample names on a /metrics page and the values of
// its route labels.
func exported(t *testing.T, url string) (names, routes map[string]bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	names, routes = map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		names[name] = true
		if _, rest, ok := strings.Cut(line, `route="`); ok {
			routes[rest[:strings.Index(rest, `"`)]] = true
		}
	}
	return names, routes
}
