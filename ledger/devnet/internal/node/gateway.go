package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/tani-platform/tani/ledger/devnet/internal/policy"
)

// gatewayServer implements the Fabric Gateway service with the status codes
// and messages of Fabric's gateway.
type gatewayServer struct {
	gp.UnimplementedGatewayServer
	n *Node
}

func (g *gatewayServer) address(e *endorser) string {
	return "peer0." + e.org.Domain() + ":7051"
}

func rpcError(code codes.Code, msg string, details ...*gp.ErrorDetail) error {
	st := status.New(code, msg)
	if len(details) == 0 {
		return st.Err()
	}
	var ds []protoadapt.MessageV1
	for _, d := range details {
		ds = append(ds, protoadapt.MessageV1Of(d))
	}
	if withDetails, err := st.WithDetails(ds...); err == nil {
		return withDetails.Err()
	}
	return st.Err()
}

// outcome classifies a proposal response as Fabric's gateway does.
func outcome(pr *peer.ProposalResponse, err error) (codes.Code, string) {
	if err != nil {
		return codes.FailedPrecondition, err.Error()
	}
	if s := pr.GetResponse().GetStatus(); s < 200 || s >= 400 {
		if pr.Payload == nil && s == 500 {
			return codes.Aborted, pr.Response.Message
		}
		return codes.Unknown, fmt.Sprintf("chaincode response %d, %s", s, pr.Response.Message)
	}
	return codes.OK, ""
}

func (g *gatewayServer) Evaluate(ctx context.Context, req *gp.EvaluateRequest) (*gp.EvaluateResponse, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "an evaluate request is required")
	}
	u, err := unpackProposal(req.GetProposedTransaction())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to unpack transaction proposal: %s", err)
	}
	orgs := req.GetTargetOrganizations()
	if len(orgs) == 0 {
		orgs = []string{g.n.orgNames[0]}
	}
	e, ok := g.n.endorsers[orgs[0]]
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "no peers available to evaluate chaincode %s in channel %s", u.chaincode, u.chdr.ChannelId)
	}
	pr, err := e.processProposal(ctx, u)
	if code, msg := outcome(pr, err); code != codes.OK {
		return nil, rpcError(code, "evaluate call to endorser returned error: "+msg, &gp.ErrorDetail{Address: g.address(e), MspId: e.org.MSPID, Message: msg})
	}
	resp := pr.Response
	if pr.Payload != nil {
		prp := &peer.ProposalResponsePayload{}
		act := &peer.ChaincodeAction{}
		if proto.Unmarshal(pr.Payload, prp) == nil && proto.Unmarshal(prp.Extension, act) == nil {
			resp.Payload = act.GetResponse().GetPayload()
		}
	}
	return &gp.EvaluateResponse{Result: resp}, nil
}

func (g *gatewayServer) Endorse(ctx context.Context, req *gp.EndorseRequest) (*gp.EndorseResponse, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "an endorse request is required")
	}
	if len(req.GetProposedTransaction().GetProposalBytes()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "the proposed transaction must contain a signed proposal")
	}
	u, err := unpackProposal(req.GetProposedTransaction())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var orgs []string
	planned := req.GetEndorsingOrganizations() == nil
	if !planned {
		// The client takes responsibility for meeting the policy.
		for _, o := range req.GetEndorsingOrganizations() {
			if _, ok := g.n.endorsers[o]; !ok {
				return nil, status.Errorf(codes.Unavailable, "failed to find any endorsing peers for org(s): %v", req.GetEndorsingOrganizations())
			}
			if !slices.Contains(orgs, o) {
				orgs = append(orgs, o)
			}
		}
	} else {
		// As Fabric's gateway: the gateway's own organization endorses
		// first; what its simulation wrote (keys with and without
		// key-level policies) says which policies the plan must meet.
		orgs = []string{g.n.orgNames[0]}
	}

	responses := make([]*peer.ProposalResponse, len(orgs))
	details := make([]*gp.ErrorDetail, len(orgs))
	run := func(i int) {
		e := g.n.endorsers[orgs[i]]
		pr, err := e.processProposal(ctx, u)
		if code, msg := outcome(pr, err); code != codes.OK {
			details[i] = &gp.ErrorDetail{Address: g.address(e), MspId: e.org.MSPID, Message: msg}
			return
		}
		responses[i] = pr
	}
	run(0)
	if details[0] != nil {
		return nil, rpcError(codes.Aborted, "failed to endorse transaction, see attached details for more info", details[0])
	}
	if planned {
		plan, err := g.plan(u.chaincode, responses[0])
		if err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		first := responses[0]
		orgs, responses, details = plan, make([]*peer.ProposalResponse, len(plan)), make([]*gp.ErrorDetail, len(plan))
		if i := slices.Index(plan, g.n.orgNames[0]); i >= 0 {
			orgs[0], orgs[i] = orgs[i], orgs[0]
			responses[0] = first
		} else {
			run(0)
			if details[0] != nil {
				return nil, rpcError(codes.Aborted, "failed to endorse transaction, see attached details for more info", details[0])
			}
		}
	}
	var wg sync.WaitGroup
	for i := 1; i < len(orgs); i++ {
		wg.Add(1)
		go func() { defer wg.Done(); run(i) }()
	}
	wg.Wait()
	var errs []*gp.ErrorDetail
	var endorsements []*peer.Endorsement
	for i, pr := range responses {
		if pr == nil {
			errs = append(errs, details[i])
			continue
		}
		if !bytes.Equal(pr.Payload, responses[0].Payload) {
			e := g.n.endorsers[orgs[i]]
			errs = append(errs, &gp.ErrorDetail{Address: g.address(e), MspId: e.org.MSPID, Message: "ProposalResponsePayloads do not match"})
			continue
		}
		endorsements = append(endorsements, pr.Endorsement)
	}
	if len(errs) > 0 {
		return nil, rpcError(codes.Aborted, "failed to collect enough transaction endorsements, see attached details for more info", errs...)
	}
	env, err := prepareTransaction(u, responses[0], endorsements)
	if err != nil {
		return nil, status.Errorf(codes.Aborted, "failed to assemble transaction: %s", err)
	}
	return &gp.EndorseResponse{PreparedTransaction: env}, nil
}

// plan returns the organizations that must endorse a proposal whose first
// endorsement is pr: the smallest set, preferring the gateway's own
// organization, that satisfies the chaincode's policy (when a written key
// has no key-level policy, or nothing is written) and the key-level policy
// of every key written, as Fabric's gateway plans from the chaincode
// interest its first endorser returns.
func (g *gatewayServer) plan(chaincode string, pr *peer.ProposalResponse) ([]string, error) {
	cc, ok := g.n.chaincodes[chaincode]
	if !ok {
		return nil, fmt.Errorf("chaincode %s is not defined", chaincode)
	}
	prp := &peer.ProposalResponsePayload{}
	act := &peer.ChaincodeAction{}
	if err := proto.Unmarshal(pr.Payload, prp); err != nil {
		return nil, fmt.Errorf("decode proposal response: %w", err)
	}
	if err := proto.Unmarshal(prp.Extension, act); err != nil {
		return nil, fmt.Errorf("decode chaincode action: %w", err)
	}
	sets, err := (&parsedTx{action: act}).kvsets()
	if err != nil {
		return nil, err
	}
	var policies []*policy.Policy
	needCC := true
	if keys := writtenKeys(sets[chaincode]); len(keys) > 0 {
		needCC = false
		for _, k := range keys {
			vp := g.n.db.Metadata(chaincode, k)[peer.MetaDataKeys_VALIDATION_PARAMETER.String()]
			if len(vp) == 0 {
				needCC = true
				continue
			}
			p, err := policy.FromEnvelope(vp)
			if err != nil {
				return nil, fmt.Errorf("key-level policy of %s: %w", printable(k), err)
			}
			policies = append(policies, p)
		}
	}
	if needCC {
		policies = append(policies, cc.Policy)
	}
	return policy.LayoutAll(policies, g.n.orgNames, g.n.orgNames[0])
}

// prepareTransaction assembles the unsigned transaction envelope from the
// proposal and its endorsements.
func prepareTransaction(u *unpacked, pr *peer.ProposalResponse, endorsements []*peer.Endorsement) (*cb.Envelope, error) {
	cpp, err := proto.Marshal(&peer.ChaincodeProposalPayload{Input: u.cpp.Input})
	if err != nil {
		return nil, err
	}
	cap, err := proto.Marshal(&peer.ChaincodeActionPayload{
		ChaincodeProposalPayload: cpp,
		Action:                   &peer.ChaincodeEndorsedAction{ProposalResponsePayload: pr.Payload, Endorsements: endorsements},
	})
	if err != nil {
		return nil, err
	}
	tx, err := proto.Marshal(&peer.Transaction{Actions: []*peer.TransactionAction{{Header: u.header.SignatureHeader, Payload: cap}}})
	if err != nil {
		return nil, err
	}
	payload, err := proto.Marshal(&cb.Payload{Header: u.header, Data: tx})
	if err != nil {
		return nil, err
	}
	return &cb.Envelope{Payload: payload}, nil
}

func (g *gatewayServer) Submit(ctx context.Context, req *gp.SubmitRequest) (*gp.SubmitResponse, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "a submit request is required")
	}
	txn := req.GetPreparedTransaction()
	if txn == nil {
		return nil, status.Error(codes.InvalidArgument, "a prepared transaction is required")
	}
	if len(txn.Signature) == 0 {
		return nil, status.Error(codes.InvalidArgument, "prepared transaction must be signed")
	}
	if req.ChannelId != g.n.cfg.Channel {
		return nil, status.Errorf(codes.FailedPrecondition, "channel %s not found", req.ChannelId)
	}
	// The orderer's Broadcast checks: well-formed, and signed by a writer.
	tx, err := parseEnvelope(mustMarshal(txn))
	if err != nil {
		return nil, rpcError(codes.Aborted, fmt.Sprintf("received unsuccessful response from orderer: status=BAD_REQUEST, info=%s", err))
	}
	creator, err := g.n.msps.DeserializeValid(tx.shdr.Creator)
	if err == nil {
		err = creator.Verify(txn.Payload, txn.Signature)
	}
	if err != nil {
		return nil, rpcError(codes.Aborted, "received unsuccessful response from orderer: status=FORBIDDEN, info=implicit policy evaluation failed - 0 sub-policies were satisfied, but this policy requires 1 of the 'Writers' sub-policies to be satisfied")
	}
	if err := g.n.ord.broadcast(ctx, mustMarshal(txn)); err != nil {
		if errors.Is(err, errClosed) {
			return nil, rpcError(codes.Unavailable, "no orderers could successfully process transaction")
		}
		return nil, rpcError(codes.DeadlineExceeded, "submit timeout expired while broadcasting to ordering service")
	}
	return &gp.SubmitResponse{}, nil
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err))
	}
	return b
}

// checkSigned verifies a signed gateway request as the channel's ACL does.
func (g *gatewayServer) checkSigned(data, identity, sig []byte) error {
	id, err := g.n.msps.DeserializeValid(identity)
	if err != nil {
		return fmt.Errorf("failed evaluating policy on signed data during check policy [/Channel/Application/Readers]: %w", err)
	}
	if err := id.Verify(data, sig); err != nil {
		return fmt.Errorf("failed evaluating policy on signed data during check policy [/Channel/Application/Readers]: %w", err)
	}
	return nil
}

func (g *gatewayServer) CommitStatus(ctx context.Context, sreq *gp.SignedCommitStatusRequest) (*gp.CommitStatusResponse, error) {
	if len(sreq.GetRequest()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "a commit status request is required")
	}
	req := &gp.CommitStatusRequest{}
	if err := proto.Unmarshal(sreq.Request, req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid status request: %v", err)
	}
	if err := g.checkSigned(sreq.Request, req.Identity, sreq.Signature); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	if req.ChannelId != g.n.cfg.Channel {
		return nil, status.Errorf(codes.FailedPrecondition, "channel %s not found", req.ChannelId)
	}
	t, err := g.n.waitTx(ctx, req.TransactionId)
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	return &gp.CommitStatusResponse{Result: t.code, BlockNumber: t.block}, nil
}

func (g *gatewayServer) ChaincodeEvents(sreq *gp.SignedChaincodeEventsRequest, stream gp.Gateway_ChaincodeEventsServer) error {
	if len(sreq.GetRequest()) == 0 {
		return status.Error(codes.InvalidArgument, "a chaincode events request is required")
	}
	req := &gp.ChaincodeEventsRequest{}
	if err := proto.Unmarshal(sreq.Request, req); err != nil {
		return status.Errorf(codes.InvalidArgument, "invalid chaincode events request: %v", err)
	}
	if err := g.checkSigned(sreq.Request, req.Identity, sreq.Signature); err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	if req.ChannelId != g.n.cfg.Channel {
		return status.Errorf(codes.NotFound, "channel %s not found", req.ChannelId)
	}
	start := g.n.Height()
	after := req.GetAfterTransactionId()
	if t, ok := g.n.txStatus(after); after != "" && ok {
		start = t.block
	} else {
		switch seek := req.GetStartPosition().GetType().(type) {
		case nil, *ab.SeekPosition_NextCommit:
		case *ab.SeekPosition_Specified:
			start = seek.Specified.GetNumber()
		default:
			return status.Errorf(codes.InvalidArgument, "invalid start position type: %T", seek)
		}
	}
	passed := after == ""
	ctx := stream.Context()
	for num := start; ; num++ {
		b, err := g.n.waitBlock(ctx, num)
		if err != nil {
			return status.FromContextError(err).Err()
		}
		var events []*peer.ChaincodeEvent
		filter := b.Metadata.Metadata[cb.BlockMetadataIndex_TRANSACTIONS_FILTER]
		for i, raw := range b.Data.Data {
			if peer.TxValidationCode(filter[i]) != peer.TxValidationCode_VALID {
				continue
			}
			tx, err := parseEnvelope(raw)
			if err != nil {
				continue
			}
			ev := tx.event()
			if ev == nil {
				continue
			}
			if !passed {
				passed = ev.TxId == after
				continue
			}
			if ev.ChaincodeId == req.ChaincodeId {
				events = append(events, ev)
			}
		}
		if len(events) == 0 {
			continue
		}
		if err := stream.Send(&gp.ChaincodeEventsResponse{Events: events, BlockNumber: num}); err != nil {
			return err
		}
	}
}
