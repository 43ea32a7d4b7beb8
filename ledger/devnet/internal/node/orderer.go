package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/devnet/internal/blockstore"
)

// orderer cuts submitted envelopes into blocks by count, preferred size or
// timeout, the way Fabric's block cutter does, and hands each block to the
// committer in order.
type orderer struct {
	n      *Node
	in     chan []byte
	blocks chan *cb.Block

	mu     sync.RWMutex
	closed bool

	cutDone    chan struct{}
	commitDone chan struct{}
	commitErr  error

	// number and prevHash describe the next block to cut.
	number   uint64
	prevHash []byte
}

func newOrderer(n *Node, last *cb.BlockHeader) *orderer {
	o := &orderer{
		n: n, in: make(chan []byte, 4*n.cfg.BatchMaxCount+1024), blocks: make(chan *cb.Block, 4),
		cutDone: make(chan struct{}), commitDone: make(chan struct{}),
		number: last.Number + 1, prevHash: blockstore.HeaderHash(last),
	}
	go o.cut()
	go o.commit()
	return o
}

// broadcast queues an envelope; it blocks when the queue is full, which is
// the devnet's back-pressure.
func (o *orderer) broadcast(ctx context.Context, env []byte) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return errClosed
	}
	select {
	case o.in <- env:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *orderer) cut() {
	defer close(o.cutDone)
	defer close(o.blocks)
	cfg := o.n.cfg
	var batch [][]byte
	size := 0
	var timer *time.Timer
	var timeout <-chan time.Time
	flush := func() {
		if timer != nil {
			timer.Stop()
			timer, timeout = nil, nil
		}
		if len(batch) == 0 {
			return
		}
		o.blocks <- o.newBlock(batch)
		batch, size = nil, 0
	}
	for {
		select {
		case env, ok := <-o.in:
			if !ok {
				flush()
				return
			}
			// A message that would overflow the preferred size goes in a
			// block of its own batch, as in Fabric's block cutter.
			if len(batch) > 0 && size+len(env) > cfg.BatchPreferredBytes {
				flush()
			}
			batch = append(batch, env)
			size += len(env)
			if len(batch) >= cfg.BatchMaxCount || size >= cfg.BatchPreferredBytes {
				flush()
				continue
			}
			if timer == nil {
				timer = time.NewTimer(cfg.BatchTimeout)
				timeout = timer.C
			}
		case <-timeout:
			timer, timeout = nil, nil
			flush()
		}
	}
}

// newBlock builds and signs the next block. The orderer's signature covers
// the SIGNATURES metadata value, the signature header and the block header.
func (o *orderer) newBlock(data [][]byte) *cb.Block {
	b := &cb.Block{
		Header:   &cb.BlockHeader{Number: o.number, PreviousHash: o.prevHash},
		Data:     &cb.BlockData{Data: data},
		Metadata: &cb.BlockMetadata{Metadata: make([][]byte, len(cb.BlockMetadataIndex_name))},
	}
	b.Header.DataHash = blockstore.DataHash(b.Data)
	o.number++
	o.prevHash = blockstore.HeaderHash(b.Header)
	if err := o.sign(b); err != nil {
		// Signing only fails if crypto/rand fails; the block is still
		// valid for a peer, which does not check orderer signatures here.
		o.n.log.Error("sign block", "block", b.Header.Number, "error", err)
	}
	return b
}

func (o *orderer) sign(b *cb.Block) error {
	value, err := proto.Marshal(&cb.OrdererBlockMetadata{LastConfig: &cb.LastConfig{Index: 0}})
	if err != nil {
		return err
	}
	nonce := make([]byte, 24)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	shdr, err := proto.Marshal(&cb.SignatureHeader{Creator: o.n.cfg.Orderer.Node.Serialized, Nonce: nonce})
	if err != nil {
		return err
	}
	msg := append(append(append([]byte(nil), value...), shdr...), blockstore.HeaderBytes(b.Header)...)
	sig, err := o.n.cfg.Orderer.Node.Sign(msg)
	if err != nil {
		return err
	}
	md, err := proto.Marshal(&cb.Metadata{Value: value, Signatures: []*cb.MetadataSignature{{SignatureHeader: shdr, Signature: sig}}})
	if err != nil {
		return err
	}
	b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = md
	lc, err := proto.Marshal(&cb.LastConfig{Index: 0})
	if err != nil {
		return err
	}
	if b.Metadata.Metadata[cb.BlockMetadataIndex_LAST_CONFIG], err = proto.Marshal(&cb.Metadata{Value: lc}); err != nil {
		return err
	}
	return nil
}

func (o *orderer) commit() {
	defer close(o.commitDone)
	for b := range o.blocks {
		if err := o.n.commitBlock(b); err != nil {
			// A block that cannot be stored halts the chain, as a peer
			// would; later submissions fail at CommitStatus time.
			o.n.log.Error("commit block failed; chain halted", "block", b.Header.Number, "error", err)
			o.commitErr = fmt.Errorf("commit block %d: %w", b.Header.Number, err)
			for range o.blocks {
			}
			return
		}
	}
}

// close stops intake, cuts the pending batch and waits for it to commit.
func (o *orderer) close(ctx context.Context) error {
	o.mu.Lock()
	if !o.closed {
		o.closed = true
		close(o.in)
	}
	o.mu.Unlock()
	select {
	case <-o.commitDone:
		return o.commitErr
	case <-ctx.Done():
		return fmt.Errorf("wait for pending blocks: %w", ctx.Err())
	}
}
