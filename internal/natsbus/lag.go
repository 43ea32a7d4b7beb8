package natsbus

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lagCollector exports, for every consumer this process runs, how far it
// trails its stream, as JetStream counts it: the alert on consumer lag
// and the dashboard read it. Every process running a consumer reports the
// same durable's numbers, so they are read with max by (consumer). The
// numbers are asked of the server when scraped, within a short timeout;
// a consumer whose server does not answer is left out of that scrape.
type lagCollector struct {
	mu        sync.Mutex
	consumers map[string]*Consumer // by durable name
}

var (
	lagPending = prometheus.NewDesc("tani_consumer_pending_messages",
		"Messages on the consumer's subjects not yet delivered to it: its backlog (a bundle, one message, carries up to 100 records).", []string{"consumer"}, nil)
	lagAckPending = prometheus.NewDesc("tani_consumer_ack_pending_messages",
		"Messages delivered to the consumer and not yet acknowledged: in flight, or held by a process that died (back after the ack wait).", []string{"consumer"}, nil)
	lagRedelivered = prometheus.NewDesc("tani_consumer_redelivered_messages",
		"Messages delivered to the consumer more than once and not yet acknowledged.", []string{"consumer"}, nil)
)

// lagTimeout bounds the consumer info request a scrape makes.
const lagTimeout = 2 * time.Second

func (l *lagCollector) add(c *Consumer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.consumers == nil {
		l.consumers = map[string]*Consumer{}
	}
	l.consumers[c.cfg.Durable] = c
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagPending
	ch <- lagAckPending
	ch <- lagRedelivered
}

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	consumers := make([]*Consumer, 0, len(l.consumers))
	for _, c := range l.consumers {
		consumers = append(consumers, c)
	}
	l.mu.Unlock()
	for _, c := range consumers {
		ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
		info, err := c.cons.Info(ctx)
		cancel()
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(lagPending, prometheus.GaugeValue, float64(info.NumPending), c.cfg.Durable)
		ch <- prometheus.MustNewConstMetric(lagAckPending, prometheus.GaugeValue, float64(info.NumAckPending), c.cfg.Durable)
		ch <- prometheus.MustNewConstMetric(lagRedelivered, prometheus.GaugeValue, float64(info.NumRedelivered), c.cfg.Durable)
	}
}
