package ccrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/devnet/internal/statedb"
)

// Invocation is one transaction to simulate.
type Invocation struct {
	ChannelID string
	TxID      string
	Proposal  *peer.SignedProposal
	Input     *peer.ChaincodeInput
	DB        *statedb.DB
}

// Result is the outcome of a simulation.
type Result struct {
	Response *peer.Response
	// Event is the chaincode event, with chaincode ID and TxID filled in as
	// the peer does, or nil.
	Event *peer.ChaincodeEvent
	// RWSet is the marshalled rwset.TxReadWriteSet.
	RWSet []byte
}

type txContext struct {
	sim  *simulation
	done chan *peer.ChaincodeMessage
}

// Runtime is one peer's connection to one chaincode.
type Runtime struct {
	name   string
	log    *slog.Logger
	srv    *grpc.Server
	conn   *grpc.ClientConn
	stream peer.Chaincode_ConnectClient
	cancel context.CancelFunc

	sendMu sync.Mutex
	mu     sync.Mutex
	txs    map[string]*txContext
	err    error // set when the stream ends
	ended  chan struct{}
}

// Start serves cc over an in-memory gRPC connection and completes the
// registration handshake.
func Start(ctx context.Context, name string, cc shim.Chaincode, log *slog.Logger) (*Runtime, error) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	peer.RegisterChaincodeServer(srv, &shim.ChaincodeServer{CCID: name, CC: cc})
	go srv.Serve(lis) //nolint:errcheck // Serve returns when Stop is called.
	conn, err := grpc.NewClient("passthrough:///chaincode-"+name,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("dial chaincode %s: %w", name, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := peer.NewChaincodeClient(conn).Connect(sctx)
	if err != nil {
		cancel()
		conn.Close()
		srv.Stop()
		return nil, fmt.Errorf("connect chaincode %s: %w", name, err)
	}
	r := &Runtime{name: name, log: log, srv: srv, conn: conn, stream: stream, cancel: cancel, txs: map[string]*txContext{}, ended: make(chan struct{})}
	if err := r.handshake(); err != nil {
		r.Close()
		return nil, fmt.Errorf("register chaincode %s: %w", name, err)
	}
	go r.receive()
	return r, nil
}

func (r *Runtime) handshake() error {
	msg, err := r.stream.Recv()
	if err != nil {
		return fmt.Errorf("receive REGISTER: %w", err)
	}
	if msg.Type != peer.ChaincodeMessage_REGISTER {
		return fmt.Errorf("got %s, want REGISTER", msg.Type)
	}
	id := &peer.ChaincodeID{}
	if err := proto.Unmarshal(msg.Payload, id); err != nil {
		return fmt.Errorf("decode chaincode ID: %w", err)
	}
	if id.Name != r.name {
		return fmt.Errorf("chaincode registered as %q, want %q", id.Name, r.name)
	}
	if err := r.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_REGISTERED}); err != nil {
		return err
	}
	params, err := proto.Marshal(&peer.ChaincodeAdditionalParams{UseWriteBatch: true, MaxSizeWriteBatch: 1000, UseGetMultipleKeys: true, MaxSizeGetMultipleKeys: 1000})
	if err != nil {
		return fmt.Errorf("marshal chaincode params: %w", err)
	}
	return r.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_READY, Payload: params})
}

func (r *Runtime) send(m *peer.ChaincodeMessage) error {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	if err := r.stream.Send(m); err != nil {
		return fmt.Errorf("send %s to chaincode %s: %w", m.Type, r.name, err)
	}
	return nil
}

func key(channel, txid string) string { return channel + "\x00" + txid }

// Execute runs one invocation and waits for the chaincode to complete it.
func (r *Runtime) Execute(ctx context.Context, inv Invocation) (*Result, error) {
	tc := &txContext{sim: newSimulation(inv.DB, r.name), done: make(chan *peer.ChaincodeMessage, 1)}
	k := key(inv.ChannelID, inv.TxID)
	r.mu.Lock()
	if r.err != nil {
		r.mu.Unlock()
		return nil, r.err
	}
	if _, dup := r.txs[k]; dup {
		r.mu.Unlock()
		return nil, fmt.Errorf("txid: %s(%s) exists", inv.TxID, inv.ChannelID)
	}
	r.txs[k] = tc
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.txs, k)
		r.mu.Unlock()
	}()

	done := inv.DB.BeginRead()
	defer done()
	payload, err := proto.Marshal(inv.Input)
	if err != nil {
		return nil, fmt.Errorf("marshal chaincode input: %w", err)
	}
	if err := r.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_TRANSACTION, Payload: payload, Txid: inv.TxID, ChannelId: inv.ChannelID, Proposal: inv.Proposal}); err != nil {
		return nil, err
	}
	var msg *peer.ChaincodeMessage
	select {
	case msg = <-tc.done:
	case <-r.ended:
		return nil, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("chaincode %s: %w", r.name, ctx.Err())
	}
	if msg.Type == peer.ChaincodeMessage_ERROR {
		return nil, fmt.Errorf("error in simulation: transaction returned with failure: %s", msg.Payload)
	}
	resp := &peer.Response{}
	if err := proto.Unmarshal(msg.Payload, resp); err != nil {
		return nil, fmt.Errorf("decode chaincode response: %w", err)
	}
	res := &Result{Response: resp}
	if ev := msg.ChaincodeEvent; ev != nil && ev.EventName != "" {
		ev.ChaincodeId, ev.TxId = r.name, inv.TxID
		res.Event = ev
	}
	if res.RWSet, err = tc.sim.rwset(); err != nil {
		return nil, err
	}
	return res, nil
}

// receive dispatches chaincode messages to their transactions. State
// requests are served inline: they only touch memory.
func (r *Runtime) receive() {
	for {
		msg, err := r.stream.Recv()
		if err != nil {
			r.mu.Lock()
			r.err = fmt.Errorf("chaincode %s stream terminated: %w", r.name, err)
			r.mu.Unlock()
			close(r.ended)
			return
		}
		if msg.Type == peer.ChaincodeMessage_KEEPALIVE {
			continue
		}
		r.mu.Lock()
		tc := r.txs[key(msg.ChannelId, msg.Txid)]
		r.mu.Unlock()
		if tc == nil {
			r.log.Warn("chaincode message for unknown transaction", "chaincode", r.name, "type", msg.Type, "txID", msg.Txid)
			continue
		}
		switch msg.Type {
		case peer.ChaincodeMessage_COMPLETED, peer.ChaincodeMessage_ERROR:
			tc.done <- msg
			continue
		}
		payload, herr := r.handle(tc.sim, msg)
		reply := &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_RESPONSE, Payload: payload, Txid: msg.Txid, ChannelId: msg.ChannelId}
		if herr != nil {
			reply = &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_ERROR, Payload: []byte(herr.Error()), Txid: msg.Txid, ChannelId: msg.ChannelId}
		}
		if err := r.send(reply); err != nil {
			r.log.Warn("reply to chaincode failed", "chaincode", r.name, "error", err)
		}
	}
}

var errPrivateData = errors.New("private data collections are not supported by the devnet")

// handle serves one state request from the chaincode.
func (r *Runtime) handle(sim *simulation, msg *peer.ChaincodeMessage) ([]byte, error) {
	switch msg.Type {
	case peer.ChaincodeMessage_GET_STATE:
		m := &peer.GetState{}
		if err := proto.Unmarshal(msg.Payload, m); err != nil {
			return nil, err
		}
		if m.Collection != "" {
			return nil, errPrivateData
		}
		return sim.get(m.Key), nil
	case peer.ChaincodeMessage_GET_STATE_MULTIPLE:
		m := &peer.GetStateMultiple{}
		if err := proto.Unmarshal(msg.Payload, m); err != nil {
			return nil, err
		}
		if m.Collection != "" {
			return nil, errPrivateData
		}
		res := &peer.GetStateMultipleResult{}
		for _, k := range m.Keys {
			res.Values = append(res.Values, sim.get(k))
		}
		return proto.Marshal(res)
	case peer.ChaincodeMessage_PUT_STATE:
		m := &peer.PutState{}
		if err := proto.Unmarshal(msg.Payload, m); err != nil {
			return nil, err
		}
		if m.Collection != "" {
			return nil, errPrivateData
		}
		sim.put(m.Key, m.Value)
		return nil, nil
	case peer.ChaincodeMessage_GET_STATE_METADATA:
		m := &peer.GetStateMetadata{}
		if err := proto.Unmarshal(msg.Payload, m); err != nil {
			return nil, err
		}
		if m.Collection != "" {
			return nil, errPrivateData
		}
		md := sim.getMetadata(m.Key)
		names := make([]string, 0, len(md))
		for n := range md {
			names = append(names, n)
		}
		sort.Strings(names)
		res := &peer.StateMetadataResult{}
		for _, n := range names {
			res.Entries = append(res.Entries, &peer.StateMetadata{Metakey: n, Value: md[n]})
		}
		return proto.Marshal(res)
	case peer.ChaincodeMessage_PUT_STATE_METADATA:
		m := &peer.PutStateMetadata{}
		if err := proto.Unmarshal(msg.Payload, m); err != nil {
			return nil, err
		}
		if m.Collection != "" {
			return nil, errPrivateData
		}
		sim.putMetadata(m.Key, m.GetMetadata().GetMetakey(), m.GetMetadata().GetValue())
		return nil, nil
	case peer.ChaincodeMessage_DEL_STATE:
		m := &peer.DelState{}
		if err := proto.Unmarshal(msg.Payload, m); err != nil {
			return nil, err
		}
		if m.Collection != "" {
			return nil, errPrivateData
		}
		sim.del(m.Key)
		return nil, nil
	case peer.ChaincodeMessage_WRITE_BATCH_STATE:
		m := &peer.WriteBatchState{}
		if err := proto.Unmarshal(msg.Payload, m); err != nil {
			return nil, err
		}
		for _, w := range m.Rec {
			if w.Collection != "" {
				return nil, errPrivateData
			}
			switch w.Type {
			case peer.WriteRecord_PUT_STATE:
				sim.put(w.Key, w.Value)
			case peer.WriteRecord_DEL_STATE:
				sim.del(w.Key)
			case peer.WriteRecord_PUT_STATE_METADATA:
				sim.putMetadata(w.Key, w.GetMetadata().GetMetakey(), w.GetMetadata().GetValue())
			default:
				return nil, fmt.Errorf("write batch record type %s is not supported by the devnet", w.Type)
			}
		}
		return nil, nil
	case peer.ChaincodeMessage_GET_STATE_BY_RANGE:
		m := &peer.GetStateByRange{}
		if err := proto.Unmarshal(msg.Payload, m); err != nil {
			return nil, err
		}
		if m.Collection != "" {
			return nil, errPrivateData
		}
		meta := &peer.QueryMetadata{}
		if len(m.Metadata) > 0 {
			if err := proto.Unmarshal(m.Metadata, meta); err != nil {
				return nil, err
			}
		}
		kvs, next := sim.rangeQuery(m.StartKey, m.EndKey, int(meta.PageSize), meta.Bookmark)
		resp := &peer.QueryResponse{Id: msg.Txid}
		for _, kv := range kvs {
			b, err := proto.Marshal(&queryresult.KV{Namespace: r.name, Key: kv.Key, Value: kv.Value})
			if err != nil {
				return nil, err
			}
			resp.Results = append(resp.Results, &peer.QueryResultBytes{ResultBytes: b})
		}
		if len(m.Metadata) > 0 {
			md, err := proto.Marshal(&peer.QueryResponseMetadata{FetchedRecordsCount: int32(len(kvs)), Bookmark: next})
			if err != nil {
				return nil, err
			}
			resp.Metadata = md
		}
		return proto.Marshal(resp)
	case peer.ChaincodeMessage_QUERY_STATE_NEXT, peer.ChaincodeMessage_QUERY_STATE_CLOSE:
		// Range results are returned whole, so there is never a next page.
		return proto.Marshal(&peer.QueryResponse{})
	default:
		return nil, fmt.Errorf("%s is not supported by the devnet (no CouchDB, history, private data or chaincode-to-chaincode calls)", msg.Type)
	}
}

// Close ends the chaincode stream and stops the in-memory server.
func (r *Runtime) Close() error {
	r.cancel()
	err := r.conn.Close()
	r.srv.Stop()
	return err
}
