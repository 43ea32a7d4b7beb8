package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"

	"github.com/tani-platform/tani/ledger/devnet/internal/blockstore"
	"github.com/tani-platform/tani/ledger/devnet/internal/ccrun"
	"github.com/tani-platform/tani/ledger/devnet/internal/policy"
	"github.com/tani-platform/tani/ledger/devnet/internal/statedb"
	"github.com/tani-platform/tani/ledger/fabric/msp"
)

// Chaincode is a contract hosted on every peer of the channel.
type Chaincode struct {
	Name   string
	Policy *policy.Policy
	CC     shim.Chaincode
}

// Config configures a Node. Orgs[0] is the organization of the gateway peer.
type Config struct {
	Channel             string
	Orgs                []*msp.Org
	Orderer             *msp.Org
	Chaincodes          []Chaincode
	BatchTimeout        time.Duration
	BatchMaxCount       int
	BatchPreferredBytes int
}

type txInfo struct {
	block uint64
	code  peer.TxValidationCode
}

// Node is the running peer-and-orderer.
type Node struct {
	cfg        Config
	log        *slog.Logger
	msps       *msp.Manager
	store      *blockstore.Store
	db         *statedb.DB
	endorsers  map[string]*endorser
	chaincodes map[string]Chaincode
	orgNames   []string

	mu     sync.Mutex
	txs    map[string]txInfo
	height uint64
	newBlk chan struct{} // closed and replaced after every commit

	ord *orderer
}

// New opens the chain in store (creating block 0 when it is empty),
// rebuilds state from it and starts the chaincodes and the orderer.
func New(ctx context.Context, cfg Config, store *blockstore.Store, log *slog.Logger) (*Node, error) {
	trust := map[string][]*x509.Certificate{}
	for _, o := range append(append([]*msp.Org(nil), cfg.Orgs...), cfg.Orderer) {
		trust[o.MSPID] = append(trust[o.MSPID], o.CACert)
	}
	n := &Node{
		cfg: cfg, log: log, msps: msp.NewManager(trust), store: store, db: statedb.New(),
		endorsers: map[string]*endorser{}, chaincodes: map[string]Chaincode{},
		txs: map[string]txInfo{}, newBlk: make(chan struct{}),
	}
	for _, c := range cfg.Chaincodes {
		n.chaincodes[c.Name] = c
	}
	if store.Height() == 0 {
		g, err := genesisBlock(cfg)
		if err != nil {
			return nil, err
		}
		if err := store.Append(g); err != nil {
			return nil, fmt.Errorf("store genesis block: %w", err)
		}
	}
	if err := n.replay(); err != nil {
		return nil, err
	}
	for _, o := range cfg.Orgs {
		n.orgNames = append(n.orgNames, o.MSPID)
		e := &endorser{n: n, org: o, runtimes: map[string]*ccrun.Runtime{}}
		for _, c := range cfg.Chaincodes {
			rt, err := ccrun.Start(ctx, c.Name, c.CC, log.With("peer", o.MSPID))
			if err != nil {
				n.closeRuntimes()
				return nil, fmt.Errorf("start chaincode %s on %s peer: %w", c.Name, o.MSPID, err)
			}
			e.runtimes[c.Name] = rt
		}
		n.endorsers[o.MSPID] = e
	}
	last, err := store.Block(store.Height() - 1)
	if err != nil {
		n.closeRuntimes()
		return nil, err
	}
	n.ord = newOrderer(n, last.Header)
	return n, nil
}

// Register adds the Gateway and Deliver services to srv.
func (n *Node) Register(srv *grpc.Server) {
	gateway.RegisterGatewayServer(srv, &gatewayServer{n: n})
	peer.RegisterDeliverServer(srv, &deliverServer{n: n})
}

// Close stops accepting transactions, cuts and commits what is pending, and
// stops the chaincodes. It does not close the block store.
func (n *Node) Close(ctx context.Context) error {
	err := n.ord.close(ctx)
	n.closeRuntimes()
	return err
}

func (n *Node) closeRuntimes() {
	for _, e := range n.endorsers {
		for _, rt := range e.runtimes {
			rt.Close()
		}
	}
}

// Height is the number of committed blocks.
func (n *Node) Height() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.height
}

func (n *Node) txStatus(txID string) (txInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.txs[txID]
	return t, ok
}

// waitTx blocks until txID is committed or ctx ends.
func (n *Node) waitTx(ctx context.Context, txID string) (txInfo, error) {
	for {
		n.mu.Lock()
		t, ok := n.txs[txID]
		ch := n.newBlk
		n.mu.Unlock()
		if ok {
			return t, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return txInfo{}, ctx.Err()
		}
	}
}

// waitBlock blocks until block num is committed and returns it.
func (n *Node) waitBlock(ctx context.Context, num uint64) (*cb.Block, error) {
	for {
		n.mu.Lock()
		h, ch := n.height, n.newBlk
		n.mu.Unlock()
		if num < h {
			return n.store.Block(num)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// replay rebuilds the TxID index and world state from the stored blocks,
// applying the write sets of transactions their filters mark valid.
func (n *Node) replay() error {
	h := n.store.Height()
	for i := uint64(0); i < h; i++ {
		b, err := n.store.Block(i)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		filter := b.GetMetadata().GetMetadata()[cb.BlockMetadataIndex_TRANSACTIONS_FILTER]
		if len(filter) != len(b.GetData().GetData()) {
			return fmt.Errorf("replay block %d: transactions filter has %d entries for %d transactions", i, len(filter), len(b.GetData().GetData()))
		}
		for t, env := range b.GetData().GetData() {
			tx, err := parseEnvelope(env)
			if err != nil {
				if i == 0 {
					continue // the config transaction
				}
				return fmt.Errorf("replay block %d tx %d: %w", i, t, err)
			}
			code := peer.TxValidationCode(filter[t])
			if _, seen := n.txs[tx.chdr.TxId]; !seen && tx.chdr.TxId != "" {
				n.txs[tx.chdr.TxId] = txInfo{block: i, code: code}
			}
			if code != peer.TxValidationCode_VALID || tx.action == nil {
				continue
			}
			writes, err := tx.writes()
			if err != nil {
				return fmt.Errorf("replay block %d tx %d: %w", i, t, err)
			}
			n.db.Apply(writes, statedb.Version{BlockNum: i, TxNum: uint64(t)})
		}
		n.height = i + 1
	}
	return nil
}

var errClosed = errors.New("devnet is stopping")
