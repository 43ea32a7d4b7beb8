package node

import (
	"context"
	"errors"
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/devnet/internal/ccrun"
	"github.com/tani-platform/tani/ledger/fabric/msp"
)

// endorser is one organization's peer.
type endorser struct {
	n        *Node
	org      *msp.Org
	runtimes map[string]*ccrun.Runtime
}

// validate performs the checks of a peer's proposal validation, with the
// peer's messages.
func (e *endorser) validate(u *unpacked) error {
	switch cb.HeaderType(u.chdr.Type) {
	case cb.HeaderType_ENDORSER_TRANSACTION:
	default:
		return fmt.Errorf("invalid header type %s", cb.HeaderType(u.chdr.Type))
	}
	if u.chdr.Epoch != 0 {
		return errors.New("epoch is non-zero")
	}
	if len(u.shdr.Nonce) == 0 {
		return errors.New("nonce is empty")
	}
	if len(u.shdr.Creator) == 0 {
		return errors.New("creator is empty")
	}
	if want := computeTxID(u.shdr.Nonce, u.shdr.Creator); u.chdr.TxId != want {
		return fmt.Errorf("incorrectly computed txid '%s' -- expected '%s'", u.chdr.TxId, want)
	}
	if len(u.signed.Signature) == 0 {
		return errors.New("empty signature bytes")
	}
	creator, err := e.n.msps.Deserialize(u.shdr.Creator)
	if err != nil {
		e.n.log.Warn("access denied", "error", err, "txID", u.chdr.TxId)
		return fmt.Errorf("access denied: channel [%s] creator org unknown, creator is malformed", u.chdr.ChannelId)
	}
	denied := fmt.Errorf("access denied: channel [%s] creator org [%s]", u.chdr.ChannelId, creator.MSPID)
	if err := e.n.msps.Validate(creator); err != nil {
		e.n.log.Warn("access denied: identity is not valid", "error", err, "txID", u.chdr.TxId)
		return denied
	}
	if err := creator.Verify(u.signed.ProposalBytes, u.signed.Signature); err != nil {
		e.n.log.Warn("access denied: creator's signature over the proposal is not valid", "error", err, "txID", u.chdr.TxId)
		return denied
	}
	if u.chdr.ChannelId != e.n.cfg.Channel {
		return fmt.Errorf("channel '%s' not found", u.chdr.ChannelId)
	}
	// The channel's Writers policy (peer/Propose ACL): a client or admin.
	if creator.Role != msp.RoleClient && creator.Role != msp.RoleAdmin {
		return fmt.Errorf("error validating proposal: access denied: channel [%s] creator org [%s]", u.chdr.ChannelId, creator.MSPID)
	}
	if _, ok := e.n.txStatus(u.chdr.TxId); ok {
		return fmt.Errorf("duplicate transaction found [%s]. Creator [%x]", u.chdr.TxId, u.shdr.Creator)
	}
	return nil
}

// processProposal simulates and endorses a proposal. As with a peer, a
// non-nil error means the proposal was rejected before execution; a
// response with status >= 400 means the chaincode failed.
func (e *endorser) processProposal(ctx context.Context, u *unpacked) (*peer.ProposalResponse, error) {
	if err := e.validate(u); err != nil {
		return &peer.ProposalResponse{Response: &peer.Response{Status: 500, Message: err.Error()}}, err
	}
	rt, ok := e.runtimes[u.chaincode]
	if !ok {
		msg := fmt.Sprintf("make sure the chaincode %s has been successfully defined on channel %s and try again: chaincode definition for '%s' not found", u.chaincode, u.chdr.ChannelId, u.chaincode)
		return &peer.ProposalResponse{Response: &peer.Response{Status: 500, Message: msg}}, nil
	}
	res, err := rt.Execute(ctx, ccrun.Invocation{ChannelID: u.chdr.ChannelId, TxID: u.chdr.TxId, Proposal: u.signed, Input: u.input, DB: e.n.db})
	if err != nil {
		return &peer.ProposalResponse{Response: &peer.Response{Status: 500, Message: err.Error()}}, nil
	}
	if res.Response.Status >= 400 {
		return &peer.ProposalResponse{Response: res.Response, Payload: []byte{}}, nil
	}
	var events []byte
	if res.Event != nil {
		if events, err = proto.Marshal(res.Event); err != nil {
			return nil, fmt.Errorf("marshal chaincode event: %w", err)
		}
	}
	action, err := proto.Marshal(&peer.ChaincodeAction{
		Results:     res.RWSet,
		Events:      events,
		Response:    res.Response,
		ChaincodeId: &peer.ChaincodeID{Name: u.chaincode, Version: "1.0"},
	})
	if err != nil {
		return nil, fmt.Errorf("marshal chaincode action: %w", err)
	}
	prp, err := proto.Marshal(&peer.ProposalResponsePayload{ProposalHash: u.hash, Extension: action})
	if err != nil {
		return nil, fmt.Errorf("marshal proposal response payload: %w", err)
	}
	endorser := e.org.Node.Serialized
	sig, err := e.org.Node.Sign(append(append([]byte(nil), prp...), endorser...))
	if err != nil {
		return nil, fmt.Errorf("sign endorsement: %w", err)
	}
	return &peer.ProposalResponse{
		Version:     1,
		Response:    res.Response,
		Payload:     prp,
		Endorsement: &peer.Endorsement{Endorser: endorser, Signature: sig},
	}, nil
}
