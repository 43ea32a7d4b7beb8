package ledger

import (
	"context"
	"encoding/base64"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/ledger/verify"
)

// Chain is what the anchor chaincode holds for the journal's origin, read
// from the chain itself (ledger/anchor.ReadChain). An audit given a Chain
// takes it as the reference: the stored journal must extend every anchor in
// it, whatever ledger.checkpoints says was anchored. Package ledger never
// reaches the network; the caller that knows it fills this in.
type Chain struct {
	// Channel and Chaincode name where the anchors were read.
	Channel   string
	Chaincode string
	// PublicKey is the note verifier key the chain registers for the
	// origin, or empty when the origin is not registered.
	PublicKey string
	// Anchors is every anchor of the origin, in size order, each proven by
	// the chaincode to extend the one before.
	Anchors []ChainAnchor
	// AnchorAt, when set, looks up the anchor of size on the chain, or nil
	// when the chain holds none: checkpoints anchored after Anchors was
	// read are found with it instead of being reported as unknown.
	AnchorAt func(ctx context.Context, size int64) (*ChainAnchor, error)
}

// ChainAnchor is one checkpoint the anchor chaincode accepted.
type ChainAnchor struct {
	Size int64
	Root tlog.Hash
	// Note is the signed checkpoint note exactly as it was anchored.
	Note []byte
	// PreviousSize is the anchor this one was proven to extend (0 for the
	// first).
	PreviousSize int64
	// Ref is where the chain holds it: channel, chaincode, transaction and
	// block, as ledger.checkpoints.anchor must record it.
	Ref verify.Anchor
}

// Latest is the largest anchored size, or 0 when the chain holds none.
func (c *Chain) Latest() int64 {
	if len(c.Anchors) == 0 {
		return 0
	}
	return c.Anchors[len(c.Anchors)-1].Size
}

func (a *ChainAnchor) String() string {
	return fmt.Sprintf("size %d root %s (anchored on the chain in tx %s, block %d)", a.Size, b64(a.Root[:]), a.Ref.TxID, a.Ref.BlockNumber)
}

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }
