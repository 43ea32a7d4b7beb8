package natstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/porttest"
)

// Cluster is a JetStream cluster of nats-server processes on loopback, the
// shape a production deployment has (three nodes, R3 streams), small
// enough for a test.
//
// The nodes are processes, not in-process servers, so that Kill can be a
// crash: an in-process server's Shutdown first hands every Raft group it
// leads to a follower (a graceful leadership transfer), which a failing
// machine never does. The binary is built from the nats-server module
// go.mod requires, so the cluster runs the version Tani is tested with.
type Cluster struct {
	nodes []*clusterNode
}

type clusterNode struct {
	name      string
	clientURL string
	httpAddr  string
	cmd       *exec.Cmd
	out       *syncBuffer
	exited    chan struct{}
}

// MustCluster builds nats-server and starts n clustered JetStream nodes,
// each with its own store under a temp dir and routes to all the others,
// then waits until every node follows one meta leader that counts n peers,
// so that creating an R3 stream succeeds at once. The nodes are killed
// when the test ends.
func MustCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	dir := tb.TempDir()
	bin := filepath.Join(dir, "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build nats-server: %v\n%s", err, out)
	}
	// Every node names every route, so the ports are chosen first, where
	// no connection takes them before the nodes listen (porttest).
	var routes []string
	clusterPorts := make([]int, n)
	for i := range n {
		clusterPorts[i] = porttest.Port(tb)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", clusterPorts[i]))
	}
	c := &Cluster{}
	for i := range n {
		nd := &clusterNode{
			name:      fmt.Sprintf("n%d", i+1),
			clientURL: fmt.Sprintf("nats://127.0.0.1:%d", porttest.Port(tb)),
			httpAddr:  fmt.Sprintf("127.0.0.1:%d", porttest.Port(tb)),
			out:       &syncBuffer{},
			exited:    make(chan struct{}),
		}
		conf := fmt.Sprintf(`server_name: %s
listen: %q
http: %q
max_payload: 8MB
jetstream { store_dir: %q }
cluster { name: tani-test, listen: "127.0.0.1:%d", routes: [%s] }
`, nd.name, strings.TrimPrefix(nd.clientURL, "nats://"), nd.httpAddr, filepath.Join(dir, nd.name), clusterPorts[i], strings.Join(routes, ", "))
		confFile := filepath.Join(dir, nd.name+".conf")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			tb.Fatal(err)
		}
		nd.cmd = exec.Command(bin, "-c", confFile)
		nd.cmd.Stdout, nd.cmd.Stderr = nd.out, nd.out
		if err := nd.cmd.Start(); err != nil {
			tb.Fatalf("start nats node %s: %v", nd.name, err)
		}
		go func() { nd.cmd.Wait(); close(nd.exited) }()
		tb.Cleanup(func() { nd.kill() })
		c.nodes = append(c.nodes, nd)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		leader, why := c.metaLeader(n)
		if leader != "" {
			break
		}
		if time.Now().After(deadline) {
			for _, nd := range c.nodes {
				tb.Logf("node %s output:\n%s", nd.name, nd.out.String())
			}
			tb.Fatalf("the JetStream cluster of %d nodes did not form within 60s: %s", n, why)
		}
		time.Sleep(50 * time.Millisecond) // polling; the deadline above bounds it
	}
	return c
}

// metaLeader returns the meta leader every live node agrees on, once it
// counts want peers, or "" and why not.
func (c *Cluster) metaLeader(want int) (string, string) {
	leader := ""
	for _, nd := range c.nodes {
		if nd.dead() {
			continue
		}
		var jsz struct {
			Meta *struct {
				Leader      string `json:"leader"`
				ClusterSize int    `json:"cluster_size"`
			} `json:"meta_cluster"`
		}
		if err := getJSON("http://"+nd.httpAddr+"/jsz", &jsz); err != nil {
			return "", fmt.Sprintf("node %s: %v", nd.name, err)
		}
		switch {
		case jsz.Meta == nil || jsz.Meta.Leader == "":
			return "", fmt.Sprintf("node %s has no meta leader", nd.name)
		case jsz.Meta.ClusterSize < want:
			return "", fmt.Sprintf("node %s counts %d peers", nd.name, jsz.Meta.ClusterSize)
		case leader != "" && jsz.Meta.Leader != leader:
			return "", fmt.Sprintf("nodes disagree on the meta leader (%s, %s)", leader, jsz.Meta.Leader)
		}
		leader = jsz.Meta.Leader
	}
	return leader, ""
}

// URL is the comma-separated client URL of every node, as -nats.url takes
// it; clients fail over between them.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = nd.clientURL
	}
	return strings.Join(urls, ",")
}

// Node returns the index of the node called name (as JetStream names
// leaders and peers), or -1.
func (c *Cluster) Node(name string) int {
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	return -1
}

// Kill sends node i SIGKILL and waits until it is gone: no leadership
// handed over, nothing flushed, its connections cut as when the machine
// fails. It is not restarted.
func (c *Cluster) Kill(i int) { c.nodes[i].kill() }

func (nd *clusterNode) kill() {
	if nd.dead() {
		return
	}
	nd.cmd.Process.Kill()
	<-nd.exited
}

func (nd *clusterNode) dead() bool {
	select {
	case <-nd.exited:
		return true
	default:
		return false
	}
}

func getJSON(url string, v any) error {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// syncBuffer collects a process's output for the test log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
