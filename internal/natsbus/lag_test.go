package natsbus_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
)

// TestConsumerLagMetrics publishes to a consumer that is not running: its
// backlog is what the lag metrics report.
func TestConsumerLagMetrics(t *testing.T) {
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	reg := prometheus.NewRegistry()
	c := natsbus.NewConsumer(natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "lagging", FilterSubjects: []string{"farm.submitted.lag"}},
		js, slog.New(slog.DiscardHandler), natsbus.NewMetrics(reg))
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publish(t, js, "farm.submitted.lag", fmt.Sprintf("lag-%d", i), "x")
	}
	publish(t, js, "farm.submitted.other", "other-1", "x") // not on its subjects

	gather := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "lagging" {
					got[mf.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
		return got
	}
	// JetStream updates a consumer's counts just after the publish is
	// acknowledged.
	waitFor(t, func() bool { return gather()["tani_consumer_pending_messages"] == 5 })
	got := gather()
	want := map[string]float64{"tani_consumer_pending_messages": 5, "tani_consumer_ack_pending_messages": 0, "tani_consumer_redelivered_messages": 0}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s: got %v (exported %v), want %v", name, g, ok, v)
		}
	}
}
