package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// unpacked holds the pieces of a signed proposal, as a peer's endorser
// unpacks them.
type unpacked struct {
	signed    *peer.SignedProposal
	proposal  *peer.Proposal
	header    *cb.Header
	chdr      *cb.ChannelHeader
	shdr      *cb.SignatureHeader
	cpp       *peer.ChaincodeProposalPayload
	chaincode string
	input     *peer.ChaincodeInput
	hash      []byte
}

func unpackProposal(sp *peer.SignedProposal) (*unpacked, error) {
	u := &unpacked{signed: sp, proposal: &peer.Proposal{}, header: &cb.Header{}, chdr: &cb.ChannelHeader{}, shdr: &cb.SignatureHeader{}, cpp: &peer.ChaincodeProposalPayload{}}
	if err := proto.Unmarshal(sp.GetProposalBytes(), u.proposal); err != nil {
		return nil, fmt.Errorf("error unmarshalling Proposal: %w", err)
	}
	if err := proto.Unmarshal(u.proposal.Header, u.header); err != nil {
		return nil, fmt.Errorf("error unmarshalling Header: %w", err)
	}
	if err := proto.Unmarshal(u.header.ChannelHeader, u.chdr); err != nil {
		return nil, fmt.Errorf("error unmarshalling ChannelHeader: %w", err)
	}
	if err := proto.Unmarshal(u.header.SignatureHeader, u.shdr); err != nil {
		return nil, fmt.Errorf("error unmarshalling SignatureHeader: %w", err)
	}
	ext := &peer.ChaincodeHeaderExtension{}
	if err := proto.Unmarshal(u.chdr.Extension, ext); err != nil {
		return nil, fmt.Errorf("error unmarshalling ChaincodeHeaderExtension: %w", err)
	}
	if ext.ChaincodeId == nil {
		return nil, errors.New("ChaincodeHeaderExtension.ChaincodeId is nil")
	}
	if ext.ChaincodeId.Name == "" {
		return nil, errors.New("ChaincodeHeaderExtension.ChaincodeId.Name is empty")
	}
	u.chaincode = ext.ChaincodeId.Name
	if err := proto.Unmarshal(u.proposal.Payload, u.cpp); err != nil {
		return nil, fmt.Errorf("error unmarshalling ChaincodeProposalPayload: %w", err)
	}
	cis := &peer.ChaincodeInvocationSpec{}
	if err := proto.Unmarshal(u.cpp.Input, cis); err != nil {
		return nil, fmt.Errorf("error unmarshalling ChaincodeInvocationSpec: %w", err)
	}
	if cis.ChaincodeSpec == nil {
		return nil, errors.New("chaincode invocation spec did not contain chaincode spec")
	}
	if cis.ChaincodeSpec.Input == nil {
		return nil, errors.New("chaincode input did not contain any input")
	}
	u.input = cis.ChaincodeSpec.Input
	var err error
	if u.hash, err = proposalHash(u.header.ChannelHeader, u.header.SignatureHeader, u.cpp.Input); err != nil {
		return nil, err
	}
	return u, nil
}

// proposalHash binds an endorsement to the proposal without its transient
// data: SHA-256 over channel header, signature header and the payload
// stripped of the transient map.
func proposalHash(chdr, shdr, input []byte) ([]byte, error) {
	pp, err := proto.Marshal(&peer.ChaincodeProposalPayload{Input: input})
	if err != nil {
		return nil, fmt.Errorf("could not marshal non-transient portion of payload: %w", err)
	}
	h := sha256.New()
	h.Write(chdr)
	h.Write(shdr)
	h.Write(pp)
	return h.Sum(nil), nil
}

// computeTxID is hex(SHA-256(nonce || creator)).
func computeTxID(nonce, creator []byte) string {
	h := sha256.New()
	h.Write(nonce)
	h.Write(creator)
	return hex.EncodeToString(h.Sum(nil))
}
