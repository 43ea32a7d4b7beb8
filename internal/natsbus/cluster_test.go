package natsbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  natsbus.Config
		want string // "" for OK
	}{
		{"OK_EmbeddedOneReplica", natsbus.Config{Replicas: 1}, ""},
		{"OK_ClusterThreeReplicas", natsbus.Config{URL: "nats://a:4222,nats://b:4222,nats://c:4222", Replicas: 3}, ""},
		{"ErrEmbeddedThreeReplicas", natsbus.Config{Replicas: 3}, "-nats.replicas 3 needs a JetStream cluster of at least 3 nodes (-nats.url); the embedded server is one node"},
		{"ErrZeroReplicas", natsbus.Config{URL: "nats://a:4222", Replicas: 0}, "-nats.replicas 0 must be between 1 and 5"},
		{"ErrSixReplicas", natsbus.Config{URL: "nats://a:4222", Replicas: 6}, "-nats.replicas 6 must be between 1 and 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestConfigRedacted(t *testing.T) {
	got := natsbus.Config{URL: "nats://tani:s3cret@a:4222,nats://b:4222"}.Redacted()
	if want := "nats://tani:xxxxx@a:4222,nats://b:4222"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestCluster_ThreeReplicasSurviveLosingTheLeader creates the shared
// streams with three replicas on a three-node cluster, then kills the node
// leading FARM while a consumer runs: every message whose publish was
// acknowledged, before or after, is delivered, and new publishes are
// acknowledged again once the two remaining nodes elect a leader.
func TestCluster_ThreeReplicasSurviveLosingTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and runs three nodes")
	}
	ctx := context.Background()
	cluster := natstest.MustCluster(t, 3)
	nc, js, err := natsbus.Connect(natsbus.Config{URL: cluster.URL(), Replicas: 3}, nil, t.Name(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := natsbus.EnsureStreams(ctx, js, 3); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	// Messages the killed leader had handed out but whose acks it never
	// replicated are redelivered after AckWait; a short one keeps that
	// within the wait below (the default 30 s would outlast it).
	run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "cluster", FilterSubjects: []string{"farm.submitted.>"}, AckWait: 5 * time.Second},
		func(_ context.Context, msg jetstream.Msg) error {
			mu.Lock()
			got[string(msg.Data())]++
			mu.Unlock()
			return nil
		})

	st, err := js.Stream(ctx, natsbus.StreamFarm)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream FARM: got %d replicas, cluster %+v; want a leader and two followers", info.Config.Replicas, info.Cluster)
	}
	cons, err := js.Consumer(ctx, natsbus.StreamFarm, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	if ci := cons.CachedInfo(); ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
		t.Fatalf("consumer: got cluster %+v, want a leader and two followers (the stream's replicas)", ci.Cluster)
	}

	acked := map[string]bool{}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			data := fmt.Sprintf("m%d", i)
			deadline := time.Now().Add(30 * time.Second)
			for {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "farm.submitted.test", []byte(data), jetstream.WithMsgID(data))
				cancel()
				if err == nil {
					acked[data] = true
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("publish %s not acknowledged within 30s: %v", data, err)
				}
			}
		}
	}
	send(0, 100)
	leaderName := info.Cluster.Leader
	leader := cluster.Node(leaderName)
	if leader < 0 {
		t.Fatalf("leader %q is not a node of the cluster", info.Cluster.Leader)
	}
	cluster.Kill(leader)
	send(100, 200)

	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(acked)
	})
	mu.Lock()
	defer mu.Unlock()
	var missing []string
	for data := range acked {
		if got[data] == 0 {
			missing = append(missing, data)
		}
	}
	if len(missing) > 0 || len(acked) != 200 {
		t.Errorf("%d acknowledged, %d delivered; missing %s", len(acked), len(got), strings.Join(missing, ","))
	}
	info, err = st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster.Leader == "" || info.Cluster.Leader == leaderName {
		t.Errorf("after killing %s: got leader %q, want another node", leaderName, info.Cluster.Leader)
	}
}

// BenchmarkPublishBatch publishes batches of 100 records of 1 KB the way
// mobile-api answers a /sync (asynchronously, then waiting for every
// acknowledgement) to the embedded server (R1) and to a three-node cluster
// on loopback with R1 and R3 streams: what replication costs an
// acknowledgement. Figures in docs/capacity.md.
func BenchmarkPublishBatch(b *testing.B) {
	cluster := natstest.MustCluster(b, 3)
	single := natstest.MustServer(b)
	payload := make([]byte, 1024)
	for _, bc := range []struct {
		name     string
		url      string
		replicas int
	}{
		{"embedded-R1", single.ClientURL(), 1},
		{"cluster-R1", cluster.URL(), 1},
		{"cluster-R3", cluster.URL(), 3},
	} {
		b.Run(bc.name, func(b *testing.B) {
			nc, js, err := natsbus.Connect(natsbus.Config{URL: bc.url}, nil, b.Name(), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			ctx := context.Background()
			for _, name := range []string{natsbus.StreamFarm, natsbus.StreamDead} {
				_ = js.DeleteStream(ctx, name) // a fresh stream with this case's replicas
			}
			if err := natsbus.EnsureStreams(ctx, js, bc.replicas); err != nil {
				b.Fatal(err)
			}
			const batch = 100
			n := 0
			b.ResetTimer()
			for range b.N {
				futures := make([]jetstream.PubAckFuture, 0, batch)
				for range batch {
					n++
					f, err := js.PublishAsync("farm.submitted.bench", payload, jetstream.WithMsgID(fmt.Sprintf("%s-%d", bc.name, n)))
					if err != nil {
						b.Fatal(err)
					}
					futures = append(futures, f)
				}
				for _, f := range futures {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						b.Fatal(err)
					case <-time.After(10 * time.Second):
						b.Fatal("no acknowledgement within 10 s")
					}
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// TestEnsureStreams_ManyProcessesAtOnce: the processes of a deployment
// start together and each ensures the shared R3 streams while the cluster
// is still placing them; every one must succeed (a busy cluster's
// timeouts are waited out, not taken as a failure).
func TestEnsureStreams_ManyProcessesAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three nodes")
	}
	cluster := natstest.MustCluster(t, 3)
	errs := make(chan error, 6)
	for range cap(errs) {
		go func() {
			nc, js, err := natsbus.Connect(natsbus.Config{URL: cluster.URL(), Replicas: 3}, nil, t.Name(), slog.New(slog.DiscardHandler))
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			errs <- natsbus.EnsureStreams(context.Background(), js, 3)
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestEnsureStreams_RefusedConfigurationFailsAtOnce: what JetStream
// refuses for good (three replicas on a one-node server) is not waited on
// as a busy cluster would be; the error says what the cluster lacks.
func TestEnsureStreams_RefusedConfigurationFailsAtOnce(t *testing.T) {
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	err := natsbus.EnsureStreams(context.Background(), js, 3)
	if err == nil || !strings.Contains(err.Error(), "needs at least 3 JetStream nodes") {
		t.Fatalf("got %v, want a refusal naming the 3 nodes the cluster needs", err)
	}
}
