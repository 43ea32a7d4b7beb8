package app_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/porttest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestFailover_PostgresPrimaryPromotedAway runs Tani on a Postgres primary
// with a synchronous streaming standby (scripts/pg-failover.sh), through a
// multi-host URL with target_session_attrs=read-write, with two processes
// journaling (target all, and a second attest process), so two sequencers
// contend for the journal. Under load, the primary crashes (stop -m
// immediate) and the standby is promoted. Every acknowledged record must
// be stored exactly once, journaled exactly once and anchored, and `tani
// verify` must pass against the promoted server: had two sequencers
// appended at once, or an acknowledged commit been lost, the recomputed
// tree would not match the signed and anchored checkpoints.
//
// Opt-in (make failover-test): it creates and removes two Postgres
// clusters on this machine and needs root or sudo to postgres.
func TestFailover_PostgresPrimaryPromotedAway(t *testing.T) {
	if os.Getenv("TANI_PG_FAILOVER") == "" {
		t.Skip("opt-in: make failover-test (creates Postgres clusters on ports 5442 and 5443 with scripts/pg-failover.sh)")
	}
	ctx := context.Background()
	pgFailover(t, "up")
	t.Cleanup(func() { pgFailover(t, "down") })
	dbURL := pgFailover(t, "url")

	keyFlags, ledgerKey := mustSharedKeys(t)
	natsAddr := porttest.Addr(t)
	common := append(keyFlags, "-database.url="+dbURL, "-mobile.publish-timeout=2s",
		"-ledger.checkpoint-interval=200ms", "-anchor.interval=200ms")
	tani := apptest.MustStart(t, append(common, "-nats.embedded-listen="+natsAddr)...)
	apptest.MustStart(t, append(common, "-target=attest", "-nats.url=nats://"+natsAddr)...)
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)

	load := &phoneLoad{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		agent := clienttest.MustAgent(t, tani.URL, operatorToken, "Central Java")
		wg.Go(func() { load.run(t, agent, []*client.Client{agent.Client, agent.Client}, 0, stop) })
	}
	load.waitFor(t, 300)
	events := []loadEvent{{"Postgres primary crashed, standby promoted", time.Now()}}
	pgFailover(t, "promote")
	load.waitFor(t, load.acked()+300)
	events = append(events, loadEvent{"end", time.Now()})
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	mustAllJournaledAndAnchored(t, db, load.ids(), 2*time.Minute)
	mustVerify(t, "-data-dir", tani.DataDir, "-ledger.key-file", ledgerKey,
		"-database.url", dbURL, "-fabric.devnet-listen", tani.App.FabricDevnetAddr())
	var inRecovery bool
	if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || inRecovery {
		t.Errorf("the checks ran on a server in recovery (%v, %v), want the promoted standby", inRecovery, err)
	}
	load.report(t, events)
}

// pgFailover runs scripts/pg-failover.sh with command and returns its
// output's last line.
func pgFailover(t *testing.T, command string) string {
	t.Helper()
	out, err := exec.Command("bash", "../../scripts/pg-failover.sh", command).CombinedOutput()
	if err != nil {
		t.Fatalf("pg-failover.sh %s: %v\n%s", command, err, out)
	}
	lines := splitLines(string(out))
	if len(lines) == 0 {
		return ""
	}
	t.Logf("pg-failover.sh %s: %s", command, lines[len(lines)-1])
	return lines[len(lines)-1]
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestReadReplica_LagMeasuredFreshReadsOnThePrimary gives `tani up` the
// standby as -database.read-url and pauses its replay: the lag shows in
// the metrics, while what a phone was just told (the record verified) and
// its receipt still come from the primary. When replay resumes, the
// replica catches up. Opt-in, as the failover test.
func TestReadReplica_LagMeasuredFreshReadsOnThePrimary(t *testing.T) {
	if os.Getenv("TANI_PG_FAILOVER") == "" {
		t.Skip("opt-in: make failover-test (creates Postgres clusters on ports 5442 and 5443 with scripts/pg-failover.sh)")
	}
	ctx := context.Background()
	pgFailover(t, "up")
	t.Cleanup(func() { pgFailover(t, "down") })
	readURL := pgFailover(t, "read-url")
	tani := apptest.MustStart(t, "-database.url="+pgFailover(t, "primary-url"), "-database.read-url="+readURL, "-ledger.checkpoint-interval=200ms")
	pollUntil(t, 30*time.Second, "the replica measured", func() (bool, string) {
		up, ok := metricValue(t, tani, "tani_postgres_replica_up")
		return ok && up == 1, fmt.Sprintf("tani_postgres_replica_up %v (exported %v)", up, ok)
	})

	standby, err := pgx.Connect(ctx, readURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Close(context.Background()) })
	if _, err := standby.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ids := syncFarm(t, agent, 110.4005, -7.2505) // waits until the phone is told: verified
	mustBody(t, tani, "/ledger/v1/records/"+ids[1]+"/receipt", http.StatusOK)
	onReplica := func() int {
		var n int
		if err := standby.QueryRow(ctx, "SELECT count(*) FROM ingest.submissions WHERE id = ANY($1::uuid[])", ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := onReplica(); n != 0 {
		t.Fatalf("the paused replica has %d of the records; the test did not make it stale", n)
	}
	pollUntil(t, 30*time.Second, "the lag in the metrics", func() (bool, string) {
		b, _ := metricValue(t, tani, "tani_postgres_replica_lag_bytes")
		return b > 0, fmt.Sprintf("tani_postgres_replica_lag_bytes %v", b)
	})

	if _, err := standby.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 30*time.Second, "the replica to catch up", func() (bool, string) {
		n := onReplica()
		return n == len(ids), fmt.Sprintf("%d of %d records on the replica", n, len(ids))
	})
}

// metricValue reads an unlabelled metric from /metrics, if exported.
func metricValue(t *testing.T, r *apptest.Running, name string) (float64, bool) {
	t.Helper()
	_, body := getBody(t, r, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f, true
		}
	}
	return 0, false
}
