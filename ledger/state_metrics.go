package ledger

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// StateCollector exports the journal's progress as stored in the
// database: how large the tree is, how far it is signed and how far
// anchored, and when. They feed the alerts on a checkpoint too old and on
// anchoring stalled. Every process that reads the same database reports
// the same values, so dashboards and alerts take the max over processes.
// Values are read when scraped, within a short timeout; if the database
// does not answer, only tani_ledger_state_up (0) is exported.
func StateCollector(pool *pgxpool.Pool) prometheus.Collector {
	return &stateCollector{pool: pool}
}

var (
	stateUp = prometheus.NewDesc("tani_ledger_state_up",
		"1 when the journal's state below was read from the database at this scrape, 0 when the database did not answer.", nil, nil)
	treeSize = prometheus.NewDesc("tani_ledger_tree_size",
		"Entries in the journal.", nil, nil)
	checkpointSize = prometheus.NewDesc("tani_ledger_checkpoint_size",
		"Tree size of the newest signed checkpoint (0 before the first).", nil, nil)
	checkpointTime = prometheus.NewDesc("tani_ledger_checkpoint_timestamp_seconds",
		"When the newest signed checkpoint was signed, in Unix seconds (absent before the first).", nil, nil)
	anchoredSize = prometheus.NewDesc("tani_ledger_anchored_size",
		"Tree size of the newest checkpoint anchored on Fabric (0 before the first).", nil, nil)
	anchoredTime = prometheus.NewDesc("tani_ledger_anchored_checkpoint_timestamp_seconds",
		"When the newest anchored checkpoint was signed, in Unix seconds (absent before the first anchor).", nil, nil)
)

// stateTimeout bounds the query a scrape runs.
const stateTimeout = 2 * time.Second

type stateCollector struct{ pool *pgxpool.Pool }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{stateUp, treeSize, checkpointSize, checkpointTime, anchoredSize, anchoredTime} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	var tree, signed, anchored int64
	var signedAt, anchoredAt *float64
	err := c.pool.QueryRow(ctx, `
		SELECT (SELECT size FROM ledger.tree),
		       coalesce(s.size, 0), extract(epoch FROM s.created_at)::float8,
		       coalesce(a.size, 0), extract(epoch FROM a.created_at)::float8
		FROM (SELECT 1) one
		LEFT JOIN LATERAL (SELECT size, created_at FROM ledger.checkpoints ORDER BY size DESC LIMIT 1) s ON true
		LEFT JOIN LATERAL (SELECT size, created_at FROM ledger.checkpoints WHERE anchor IS NOT NULL ORDER BY size DESC LIMIT 1) a ON true`,
	).Scan(&tree, &signed, &signedAt, &anchored, &anchoredAt)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(stateUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(stateUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(treeSize, prometheus.GaugeValue, float64(tree))
	ch <- prometheus.MustNewConstMetric(checkpointSize, prometheus.GaugeValue, float64(signed))
	ch <- prometheus.MustNewConstMetric(anchoredSize, prometheus.GaugeValue, float64(anchored))
	if signedAt != nil {
		ch <- prometheus.MustNewConstMetric(checkpointTime, prometheus.GaugeValue, *signedAt)
	}
	if anchoredAt != nil {
		ch <- prometheus.MustNewConstMetric(anchoredTime, prometheus.GaugeValue, *anchoredAt)
	}
}
