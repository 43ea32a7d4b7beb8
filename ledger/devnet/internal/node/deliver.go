package node

import (
	"errors"
	"fmt"
	"io"
	"math"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// deliverServer implements the peer Deliver service: full, filtered and
// private-data block streams.
type deliverServer struct {
	peer.UnimplementedDeliverServer
	n *Node
}

type deliverStream = grpc.BidiStreamingServer[cb.Envelope, peer.DeliverResponse]

func (d *deliverServer) Deliver(s deliverStream) error {
	return d.serve(s, func(b *cb.Block) *peer.DeliverResponse {
		return &peer.DeliverResponse{Type: &peer.DeliverResponse_Block{Block: b}}
	})
}

func (d *deliverServer) DeliverFiltered(s deliverStream) error {
	return d.serve(s, func(b *cb.Block) *peer.DeliverResponse {
		return &peer.DeliverResponse{Type: &peer.DeliverResponse_FilteredBlock{FilteredBlock: d.filtered(b)}}
	})
}

func (d *deliverServer) DeliverWithPrivateData(s deliverStream) error {
	return d.serve(s, func(b *cb.Block) *peer.DeliverResponse {
		return &peer.DeliverResponse{Type: &peer.DeliverResponse_BlockAndPrivateData{BlockAndPrivateData: &peer.BlockAndPrivateData{Block: b}}}
	})
}

func (d *deliverServer) serve(s deliverStream, wrap func(*cb.Block) *peer.DeliverResponse) error {
	for {
		env, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		st, err := d.deliverBlocks(s, env, wrap)
		if err != nil {
			return err
		}
		if err := s.Send(&peer.DeliverResponse{Type: &peer.DeliverResponse_Status{Status: st}}); err != nil {
			return err
		}
	}
}

// deliverBlocks serves one seek request. A returned error ends the stream;
// a non-success status is reported to the client.
func (d *deliverServer) deliverBlocks(s deliverStream, env *cb.Envelope, wrap func(*cb.Block) *peer.DeliverResponse) (cb.Status, error) {
	log := d.n.log.With("service", "deliver")
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil || payload.Header == nil {
		return cb.Status_BAD_REQUEST, nil
	}
	chdr := &cb.ChannelHeader{}
	shdr := &cb.SignatureHeader{}
	if proto.Unmarshal(payload.Header.ChannelHeader, chdr) != nil || proto.Unmarshal(payload.Header.SignatureHeader, shdr) != nil {
		return cb.Status_BAD_REQUEST, nil
	}
	if cb.HeaderType(chdr.Type) != cb.HeaderType_DELIVER_SEEK_INFO {
		return cb.Status_BAD_REQUEST, nil
	}
	if chdr.ChannelId != d.n.cfg.Channel {
		return cb.Status_NOT_FOUND, nil
	}
	id, err := d.n.msps.DeserializeValid(shdr.Creator)
	if err == nil {
		err = id.Verify(env.Payload, env.Signature)
	}
	if err != nil {
		log.Warn("deliver request forbidden", "error", err)
		return cb.Status_FORBIDDEN, nil
	}
	seek := &ab.SeekInfo{}
	if err := proto.Unmarshal(payload.Data, seek); err != nil {
		return cb.Status_BAD_REQUEST, nil
	}
	height := d.n.Height()
	pos := func(p *ab.SeekPosition, newest uint64) (uint64, error) {
		switch t := p.GetType().(type) {
		case *ab.SeekPosition_Oldest:
			return 0, nil
		case *ab.SeekPosition_Newest:
			return newest, nil
		case *ab.SeekPosition_Specified:
			return t.Specified.Number, nil
		case *ab.SeekPosition_NextCommit:
			return height, nil
		}
		return 0, fmt.Errorf("unknown seek position %T", p.GetType())
	}
	start, err := pos(seek.Start, height-1)
	if err != nil {
		return cb.Status_BAD_REQUEST, nil
	}
	stop, err := pos(seek.Stop, height-1)
	if err != nil {
		return cb.Status_BAD_REQUEST, nil
	}
	if seek.Stop == nil {
		stop = math.MaxUint64
	}
	if stop < start {
		return cb.Status_BAD_REQUEST, nil
	}
	if seek.Behavior == ab.SeekInfo_FAIL_IF_NOT_READY && start >= height {
		return cb.Status_NOT_FOUND, nil
	}
	for num := start; ; num++ {
		b, err := d.n.waitBlock(s.Context(), num)
		if err != nil {
			return cb.Status_SERVICE_UNAVAILABLE, err
		}
		if err := s.Send(wrap(b)); err != nil {
			return cb.Status_SERVICE_UNAVAILABLE, err
		}
		if num >= stop {
			return cb.Status_SUCCESS, nil
		}
	}
}

// filtered reduces a block to TxIDs, validation codes and event names.
func (d *deliverServer) filtered(b *cb.Block) *peer.FilteredBlock {
	fb := &peer.FilteredBlock{ChannelId: d.n.cfg.Channel, Number: b.Header.Number}
	filter := b.Metadata.Metadata[cb.BlockMetadataIndex_TRANSACTIONS_FILTER]
	for i, raw := range b.Data.Data {
		tx, err := parseEnvelope(raw)
		if err != nil {
			continue
		}
		ft := &peer.FilteredTransaction{Txid: tx.chdr.TxId, Type: cb.HeaderType(tx.chdr.Type), TxValidationCode: peer.TxValidationCode(filter[i])}
		if tx.action != nil {
			var actions []*peer.FilteredChaincodeAction
			if ev := tx.event(); ev != nil {
				actions = append(actions, &peer.FilteredChaincodeAction{ChaincodeEvent: &peer.ChaincodeEvent{ChaincodeId: ev.ChaincodeId, TxId: ev.TxId, EventName: ev.EventName}})
			}
			ft.Data = &peer.FilteredTransaction_TransactionActions{TransactionActions: &peer.FilteredTransactionActions{ChaincodeActions: actions}}
		}
		fb.FilteredTransactions = append(fb.FilteredTransactions, ft)
	}
	return fb
}
