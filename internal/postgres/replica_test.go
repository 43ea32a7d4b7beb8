package postgres_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	db := pgtest.MustDatabase(t)
	read, err := postgres.OpenReadOnly(ctx, pgtest.URL(t, db), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(read.Close)

	t.Run("OK_Reads", func(t *testing.T) {
		var n int
		if err := read.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
			t.Errorf("got %d, %v; want 1", n, err)
		}
	})
	t.Run("ErrWriteRefusedEvenOnAPrimary", func(t *testing.T) {
		_, err := read.Exec(ctx, "CREATE TABLE written_by_mistake (id int)")
		if postgres.Code(err) != "25006" {
			t.Errorf("got %v, want a read-only transaction error", err)
		}
	})
	t.Run("ErrUnreachable", func(t *testing.T) {
		_, err := postgres.OpenReadOnly(ctx, "postgres://postgres@"+deadAddr(t)+"/tani?sslmode=disable", 1)
		if err == nil || !strings.Contains(err.Error(), "read replica at postgres://postgres@127.0.0.1:") {
			t.Errorf("got %v, want an error naming the replica", err)
		}
	})
}

// TestReplicaMonitor_NotAReplica points the monitor's replica at a
// primary: the lag cannot be measured and the metrics say the replica is
// down. (A real standby is measured by the opt-in failover test.)
func TestReplicaMonitor_NotAReplica(t *testing.T) {
	ctx := context.Background()
	db := pgtest.MustDatabase(t)
	primary := pgtest.MustPool(t, db)
	read, err := postgres.OpenReadOnly(ctx, pgtest.URL(t, db), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(read.Close)
	reg := prometheus.NewRegistry()
	m, err := postgres.NewReplicaMonitor(primary, read, time.Hour, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Measure(ctx); err == nil || !strings.Contains(err.Error(), "not in recovery") {
		t.Fatalf("got %v, want the replica refused as not in recovery", err)
	}
	names := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"tani_postgres_replica_up", "tani_postgres_replica_lag_seconds", "tani_postgres_replica_lag_bytes"} {
		if !names[want] {
			t.Errorf("metric %s not registered (got %v)", want, names)
		}
	}
}
