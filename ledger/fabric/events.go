package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hyperledger/fabric-gateway/pkg/client"

	"github.com/tani-platform/tani/ledger/chaincode"
)

// Checkpointer keeps the Anchored-event listener's position across restarts.
// The fabric-gateway client's *client.FileCheckpointer satisfies it.
type Checkpointer interface {
	client.Checkpoint
	CheckpointTransaction(blockNumber uint64, transactionID string) error
}

// AnchoredEvent is one Anchored chaincode event: the checkpoint the chain
// accepted, the transaction and the block that committed it.
type AnchoredEvent struct {
	chaincode.Anchor
	BlockNumber uint64
}

// ErrStreamClosed is returned by ListenAnchored when the peer ends the event
// stream (it went away); the caller reconnects from its checkpoint.
var ErrStreamClosed = errors.New("fabric: chaincode event stream closed")

// ListenAnchored delivers every Anchored event after cp's position to handle,
// in chain order, and advances cp after handle returns nil, so that each
// event is handled at least once across restarts. With an empty checkpoint
// it starts at block 0. It returns nil when ctx is done, handle's error, or
// ErrStreamClosed.
func (c *Client) ListenAnchored(ctx context.Context, cp Checkpointer, handle func(context.Context, AnchoredEvent) error) error {
	return c.ListenEvents(ctx, cp, func(ctx context.Context, ev *client.ChaincodeEvent) error {
		if ev.EventName != chaincode.AnchoredEvent {
			return nil
		}
		a := AnchoredEvent{BlockNumber: ev.BlockNumber}
		if err := json.Unmarshal(ev.Payload, &a.Anchor); err != nil {
			return fmt.Errorf("fabric: decode Anchored event of tx %s: %w", ev.TransactionID, err)
		}
		if a.TxID != ev.TransactionID {
			return fmt.Errorf("fabric: Anchored event of tx %s names tx %s", ev.TransactionID, a.TxID)
		}
		return handle(ctx, a)
	})
}

// ListenEvents delivers every chaincode event of the configured chaincode
// after cp's position to handle, in chain order, and advances cp after
// handle returns nil (a handler that commits the checkpoint itself, in the
// same transaction as its effect, may make CheckpointTransaction a no-op).
// With an empty checkpoint it starts at block 0. It returns nil when ctx is
// done, handle's error, or ErrStreamClosed.
func (c *Client) ListenEvents(ctx context.Context, cp Checkpointer, handle func(context.Context, *client.ChaincodeEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.network.ChaincodeEvents(ctx, c.cfg.Chaincode, client.WithStartBlock(0), client.WithCheckpoint(cp))
	if err != nil {
		return fmt.Errorf("fabric: listen to %s events: %w", c.cfg.Chaincode, err)
	}
	for {
		var ev *client.ChaincodeEvent
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case ev, ok = <-events:
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return ErrStreamClosed
		}
		if err := handle(ctx, ev); err != nil {
			return err
		}
		if err := cp.CheckpointTransaction(ev.BlockNumber, ev.TransactionID); err != nil {
			return fmt.Errorf("fabric: checkpoint event listener at block %d: %w", ev.BlockNumber, err)
		}
	}
}
