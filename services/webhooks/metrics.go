package webhooks

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the module's own figures.
type metrics struct {
	attempts   *prometheus.CounterVec
	duration   prometheus.Histogram
	firstDelay prometheus.Histogram
	created    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
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
		for _, c := range []prometheus.Collector{m.attempts, m.duration, m.firstDelay, m.created} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("webhooks: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
