package anchor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// twoOfThree is the endorsement policy of the tests: any two of the three
// organizations must run the verification and agree.
var twoOfThree = devnet.MajorityPolicy(devnet.DefaultOrgs)

func anchorChaincode(t *testing.T) devnet.Chaincode {
	t.Helper()
	cc, err := chaincode.New()
	if err != nil {
		t.Fatal(err)
	}
	return devnet.Chaincode{Name: "anchor", Policy: twoOfThree, CC: cc}
}

func mustClient(t *testing.T, n *devnet.Network, edit func(*fabric.Config)) *fabric.Client {
	t.Helper()
	id, err := n.Identity("TaniMSP", "admin")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fabric.DevnetConfig(n.ConnectionInfo(), id, "anchor")
	if edit != nil {
		edit(&cfg)
	}
	c, err := fabric.Dial(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type fixture struct {
	j    *ledger.Journal
	pool *pgxpool.Pool
	fc   *fabric.Client
	a    *anchor.Anchorer
	recs int
}

func newFixture(t *testing.T, n *devnet.Network, edit func(*fabric.Config)) *fixture {
	t.Helper()
	j, pool := ledgertest.MustJournalPool(t)
	fc := mustClient(t, n, edit)
	a := anchor.New(anchor.Config{}, j, fc, slog.New(slog.DiscardHandler))
	if err := a.Register(context.Background()); err != nil {
		t.Fatalf("register: %v", err)
	}
	return &fixture{j: j, pool: pool, fc: fc, a: a}
}

// grow appends n revisions and signs a checkpoint; it returns its size.
func (f *fixture) grow(t *testing.T, n int) int64 {
	t.Helper()
	ctx := context.Background()
	for range n {
		f.recs++
		id := fmt.Sprintf("rec-%d", f.recs)
		if _, err := f.j.Append(ctx, ledger.Revision{RecordID: id, Kind: "plot.mapped", Revision: 1, Payload: []byte(`{"n":1}`),
			OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), SignatureRef: "device:" + id}); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := f.j.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

func (f *fixture) checkpoint(t *testing.T, size int64) *ledger.Checkpoint {
	t.Helper()
	cp, err := f.j.CheckpointAt(context.Background(), size)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// wantChain checks that the chain holds sizes in this order, each proven to
// extend the one before, and that the journal recorded each one's tx and
// block.
func (f *fixture) wantChain(t *testing.T, sizes ...int64) {
	t.Helper()
	f.wantChainOn(t, "tani", sizes...)
}

func (f *fixture) wantChainOn(t *testing.T, channel string, sizes ...int64) {
	t.Helper()
	ctx := context.Background()
	origin := f.j.Verifier().Name()
	prev, prevBlock := uint64(0), uint64(0)
	for _, size := range sizes {
		on, err := f.fc.GetAnchor(ctx, origin, uint64(size))
		if err != nil || on == nil {
			t.Fatalf("chain anchor at %d: got %+v, %v", size, on, err)
		}
		cp := f.checkpoint(t, size)
		if cp.Anchor == nil || cp.Anchor.TxID != on.TxID || cp.Anchor.Channel != channel || cp.Anchor.Chaincode != f.fc.Chaincode() {
			t.Fatalf("checkpoint %d: got recorded anchor %+v, want tx %s on %s/%s", size, cp.Anchor, on.TxID, channel, f.fc.Chaincode())
		}
		if on.PreviousSize != prev {
			t.Errorf("size %d: got anchored after size %d, want after %d", size, on.PreviousSize, prev)
		}
		if cp.Anchor.BlockNumber < prevBlock {
			t.Errorf("size %d: got block %d, before the previous anchor's block %d", size, cp.Anchor.BlockNumber, prevBlock)
		}
		prev, prevBlock = uint64(size), cp.Anchor.BlockNumber
	}
}

func TestAnchorEndToEnd(t *testing.T) {
	ctx := context.Background()
	n := devnettest.MustStart(t, anchorChaincode(t))
	f := newFixture(t, n, nil)
	s1 := f.grow(t, 3)
	s2 := f.grow(t, 4)

	got, err := f.a.AnchorPending(ctx)
	if err != nil || got != 2 {
		t.Fatalf("AnchorPending: got %d, %v, want 2 anchored", got, err)
	}
	f.wantChain(t, s1, s2)

	t.Run("NothingPendingIsNoop", func(t *testing.T) {
		if got, err := f.a.AnchorPending(ctx); err != nil || got != 0 {
			t.Errorf("got %d, %v, want 0, nil", got, err)
		}
	})
	t.Run("ReceiptAnchorVerifies", func(t *testing.T) {
		r, err := f.j.Receipt(ctx, "rec-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Anchor == nil {
			t.Fatal("got a receipt without an anchor, want the checkpoint's")
		}
		res, on, err := anchor.VerifyReceipt(ctx, f.fc, r, f.j.Verifier())
		if err != nil {
			t.Fatalf("VerifyReceipt: %v", err)
		}
		if res.LeafIndex != 0 || *on != *r.Anchor {
			t.Errorf("got leaf %d anchored at %+v, want leaf 0 at the receipt's %+v", res.LeafIndex, on, r.Anchor)
		}
	})
	t.Run("ErrReceiptAnchorWrongBlock", func(t *testing.T) {
		r, err := f.j.Receipt(ctx, "rec-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		r.Anchor.BlockNumber++
		_, _, err = anchor.VerifyReceipt(ctx, f.fc, r, f.j.Verifier())
		if err == nil || !strings.Contains(err.Error(), "the anchor names block") {
			t.Errorf("got %v, want a block mismatch", err)
		}
	})
	t.Run("ErrReceiptAnchorWrongTx", func(t *testing.T) {
		r, err := f.j.Receipt(ctx, "rec-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		other := f.checkpoint(t, s1).Anchor
		r.Anchor.TxID = other.TxID
		_, _, err = anchor.VerifyReceipt(ctx, f.fc, r, f.j.Verifier())
		if err == nil || !strings.Contains(err.Error(), "the anchor names tx "+other.TxID) {
			t.Errorf("got %v, want a tx mismatch", err)
		}
	})
	t.Run("ReceiptWithoutAnchorFoundOnTheChain", func(t *testing.T) {
		// A receipt issued before its checkpoint was anchored names no
		// anchor; the chain holds the checkpoint now.
		r, err := f.j.ReceiptIn(ctx, "rec-1", 1, s1)
		if err != nil {
			t.Fatal(err)
		}
		want := *r.Anchor
		r.Anchor = nil
		_, on, err := anchor.VerifyReceipt(ctx, f.fc, r, f.j.Verifier())
		if err != nil || on == nil || *on != want {
			t.Errorf("got %+v, %v, want the chain's anchor %+v", on, err, want)
		}
	})
	t.Run("ErrReceiptCheckpointNotOnTheChain", func(t *testing.T) {
		f.grow(t, 1) // signed, not anchored
		r, err := f.j.Receipt(ctx, "rec-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Anchor != nil {
			t.Fatalf("got anchor %+v, want a receipt in an unanchored checkpoint", r.Anchor)
		}
		_, _, err = anchor.VerifyReceipt(ctx, f.fc, r, f.j.Verifier())
		want := fmt.Sprintf("the chain holds no anchor of %s at size %d; the latest anchored size is %d", f.j.Verifier().Name(), r.TreeSize, s2)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	})
	t.Run("ReadChainReadsEveryAnchor", func(t *testing.T) {
		c, err := anchor.ReadChain(ctx, f.fc, f.j.Verifier().Name())
		if err != nil {
			t.Fatal(err)
		}
		if c.PublicKey != f.j.VerifierKey() || c.Channel != "tani" || c.Chaincode != "anchor" {
			t.Errorf("got key %q on %s/%s, want the journal's %q on tani/anchor", c.PublicKey, c.Channel, c.Chaincode, f.j.VerifierKey())
		}
		var got []int64
		for _, a := range c.Anchors {
			got = append(got, a.Size)
			cp := f.checkpoint(t, a.Size)
			if a.Ref != *cp.Anchor || a.Root != cp.Root || string(a.Note) != string(cp.Note) {
				t.Errorf("size %d: got %+v root %x, want the recorded %+v root %x", a.Size, a.Ref, a.Root, *cp.Anchor, cp.Root)
			}
		}
		if want := []int64{s1, s2}; !slices.Equal(got, want) {
			t.Errorf("got anchored sizes %v, want %v", got, want)
		}
	})
	t.Run("AuditChecksEveryAnchor", func(t *testing.T) {
		c, err := anchor.ReadChain(ctx, f.fc, f.j.Verifier().Name())
		if err != nil {
			t.Fatal(err)
		}
		rep, err := f.j.Audit(ctx, ledger.AuditOptions{Chain: c})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Anchors != 2 || rep.ChainAnchors != 2 {
			t.Errorf("got faults %v, %d references matching %d chain anchors, want none, 2 and 2", rep.Faults, rep.Anchors, rep.ChainAnchors)
		}
	})
	t.Run("AuditReportsTamperedAnchor", func(t *testing.T) {
		if _, err := f.pool.Exec(ctx, `UPDATE ledger.checkpoints SET anchor = jsonb_set(anchor, '{block_number}', '999') WHERE size = $1`, s1); err != nil {
			t.Fatal(err)
		}
		c, err := anchor.ReadChain(ctx, f.fc, f.j.Verifier().Name())
		if err != nil {
			t.Fatal(err)
		}
		rep, err := f.j.Audit(ctx, ledger.AuditOptions{Chain: c})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Faults) != 1 || rep.Faults[0].Kind != ledger.FaultAnchorRewritten || rep.Faults[0].Size != s1 {
			t.Errorf("got faults %v, want one rewritten anchor reference at size %d", rep.Faults, s1)
		}
	})
}

func TestAnchorRecordsWhatTheChainHolds(t *testing.T) {
	// A crash between commit and recording leaves the checkpoint unrecorded
	// although the chain has it: the next pass must record it from the
	// chain, not try to anchor it again.
	ctx := context.Background()
	n := devnettest.MustStart(t, anchorChaincode(t))
	f := newFixture(t, n, nil)
	s1 := f.grow(t, 2)
	if _, err := f.a.AnchorPending(ctx); err != nil {
		t.Fatal(err)
	}
	before := *f.checkpoint(t, s1).Anchor
	if _, err := f.pool.Exec(ctx, "UPDATE ledger.checkpoints SET anchor = NULL"); err != nil {
		t.Fatal(err)
	}
	got, err := f.a.AnchorPending(ctx)
	if err != nil || got != 1 {
		t.Fatalf("got %d, %v, want 1 recorded", got, err)
	}
	if after := *f.checkpoint(t, s1).Anchor; after != before {
		t.Errorf("got anchor %+v, want the chain's %+v", after, before)
	}
}

func TestAnchorCatchesUpAfterOutage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := devnettest.MustStartConfig(t, devnet.Config{Dir: dir}, anchorChaincode(t))
	addr := n.Addr()
	f := newFixture(t, n, func(c *fabric.Config) { c.Retries = 6 })
	s1 := f.grow(t, 2)
	if got, err := f.a.AnchorPending(ctx); err != nil || got != 1 {
		t.Fatalf("before the outage: got %d, %v, want 1", got, err)
	}

	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := f.grow(t, 3)
	s3 := f.grow(t, 1)
	downCtx, cancel := context.WithTimeout(ctx, time.Second)
	got, err := f.a.AnchorPending(downCtx)
	cancel()
	if err == nil || got != 0 {
		t.Fatalf("during the outage: got %d, %v, want an error and nothing anchored", got, err)
	}
	if cp := f.checkpoint(t, s2); cp.Anchor != nil {
		t.Fatalf("during the outage: got anchor %+v for checkpoint %d, want none", cp.Anchor, s2)
	}

	// The same network comes back on the same address with its blocks.
	devnettest.MustStartConfig(t, devnet.Config{Dir: dir, Listen: addr}, anchorChaincode(t))
	got, err = f.a.AnchorPending(ctx)
	if err != nil || got != 2 {
		t.Fatalf("after the outage: got %d, %v, want the backlog of 2 anchored", got, err)
	}
	f.wantChain(t, s1, s2, s3)
}

func TestRecordEvent(t *testing.T) {
	// Anchors made elsewhere (another process, or this one before a crash)
	// reach the journal through the Anchored events.
	ctx := context.Background()
	n := devnettest.MustStart(t, anchorChaincode(t))
	f := newFixture(t, n, nil)
	s1, s2 := f.grow(t, 2), f.grow(t, 3)
	if _, err := f.a.AnchorPending(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[int64]verify.Anchor{s1: *f.checkpoint(t, s1).Anchor, s2: *f.checkpoint(t, s2).Anchor}
	if _, err := f.pool.Exec(ctx, "UPDATE ledger.checkpoints SET anchor = NULL"); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cp := new(memCheckpointer)
	err := f.fc.ListenAnchored(lctx, cp, func(ctx context.Context, ev fabric.AnchoredEvent) error {
		if err := f.a.RecordEvent(ctx, ev); err != nil {
			return err
		}
		if ev.Origin == f.j.Verifier().Name() && int64(ev.Size) == s2 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	for size, w := range want {
		if got := f.checkpoint(t, size).Anchor; got == nil || *got != w {
			t.Errorf("checkpoint %d: got anchor %+v from the events, want %+v", size, got, w)
		}
	}
	t.Run("ForeignRootIsNotRecorded", func(t *testing.T) {
		if _, err := f.pool.Exec(ctx, "UPDATE ledger.checkpoints SET anchor = NULL WHERE size = $1", s1); err != nil {
			t.Fatal(err)
		}
		ev := fabric.AnchoredEvent{BlockNumber: 99}
		ev.Origin, ev.Size, ev.Root, ev.TxID = f.j.Verifier().Name(), uint64(s1), "AAAA", "forged-tx"
		if err := f.a.RecordEvent(ctx, ev); err != nil {
			t.Fatalf("got %v, want the mismatch logged, not returned", err)
		}
		if got := f.checkpoint(t, s1).Anchor; got != nil {
			t.Errorf("got anchor %+v recorded from an event with another root, want none", got)
		}
	})
}

// memCheckpointer keeps a listener position in memory.
type memCheckpointer struct{ client.InMemoryCheckpointer }

func (m *memCheckpointer) CheckpointTransaction(block uint64, txID string) error {
	m.InMemoryCheckpointer.CheckpointTransaction(block, txID)
	return nil
}

// TestAnchorHaltsTheJournalOnAFork rewrites the journal's history in the
// database, as someone with write access but without the key would, and
// checks that the anchoring pass halts the journal instead of retrying.
func TestAnchorHaltsTheJournalOnAFork(t *testing.T) {
	ctx := context.Background()
	forge := func(t *testing.T, f *fixture, idx int64) {
		t.Helper()
		var data []byte
		if err := f.pool.QueryRow(ctx, "SELECT data FROM ledger.entries WHERE idx = $1", idx).Scan(&data); err != nil {
			t.Fatal(err)
		}
		ledgertest.MustRewriteLeaf(t, f.pool, idx, []byte(strings.Replace(string(data), "kind plot.mapped", "kind plot.forged", 1)))
	}
	wantHalted := func(t *testing.T, f *fixture, err error, source string) {
		t.Helper()
		var ne *ledger.NotExtensionError
		if !errors.As(err, &ne) || !strings.Contains(ne.Source, source) {
			t.Fatalf("AnchorPending: got %v, want a NotExtensionError from %s", err, source)
		}
		if !errors.As(f.j.Halted(), &ne) {
			t.Fatalf("Halted() = %v, want the fork", f.j.Halted())
		}
		f.appendOne(t)
		if _, err := f.j.SignCheckpoint(ctx); !apperr.Is(err, apperr.Unavailable) {
			t.Errorf("sign checkpoint after the fork: got %v, want unavailable", err)
		}
	}

	t.Run("ErrRewrittenBelowTheAnchor", func(t *testing.T) {
		f := newFixture(t, devnettest.MustStart(t, anchorChaincode(t)), nil)
		f.grow(t, 3)
		s2 := f.grow(t, 4)
		if _, err := f.a.AnchorPending(ctx); err != nil {
			t.Fatal(err)
		}
		forge(t, f, 1)
		_, err := f.a.AnchorPending(ctx)
		wantHalted(t, f, err, "the chain's latest anchor, tx "+f.checkpoint(t, s2).Anchor.TxID)
	})
	t.Run("ErrRewrittenAfterSigningBeforeAnchoring", func(t *testing.T) {
		f := newFixture(t, devnettest.MustStart(t, anchorChaincode(t)), nil)
		s1 := f.grow(t, 3)
		if _, err := f.a.AnchorPending(ctx); err != nil {
			t.Fatal(err)
		}
		s2 := f.grow(t, 4)
		forge(t, f, s1+1) // above the anchor, inside the signed checkpoint s2
		_, err := f.a.AnchorPending(ctx)
		wantHalted(t, f, err, fmt.Sprintf("checkpoint %d, signed with the journal's key", s2))
		latest, err := f.fc.LatestAnchor(ctx, f.j.Verifier().Name())
		if err != nil || latest == nil || latest.Size != uint64(s1) {
			t.Errorf("chain's latest anchor: got %+v, %v, want still size %d", latest, err, s1)
		}
	})
}

// appendOne appends one revision without signing, so that there is a tree to
// sign.
func (f *fixture) appendOne(t *testing.T) {
	t.Helper()
	f.recs++
	id := fmt.Sprintf("rec-%d", f.recs)
	if _, err := f.j.Append(context.Background(), ledger.Revision{RecordID: id, Kind: "plot.mapped", Revision: 1, Payload: []byte(`{"n":1}`),
		OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), SignatureRef: "device:" + id}); err != nil {
		t.Fatal(err)
	}
}
