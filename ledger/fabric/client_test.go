package fabric_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/fabric"
)

func mustDevnet(t *testing.T) *devnet.Network {
	t.Helper()
	cc, err := chaincode.New()
	if err != nil {
		t.Fatal(err)
	}
	return devnettest.MustStart(t, devnet.Chaincode{Name: "anchor", Policy: devnet.MajorityPolicy(devnet.DefaultOrgs), CC: cc})
}

func mustClient(t *testing.T, n *devnet.Network, role string, edit func(*fabric.Config)) *fabric.Client {
	t.Helper()
	id, err := n.Identity("TaniMSP", role)
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.ConnectionInfo().ClientConfig(id, "anchor")
	if edit != nil {
		edit(&cfg)
	}
	c, err := fabric.Dial(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mustRegisteredLog registers a fresh origin and returns it with a function
// that signs a checkpoint of any (size, root) with its key.
func mustRegisteredLog(t *testing.T, c *fabric.Client) (origin string, sign func(size uint64, root []byte) []byte) {
	t.Helper()
	origin = "client-test.example/" + t.Name()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterLog(context.Background(), origin, vkey); err != nil {
		t.Fatalf("register: %v", err)
	}
	return origin, func(size uint64, root []byte) []byte {
		n, err := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: origin, Size: size, Hash: root}.Marshal())}, s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}

func root(b byte) []byte {
	r := make([]byte, 32)
	r[0] = b
	return r
}

func TestAnchor(t *testing.T) {
	n := mustDevnet(t)
	c := mustClient(t, n, "admin", nil)
	ctx := context.Background()
	origin, sign := mustRegisteredLog(t, c)

	t.Run("OK", func(t *testing.T) {
		var recorded []string
		got, err := c.Anchor(ctx, sign(1, root(1)), nil, func(txID string) error { recorded = append(recorded, txID); return nil })
		if err != nil {
			t.Fatalf("anchor: %v", err)
		}
		if len(recorded) != 1 || recorded[0] != got.TxID {
			t.Errorf("got recorded TxIDs %v, want exactly the committed %s", recorded, got.TxID)
		}
		st, err := c.TransactionStatus(ctx, got.TxID)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Successful || st.BlockNumber != got.BlockNumber {
			t.Errorf("got status %+v, want valid in block %d", st, got.BlockNumber)
		}
		latest, err := c.LatestAnchor(ctx, origin)
		if err != nil || latest == nil || latest.TxID != got.TxID {
			t.Errorf("got latest %+v, %v, want tx %s", latest, err, got.TxID)
		}
	})
	t.Run("ErrRejectedIsNotRetried", func(t *testing.T) {
		var recorded int
		_, err := c.Anchor(ctx, sign(1, root(2)), nil, func(string) error { recorded++; return nil })
		var ee *client.EndorseError
		if !errors.As(err, &ee) {
			t.Fatalf("got %v, want an EndorseError", err)
		}
		if recorded != 1 {
			t.Errorf("got %d transactions, want 1: a rejection is a verdict", recorded)
		}
	})
	t.Run("ErrRecordTxIDStopsSubmit", func(t *testing.T) {
		_, err := c.Anchor(ctx, sign(5, root(5)), [][]byte{root(9)}, func(string) error { return errors.New("disk full") })
		if err == nil {
			t.Fatal("got no error, want the record failure")
		}
		if latest, _ := c.LatestAnchor(ctx, origin); latest == nil || latest.Size != 1 {
			t.Errorf("got latest %+v, want size 1 still: nothing may be submitted unrecorded", latest)
		}
	})
	t.Run("NotFoundIsNil", func(t *testing.T) {
		if a, err := c.GetAnchor(ctx, origin, 99); a != nil || err != nil {
			t.Errorf("got %+v, %v, want nil, nil", a, err)
		}
		if lg, err := c.Log(ctx, "nobody.example/log"); lg != nil || err != nil {
			t.Errorf("got %+v, %v, want nil, nil", lg, err)
		}
	})
}

func TestUnavailable(t *testing.T) {
	n := mustDevnet(t)
	c := mustClient(t, n, "client", func(cfg *fabric.Config) { cfg.Retries = 1 })
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := c.LatestAnchor(context.Background(), "down.example/log")
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("got code %v (%v), want Unavailable after the retries", got, err)
	}
}

func TestListenAnchoredResumesFromCheckpoint(t *testing.T) {
	n := mustDevnet(t)
	c := mustClient(t, n, "admin", nil)
	ctx := context.Background()
	origin, sign := mustRegisteredLog(t, c)
	first, err := c.Anchor(ctx, sign(1, root(1)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cpFile := filepath.Join(t.TempDir(), "events.json")
	// listen returns this origin's events up to the one for tx last. With
	// ack, that event is acknowledged (checkpointed); without, the handler
	// fails on it, so it is not.
	listen := func(last string, ack bool) []fabric.AnchoredEvent {
		t.Helper()
		cp, err := client.NewFileCheckpointer(cpFile)
		if err != nil {
			t.Fatal(err)
		}
		defer cp.Close()
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var got []fabric.AnchoredEvent
		stop := errors.New("stop")
		err = c.ListenAnchored(lctx, cp, func(_ context.Context, ev fabric.AnchoredEvent) error {
			if ev.Origin != origin || lctx.Err() != nil {
				return nil
			}
			got = append(got, ev)
			if ev.TxID != last {
				return nil
			}
			if !ack {
				return stop
			}
			cancel()
			return nil
		})
		if ack && err != nil || !ack && !errors.Is(err, stop) {
			t.Fatalf("listen: got %v, want the listener stopped by its handler", err)
		}
		return got
	}
	txIDs := func(evs []fabric.AnchoredEvent) (out []string) {
		for _, ev := range evs {
			out = append(out, fmt.Sprintf("%s@%d", ev.TxID, ev.BlockNumber))
		}
		return out
	}
	want1 := fmt.Sprintf("%s@%d", first.TxID, first.BlockNumber)
	t.Run("FromBlockZero", func(t *testing.T) {
		if got := txIDs(listen(first.TxID, false)); !slices.Equal(got, []string{want1}) {
			t.Errorf("got events %v, want %v", got, want1)
		}
	})
	t.Run("UnacknowledgedIsRedelivered", func(t *testing.T) {
		if got := txIDs(listen(first.TxID, true)); !slices.Equal(got, []string{want1}) {
			t.Errorf("got events %v, want %v again", got, want1)
		}
	})
	t.Run("AcknowledgedIsSkipped", func(t *testing.T) {
		// A tree of size 2 whose first leaf hash is root(1) extends size 1.
		leaf := root(7)
		second, err := c.Anchor(ctx, sign(2, rfc6962.DefaultHasher.HashChildren(root(1), leaf)), [][]byte{leaf}, nil)
		if err != nil {
			t.Fatalf("anchor size 2: %v", err)
		}
		want2 := fmt.Sprintf("%s@%d", second.TxID, second.BlockNumber)
		if got := txIDs(listen(second.TxID, true)); !slices.Equal(got, []string{want2}) {
			t.Errorf("got events %v, want only %v", got, want2)
		}
	})
}

func TestSubmitRetriesMVCCConflictWithANewTransaction(t *testing.T) {
	// Blocks are cut only when two transactions are pending, so two
	// concurrent submissions always land in one block, both endorsed
	// against the same state: the second is invalidated by MVCC.
	cc, err := chaincode.New()
	if err != nil {
		t.Fatal(err)
	}
	n := devnettest.MustStartConfig(t, devnet.Config{Dir: t.TempDir(), BatchMaxCount: 2, BatchTimeout: time.Hour},
		devnet.Chaincode{Name: "anchor", Policy: devnet.MajorityPolicy(devnet.DefaultOrgs), CC: cc})
	retry := func(c *fabric.Config) { c.Retries = 2 }
	c1, c2 := mustClient(t, n, "admin", retry), mustClient(t, n, "admin", retry)
	ctx := context.Background()

	type outcome struct {
		txIDs []string
		res   *fabric.Anchored
		err   error
	}
	both := func(f1, f2 func(record func(string) error) (*fabric.Anchored, error)) [2]outcome {
		var out [2]outcome
		var wg sync.WaitGroup
		for i, f := range []func(func(string) error) (*fabric.Anchored, error){f1, f2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i].res, out[i].err = f(func(id string) error { out[i].txIDs = append(out[i].txIDs, id); return nil })
			}()
		}
		wg.Wait()
		return out
	}
	// Two registrations fill the first block.
	origin := "mvcc.example/log"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := note.GenerateKey(rand.Reader, "other.example/log")
	if err != nil {
		t.Fatal(err)
	}
	reg := both(
		func(func(string) error) (*fabric.Anchored, error) { return nil, c1.RegisterLog(ctx, origin, vkey) },
		func(func(string) error) (*fabric.Anchored, error) {
			return nil, c2.RegisterLog(ctx, "other.example/log", otherKey)
		},
	)
	if reg[0].err != nil || reg[1].err != nil {
		t.Fatalf("register: %v, %v", reg[0].err, reg[1].err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: origin, Size: 1, Hash: root(1)}.Marshal())}, s)
	if err != nil {
		t.Fatal(err)
	}
	got := both(
		func(rec func(string) error) (*fabric.Anchored, error) { return c1.Anchor(ctx, cp, nil, rec) },
		func(rec func(string) error) (*fabric.Anchored, error) { return c2.Anchor(ctx, cp, nil, rec) },
	)
	won, lost := got[0], got[1]
	if won.err != nil {
		won, lost = lost, won
	}
	if won.err != nil || len(won.txIDs) != 1 {
		t.Fatalf("got winner %v with transactions %v, want one committed transaction", won.err, won.txIDs)
	}
	// The loser's first transaction was invalidated; its retry is a new
	// transaction, which the chaincode now refuses as already anchored.
	if len(lost.txIDs) != 2 || lost.txIDs[0] == lost.txIDs[1] {
		t.Errorf("got loser transactions %v, want two distinct: the invalidated one and its retry", lost.txIDs)
	}
	if lost.err == nil || !strings.Contains(lost.err.Error(), "already anchored") {
		t.Errorf("got loser error %v, want the retry refused as already anchored", lost.err)
	}
	st, err := c1.TransactionStatus(ctx, lost.txIDs[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != peer.TxValidationCode_MVCC_READ_CONFLICT {
		t.Errorf("got first loser transaction %s, want MVCC_READ_CONFLICT", st.Code)
	}
}

// lagGateway stands in front of a devnet's gateway and answers the first
// Endorse as Fabric's gateway does when a second organization's peer
// disagreed with the first (it had not yet committed the block the first
// one read); everything else it forwards.
type lagGateway struct {
	gateway.UnimplementedGatewayServer
	next    gateway.GatewayClient
	mu      sync.Mutex
	refused int
}

func (g *lagGateway) Endorse(ctx context.Context, req *gateway.EndorseRequest) (*gateway.EndorseResponse, error) {
	g.mu.Lock()
	first := g.refused == 0
	if first {
		g.refused++
	}
	g.mu.Unlock()
	if first {
		return nil, status.Error(codes.Aborted, "failed to collect enough transaction endorsements, see attached details for more info")
	}
	return g.next.Endorse(ctx, req)
}

func (g *lagGateway) Submit(ctx context.Context, req *gateway.SubmitRequest) (*gateway.SubmitResponse, error) {
	return g.next.Submit(ctx, req)
}

func (g *lagGateway) Evaluate(ctx context.Context, req *gateway.EvaluateRequest) (*gateway.EvaluateResponse, error) {
	return g.next.Evaluate(ctx, req)
}

func (g *lagGateway) CommitStatus(ctx context.Context, req *gateway.SignedCommitStatusRequest) (*gateway.CommitStatusResponse, error) {
	return g.next.CommitStatus(ctx, req)
}

func TestSubmitReendorsesWhenAnotherPeerLags(t *testing.T) {
	n := mustDevnet(t)
	lag := &lagGateway{next: gateway.NewGatewayClient(devnettest.MustConn(t, n))}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	gateway.RegisterGatewayServer(srv, lag)
	go srv.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(srv.Stop)
	c := mustClient(t, n, "admin", func(cfg *fabric.Config) { cfg.Endpoint, cfg.Insecure = lis.Addr().String(), true })
	_, vkey, err := note.GenerateKey(rand.Reader, "lag.example/log")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterLog(context.Background(), "lag.example/log", vkey); err != nil {
		t.Fatalf("register through a lagging peer: %v", err)
	}
	lag.mu.Lock()
	refused := lag.refused
	lag.mu.Unlock()
	if refused != 1 {
		t.Fatalf("the gateway refused %d endorsements, want 1", refused)
	}
	if lg, err := c.Log(context.Background(), "lag.example/log"); err != nil || lg == nil {
		t.Errorf("log after the re-endorsed registration: %v, %v", lg, err)
	}
	t.Run("ErrNotRetriedWithoutRetries", func(t *testing.T) {
		lag.mu.Lock()
		lag.refused = 0
		lag.mu.Unlock()
		c := mustClient(t, n, "admin", func(cfg *fabric.Config) { cfg.Endpoint, cfg.Insecure, cfg.Retries = lis.Addr().String(), true, 0 })
		_, vkey, _ := note.GenerateKey(rand.Reader, "lag2.example/log")
		if err := c.RegisterLog(context.Background(), "lag2.example/log", vkey); status.Code(err) != codes.Aborted {
			t.Errorf("got %v, want the Aborted endorsement reported", err)
		}
	})
}
