package ledger_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// gauges gathers reg's unlabelled gauges by name.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestStateCollector(t *testing.T) {
	ctx := context.Background()
	j, pool := ledgertest.MustJournalPool(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(ledger.StateCollector(pool))

	t.Run("OK_Empty", func(t *testing.T) {
		want := map[string]float64{"tani_ledger_state_up": 1, "tani_ledger_tree_size": 0, "tani_ledger_checkpoint_size": 0, "tani_ledger_anchored_size": 0}
		if diff := cmp.Diff(want, gauges(t, reg)); diff != "" {
			t.Errorf("gauges (-want +got):\n%s", diff)
		}
	})

	t.Run("OK_SignedThenAnchored", func(t *testing.T) {
		for _, id := range []string{"a", "b", "c"} {
			if _, err := j.Append(ctx, rev(id, 1, `{}`)); err != nil {
				t.Fatal(err)
			}
		}
		cp, err := j.SignCheckpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append(ctx, rev("d", 1, `{}`)); err != nil {
			t.Fatal(err)
		}
		got := gauges(t, reg)
		if got["tani_ledger_tree_size"] != 4 || got["tani_ledger_checkpoint_size"] != 3 || got["tani_ledger_anchored_size"] != 0 {
			t.Errorf("got %v, want tree 4, signed 3, anchored 0", got)
		}
		if at := got["tani_ledger_checkpoint_timestamp_seconds"]; at != float64(cp.CreatedAt.UnixMicro())/1e6 {
			t.Errorf("checkpoint timestamp %v, want %v", at, float64(cp.CreatedAt.UnixMicro())/1e6)
		}
		if _, ok := got["tani_ledger_anchored_checkpoint_timestamp_seconds"]; ok {
			t.Error("an anchor timestamp before any anchor")
		}
		if err := j.SetAnchor(ctx, cp.Size, verify.Anchor{Channel: "tani", Chaincode: "anchor", TxID: "tx1", BlockNumber: 7}); err != nil {
			t.Fatal(err)
		}
		got = gauges(t, reg)
		if got["tani_ledger_anchored_size"] != 3 || got["tani_ledger_anchored_checkpoint_timestamp_seconds"] != got["tani_ledger_checkpoint_timestamp_seconds"] {
			t.Errorf("got %v, want checkpoint 3 anchored", got)
		}
	})

	t.Run("OK_DatabaseDownSaysSo", func(t *testing.T) {
		pool.Close()
		want := map[string]float64{"tani_ledger_state_up": 0}
		if diff := cmp.Diff(want, gauges(t, reg)); diff != "" {
			t.Errorf("gauges (-want +got):\n%s", diff)
		}
	})
}
