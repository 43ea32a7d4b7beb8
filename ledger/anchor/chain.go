package anchor

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/verify"
)

// errCaughtUp stops the event listener once the latest anchor is read.
var errCaughtUp = errors.New("caught up with the latest anchor")

// ReadChain reads what the chain holds for origin: the key it registers
// and every anchor, from the Anchored events since block 0 up to the
// latest anchor (LatestAnchor). The chaincode records which anchor each
// one extends, so the events must link from size 0 to the latest without a
// gap; otherwise the chain was not read completely and ReadChain fails. It
// is the reference `tani verify` holds the journal to: what the database
// says was anchored plays no part in it.
func ReadChain(ctx context.Context, fc *fabric.Client, origin string) (*ledger.Chain, error) {
	lg, err := fc.Log(ctx, origin)
	if err != nil {
		return nil, fmt.Errorf("read chain: registration of %s: %w", origin, err)
	}
	c := &ledger.Chain{
		Channel: fc.Channel(), Chaincode: fc.Chaincode(),
		AnchorAt: func(ctx context.Context, size int64) (*ledger.ChainAnchor, error) {
			return anchorAt(ctx, fc, origin, size)
		},
	}
	if lg != nil {
		c.PublicKey = lg.PublicKey
	}
	latest, err := fc.LatestAnchor(ctx, origin)
	if err != nil {
		return nil, fmt.Errorf("read chain: latest anchor of %s: %w", origin, err)
	}
	if latest == nil {
		return c, nil
	}
	var events []fabric.AnchoredEvent
	err = fc.ListenAnchored(ctx, &memCheckpointer{}, func(_ context.Context, ev fabric.AnchoredEvent) error {
		if ev.Origin != origin {
			return nil
		}
		events = append(events, ev)
		if ev.TxID == latest.TxID {
			return errCaughtUp
		}
		return nil
	})
	switch {
	case errors.Is(err, errCaughtUp):
	case err == nil:
		return nil, fmt.Errorf("read chain: Anchored events of %s up to size %d: %w", origin, latest.Size, context.Cause(ctx))
	default:
		return nil, fmt.Errorf("read chain: Anchored events of %s up to size %d: %w", origin, latest.Size, err)
	}
	prev := uint64(0)
	for _, ev := range events {
		if ev.PreviousSize != prev {
			return nil, fmt.Errorf("read chain: the anchor of %s at size %d (tx %s) extends size %d, but the anchor before it in the chain's events is at size %d",
				origin, ev.Size, ev.TxID, ev.PreviousSize, prev)
		}
		a, err := chainAnchor(fc, ev.Anchor, ev.BlockNumber)
		if err != nil {
			return nil, err
		}
		c.Anchors = append(c.Anchors, *a)
		prev = ev.Size
	}
	if last := events[len(events)-1]; last.Size != latest.Size || last.Root != latest.Root {
		return nil, fmt.Errorf("read chain: the latest anchor of %s is size %d root %s, but its event says size %d root %s",
			origin, latest.Size, latest.Root, last.Size, last.Root)
	}
	return c, nil
}

// anchorAt reads the chain's anchor of origin at size and the block that
// committed it, or nil when the chain holds none.
func anchorAt(ctx context.Context, fc *fabric.Client, origin string, size int64) (*ledger.ChainAnchor, error) {
	on, err := fc.GetAnchor(ctx, origin, uint64(size))
	if err != nil || on == nil {
		return nil, err
	}
	st, err := fc.TransactionStatus(ctx, on.TxID)
	if err != nil {
		return nil, fmt.Errorf("status of tx %s: %w", on.TxID, err)
	}
	return chainAnchor(fc, *on, st.BlockNumber)
}

func chainAnchor(fc *fabric.Client, on chaincode.Anchor, block uint64) (*ledger.ChainAnchor, error) {
	root, err := base64.StdEncoding.DecodeString(on.Root)
	if err != nil || len(root) != tlog.HashSize {
		return nil, fmt.Errorf("read chain: anchor of %s at size %d has root %q, not a base64 SHA-256 hash", on.Origin, on.Size, on.Root)
	}
	return &ledger.ChainAnchor{
		Size: int64(on.Size), Root: tlog.Hash(root), Note: []byte(on.Checkpoint), PreviousSize: int64(on.PreviousSize),
		Ref: verify.Anchor{Channel: fc.Channel(), Chaincode: fc.Chaincode(), TxID: on.TxID, BlockNumber: block},
	}, nil
}
