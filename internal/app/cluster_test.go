package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/app/cli"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestCluster_LosingANodeOfEachKindLosesNothing runs Tani split the way a
// production deployment is: a three-node JetStream cluster with R3 streams
// and consumers, two mobile-api processes, two ingest processes, one attest
// and one ledger+anchor process, sharing one database and one key set.
// Phones send signed records through both mobile-api processes (a phone
// whose server fails tries the other, as behind a load balancer) while,
// one after the other, the node leading the FARM stream is killed, an
// ingest process is killed and a mobile-api process is killed. Every
// record any mobile-api acknowledged must be stored exactly once, decided,
// journaled exactly once and covered by a checkpoint anchored on Fabric,
// and `tani verify` must pass. The seconds without acknowledgements after
// each kill are reported (-v), not asserted: performance is not a test.
func TestCluster_LosingANodeOfEachKindLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster and six Tani processes")
	}
	ctx := context.Background()
	cluster := natstest.MustCluster(t, 3)
	keyFlags, ledgerKey := mustSharedKeys(t)
	common := append(keyFlags,
		"-nats.url="+cluster.URL(), "-nats.replicas=3",
		"-mobile.publish-timeout=2s",
		"-ledger.checkpoint-interval=200ms", "-anchor.interval=200ms",
	)
	start := func(target string, more ...string) *apptest.Running {
		return apptest.MustStart(t, slices.Concat(common, []string{"-target=" + target}, more)...)
	}
	anchorer := start("ledger,anchor")
	shared := "-database.url=" + anchorer.DatabaseURL
	start("attest", shared)
	ingest := []*apptest.Running{start("ingest", shared), start("ingest", shared)}
	api := []*apptest.Running{start("mobile-api", shared), start("mobile-api", shared)}

	_, js, err := natsbus.Connect(natsbus.Config{URL: cluster.URL()}, nil, t.Name(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("StreamsAndConsumersHaveThreeReplicas", func(t *testing.T) {
		for _, name := range []string{natsbus.StreamFarm, natsbus.StreamDead} {
			st, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if info := st.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				t.Errorf("stream %s: got %d replicas (cluster %+v), want 3: a leader and two followers", name, info.Config.Replicas, info.Cluster)
			}
		}
		for _, durable := range []string{"ingest", "attest"} {
			c, err := js.Consumer(ctx, natsbus.StreamFarm, durable)
			if err != nil {
				t.Fatal(err)
			}
			if info := c.CachedInfo(); info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				t.Errorf("consumer %s: got cluster %+v, want a leader and two followers", durable, info.Cluster)
			}
		}
	})

	// Phones.
	const phones = 4
	load := &phoneLoad{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range phones {
		agent := clienttest.MustAgent(t, api[0].URL, operatorToken, "Central Java")
		other := client.New(api[1].URL, nil)
		if err := other.Login(ctx, agent.Username, agent.Password); err != nil {
			t.Fatal(err)
		}
		other.UseDevice(agent.DeviceID, agent.Key)
		clients := []*client.Client{agent.Client, other}
		wg.Add(1)
		go func() {
			defer wg.Done()
			load.run(t, agent, clients, i%2, stop)
		}()
	}

	var events []loadEvent
	kill := func(what string, do func()) {
		load.waitFor(t, load.acked()+300) // acknowledgements are flowing
		events = append(events, loadEvent{what, time.Now()})
		do()
	}
	kill("NATS node leading the FARM stream killed", func() {
		st, err := js.Stream(ctx, natsbus.StreamFarm)
		if err != nil {
			t.Fatal(err)
		}
		leader := cluster.Node(st.CachedInfo().Cluster.Leader)
		if leader < 0 {
			t.Fatalf("FARM is led by %q, not a node of the cluster", st.CachedInfo().Cluster.Leader)
		}
		cluster.Kill(leader)
	})
	kill("ingest process killed", ingest[0].Kill)
	kill("mobile-api process killed", api[1].Kill)
	load.waitFor(t, load.acked()+300)
	events = append(events, loadEvent{"end", time.Now()})
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// The killed ingest's unacknowledged messages come back after their
	// ack wait (30 s), hence the long bound.
	mustAllJournaledAndAnchored(t, anchorer.DB, load.ids(), 3*time.Minute)
	mustVerify(t, "-data-dir", anchorer.DataDir, "-ledger.key-file", ledgerKey,
		"-database.url", anchorer.DatabaseURL, "-fabric.devnet-listen", anchorer.App.FabricDevnetAddr())
	load.report(t, events)
}

// loadEvent is something done to the deployment under load, and when.
type loadEvent struct {
	what string
	at   time.Time
}

// mustAllJournaledAndAnchored waits until every acknowledged record is
// stored, decided, journaled and covered by an anchored checkpoint, then
// fails the test unless each is stored exactly once, journaled exactly
// once and verified. It logs the figures.
func mustAllJournaledAndAnchored(t *testing.T, db *pgxpool.Pool, ids []string, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	var stored, rows, decided, journaled, entries int
	var maxLeaf int64
	pollUntil(t, timeout, "every acknowledged record stored, decided, journaled and anchored", func() (bool, string) {
		err := db.QueryRow(ctx, `SELECT count(DISTINCT id), count(*) FROM ingest.submissions WHERE id = ANY($1::uuid[])`, ids).Scan(&stored, &rows)
		if err == nil {
			err = db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status <> 'pending'), count(leaf_index), coalesce(max(leaf_index), -1)
				FROM attest.records WHERE record_id = ANY($1::uuid[])`, ids).Scan(&decided, &journaled, &maxLeaf)
		}
		var anchored int64
		if err == nil {
			err = db.QueryRow(ctx, `SELECT coalesce(max(size), 0) FROM ledger.checkpoints WHERE anchor IS NOT NULL`).Scan(&anchored)
		}
		return err == nil && journaled == len(ids) && anchored > maxLeaf,
			fmt.Sprintf("%d acknowledged: %d stored, %d decided, %d journaled (last leaf %d), anchored up to size %d, err %v",
				len(ids), stored, decided, journaled, maxLeaf, anchored, err)
	})
	if err := db.QueryRow(ctx, `SELECT count(*) FROM ledger.entries WHERE record_id = ANY($1::text[])`, ids).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	if stored != len(ids) || rows != len(ids) || entries != len(ids) {
		t.Errorf("%d records acknowledged: %d stored in %d rows, %d journal entries; want each exactly once", len(ids), stored, rows, entries)
	}
	var notVerified int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM attest.records WHERE record_id = ANY($1::uuid[]) AND status <> 'verified'`, ids).Scan(&notVerified); err != nil {
		t.Fatal(err)
	}
	if notVerified != 0 {
		t.Errorf("%d records not verified; the load sends only records the rules pass", notVerified)
	}
	t.Logf("%d records acknowledged: %d stored, %d lost, %d duplicated (rows beyond one per record in ingest and the journal)",
		len(ids), stored, len(ids)-stored, rows-stored+entries-journaled)
}

// mustVerify runs `tani verify` with args (which must reach the chain)
// and fails the test unless it passes.
func mustVerify(t *testing.T, args ...string) {
	t.Helper()
	var out strings.Builder
	code := cli.Main(context.Background(), append([]string{"verify"}, args...), &out, &out, func(string) string { return "" })
	if code != 0 || strings.Contains(out.String(), "FAULT") {
		t.Errorf("tani verify: exit %d\n%s", code, out.String())
	} else {
		t.Logf("tani verify: %s", strings.TrimSpace(out.String()))
	}
}

// report logs the longest time without acknowledgements after each event
// but the last (which marks the end of the load).
func (l *phoneLoad) report(t *testing.T, events []loadEvent) {
	acks := l.times()
	for i, e := range events[:len(events)-1] {
		gap, before, after := longestGap(acks, e.at, events[i+1].at)
		t.Logf("%s: longest time without acknowledgements %.2fs (from %s to %s after it)",
			e.what, gap.Seconds(), before.Sub(e.at).Round(time.Millisecond), after.Sub(e.at).Round(time.Millisecond))
	}
}

// phoneLoad is what phones acknowledged, when.
type phoneLoad struct {
	mu      sync.Mutex
	ackedAt []time.Time
	records map[string]bool
	serial  atomic.Int64
}

// run sends batches of new farmers the way a phone does: the same batch
// again until it is acknowledged, trying the other server after a
// failure, until stop is closed.
func (l *phoneLoad) run(t *testing.T, agent *clienttest.Agent, clients []*client.Client, cur int, stop <-chan struct{}) {
	ctx := context.Background()
	loc := client.Location{Lat: -7.25, Lon: 110.4, AccuracyM: 4}
	for {
		select {
		case <-stop:
			return
		default:
		}
		var batch []json.RawMessage
		for range 20 {
			n := l.serial.Add(1)
			p := clienttest.Payloads("", "", time.Now())["farmer.registered"]
			p["farmer_id"] = uuid.NewString()
			p["national_id"] = fmt.Sprintf("3374%012d", n)
			p["phone"] = fmt.Sprintf("+62813%08d", n)
			raw, _, err := agent.Record("farmer.registered", time.Now().Add(-time.Minute), loc, p)
			if err != nil {
				t.Error(err)
				return
			}
			batch = append(batch, raw)
		}
		for attempt := 0; ; attempt++ {
			res, err := clients[cur].Sync(ctx, batch)
			if err == nil {
				l.mu.Lock()
				if l.records == nil {
					l.records = map[string]bool{}
				}
				for _, r := range res {
					if r.Status != "accepted" && r.Status != "duplicate" {
						t.Errorf("record %s %s: %v", r.ID, r.Status, r.Errors)
					}
					l.records[r.ID] = true
				}
				l.ackedAt = append(l.ackedAt, time.Now())
				l.mu.Unlock()
				break
			}
			if attempt > 300 {
				t.Errorf("batch never acknowledged: %v", err)
				return
			}
			cur = 1 - cur                      // the load balancer takes the failing server out
			time.Sleep(100 * time.Millisecond) // a phone retries a little later
		}
	}
}

func (l *phoneLoad) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.records)
}

func (l *phoneLoad) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.records))
	for id := range l.records {
		ids = append(ids, id)
	}
	return ids
}

func (l *phoneLoad) times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ackedAt)
}

// waitFor waits until n records are acknowledged.
func (l *phoneLoad) waitFor(t *testing.T, n int) {
	t.Helper()
	pollUntil(t, 2*time.Minute, fmt.Sprintf("%d records acknowledged", n), func() (bool, string) {
		got := l.acked()
		return got >= n, fmt.Sprintf("%d acknowledged", got)
	})
}

// longestGap returns the longest time between consecutive acknowledgements
// from the last one before from to the first one at or after until, and
// where that gap lies.
func longestGap(acks []time.Time, from, until time.Time) (gap time.Duration, start, end time.Time) {
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	i, _ := slices.BinarySearchFunc(acks, from, func(a, b time.Time) int { return a.Compare(b) })
	if i > 0 {
		i--
	}
	for ; i+1 < len(acks) && !acks[i].After(until); i++ {
		if d := acks[i+1].Sub(acks[i]); d > gap {
			gap, start, end = d, acks[i], acks[i+1]
		}
	}
	return gap, start, end
}

// pollUntil polls cond until it holds, failing the test after timeout with
// cond's last word.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// operatorToken is the operator token every process of a test is given
// (at least 32 characters, as `tani up` requires).
const operatorToken = "test-operator-token-of-the-whole-deployment"

// mustSharedKeys creates a deployment's key set as `tani keys init` does
// and returns the flags every process of the test gets, and the journal's
// key file for `tani verify`. The operator token is passed as a flag
// instead of its file (apptest passes one too, and `tani up` refuses
// both).
func mustSharedKeys(t *testing.T) (flags []string, ledgerKey string) {
	t.Helper()
	set, err := app.InitKeys(t.TempDir(), ledger.DefaultOrigin, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range set.Flags() {
		if strings.HasPrefix(f, "-auth.operator-token-file=") {
			continue
		}
		if v, ok := strings.CutPrefix(f, "-ledger.key-file="); ok {
			ledgerKey = v
		}
		flags = append(flags, f)
	}
	return append(flags, "-auth.operator-token="+operatorToken), ledgerKey
}
