package webhooks

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the module's own figures.
type metrics struct {
	attempts   *prometheus.CounterVec
	duration   prometheus.Histogram
	firstDelay prometheus.Histogram
	created    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tani_webhook_attempts_total",
			Help: "Delivery attempts by outcome: delivered, failed (will retry), gave_up (retry window over), withheld (consent no longer live; not sent).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tani_webhook_attempt_seconds",
			Help:    "Time of one delivery attempt, connection included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		firstDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tani_webhook_first_attempt_delay_seconds",
			Help:    "From an event's arrival on EVENTS to the start of the first attempt of each of its deliveries.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tani_webhook_deliveries_created_total",
			Help: "Deliveries created by the fan-out (one per event and subscribed endpoint).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.attempts, m.duration, m.firstDelay, m.created, stateCollector{pool: pool}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("webhooks: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// stateCollector exports the endpoints by health and the deliveries
// waiting, asked of Postgres at scrape time (every process running the
// module reports the same figures: alert on their max).
type stateCollector struct{ pool *pgxpool.Pool }

var (
	endpointsDesc = prometheus.NewDesc("tani_webhook_endpoints",
		"Webhook endpoints by state: healthy, failing (an attempt failed since the last success), disabled_failing (every attempt failed for a whole retry window), disabled (by their organization).",
		[]string{"state"}, nil)
	pendingDesc = prometheus.NewDesc("tani_webhook_deliveries_pending",
		"Deliveries waiting for an attempt or a retry, to enabled endpoints.", nil, nil)
	oldestFailingDesc = prometheus.NewDesc("tani_webhook_oldest_failing_seconds",
		"How long the longest-failing enabled endpoint has been failing (0 when none is).", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- endpointsDesc
	ch <- pendingDesc
	ch <- oldestFailingDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var healthy, failing, disabledFailing, disabled, pending int64
	var oldest float64
	if err := c.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE enabled AND failing_since IS NULL),
		       count(*) FILTER (WHERE enabled AND failing_since IS NOT NULL),
		       count(*) FILTER (WHERE disabled_reason = 'failing'),
		       count(*) FILTER (WHERE disabled_reason = 'organization'),
		       coalesce(extract(epoch FROM now() - min(failing_since) FILTER (WHERE enabled)), 0)::float8,
		       (SELECT count(*) FROM webhooks.deliveries d JOIN webhooks.endpoints e ON e.id = d.endpoint_id AND e.enabled WHERE d.state = 'pending')
		FROM webhooks.endpoints`).Scan(&healthy, &failing, &disabledFailing, &disabled, &oldest, &pending); err != nil {
		return
	}
	for state, n := range map[string]int64{"healthy": healthy, "failing": failing, "disabled_failing": disabledFailing, "disabled": disabled} {
		ch <- prometheus.MustNewConstMetric(endpointsDesc, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(oldestFailingDesc, prometheus.GaugeValue, oldest)
}
