package attest

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are attest's Prometheus series. Agent labels are bounded by the
// number of enrolled agents.
type metrics struct {
	decisions *prometheus.CounterVec // type, status
	results   *prometheus.CounterVec // rule, verdict (verdict "error" = rule errors)
	agent     *prometheus.CounterVec // agent, status
	agentFlag *prometheus.CounterVec // agent, rule
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tani_attest_decisions_total", Help: "Records decided by the rules, by type and status (pending: a rule errored).",
		}, []string{"type", "status"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tani_attest_rule_results_total", Help: "Rule results by rule and verdict; verdict=error counts rules that could not be evaluated.",
		}, []string{"rule", "verdict"}),
		agent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tani_attest_agent_decisions_total", Help: "Rule decisions on each agent's records, by status.",
		}, []string{"agent", "status"}),
		agentFlag: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tani_attest_agent_flags_total", Help: "Flags and rejections raised on each agent's records, by rule.",
		}, []string{"agent", "rule"}),
	}
	if reg == nil {
		return m
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tani_attest_pending_records", Help: "Records held pending because a rule errored (-1 if the count failed).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var n int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM attest.records WHERE status = 'pending'`).Scan(&n); err != nil {
			return -1
		}
		return float64(n)
	})
	reg.MustRegister(m.decisions, m.results, m.agent, m.agentFlag, pending)
	return m
}

func (m *metrics) observe(ds map[string]*Decision) {
	for _, d := range ds {
		m.decisions.WithLabelValues(string(d.Type), d.Status).Inc()
		m.agent.WithLabelValues(d.AgentID, d.Status).Inc()
		for _, r := range d.Results {
			m.results.WithLabelValues(r.Rule, string(r.Verdict)).Inc()
			if r.Verdict == Flag || r.Verdict == Reject {
				m.agentFlag.WithLabelValues(d.AgentID, r.Rule).Inc()
			}
		}
	}
}

// AgentQuality is how an agent's records fare.
type AgentQuality struct {
	AgentID      string         `json:"agent_id"`
	Records      int            `json:"records"`
	Verified     int            `json:"verified"`
	Flagged      int            `json:"flagged"`
	Rejected     int            `json:"rejected"`
	Pending      int            `json:"pending"`
	ApprovalRate float64        `json:"approval_rate"` // verified / decided (pending excluded), reviews included
	FlagsByRule  map[string]int `json:"flags_by_rule"` // flag or reject results by rule, as first decided
	Duplicates   int            `json:"duplicate_hits"`
	Overlaps     int            `json:"overlap_hits"`
}

// agentQuality: GET /agents/quality[?agent_id=]
func (s *Service) agentQuality(c echo.Context) error {
	agent := c.QueryParam("agent_id")
	if agent != "" {
		if _, err := uuidParam(&paramOnly{c, agent}, "agent_id"); err != nil {
			return err
		}
	}
	ctx := c.Request().Context()
	rows, err := s.pool.Query(ctx, `
		SELECT agent_id::text, count(*),
		       count(*) FILTER (WHERE status = 'verified'), count(*) FILTER (WHERE status = 'flagged'),
		       count(*) FILTER (WHERE status = 'rejected'), count(*) FILTER (WHERE status = 'pending')
		FROM attest.records WHERE $1 = '' OR agent_id = nullif($1, '')::uuid
		GROUP BY agent_id ORDER BY agent_id`, agent)
	if err != nil {
		return fmt.Errorf("agent quality: %w", err)
	}
	byAgent := map[string]*AgentQuality{}
	var out []*AgentQuality
	if err := forEach(rows, func(r pgx.Rows) error {
		q := &AgentQuality{FlagsByRule: map[string]int{}}
		if err := r.Scan(&q.AgentID, &q.Records, &q.Verified, &q.Flagged, &q.Rejected, &q.Pending); err != nil {
			return err
		}
		if decided := q.Records - q.Pending; decided > 0 {
			q.ApprovalRate = float64(q.Verified) / float64(decided)
		}
		byAgent[q.AgentID] = q
		out = append(out, q)
		return nil
	}); err != nil {
		return fmt.Errorf("agent quality: %w", err)
	}
	rows, err = s.pool.Query(ctx, `
		SELECT r.agent_id::text, x->>'rule', count(*)
		FROM attest.records r CROSS JOIN LATERAL jsonb_array_elements(r.results) AS x
		WHERE x->>'verdict' IN ('flag', 'reject') AND ($1 = '' OR r.agent_id = nullif($1, '')::uuid)
		GROUP BY 1, 2`, agent)
	if err != nil {
		return fmt.Errorf("agent flags: %w", err)
	}
	if err := forEach(rows, func(r pgx.Rows) error {
		var id, rule string
		var n int
		if err := r.Scan(&id, &rule, &n); err != nil {
			return err
		}
		if q := byAgent[id]; q != nil {
			q.FlagsByRule[rule] = n
			switch rule {
			case "farmer.duplicate":
				q.Duplicates = n
			case "plot.overlap":
				q.Overlaps = n
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("agent flags: %w", err)
	}
	if out == nil {
		out = []*AgentQuality{}
	}
	return c.JSON(http.StatusOK, map[string]any{"agents": out})
}

// paramOnly lets uuidParam check a query parameter.
type paramOnly struct {
	echo.Context
	v string
}

func (p *paramOnly) Param(string) string { return p.v }
