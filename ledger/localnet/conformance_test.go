package localnet_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
)

// chain is one Fabric network as the conformance scenarios see it: the
// anchor contract as TaniMSP's admin and as TaniMSP's client, through
// TaniMSP's gateway.
type chain struct {
	name          string
	network       *client.Network
	admin, client *client.Contract
	// sync waits until every peer has what the gateway's peer committed
	// (nil for the devnet, whose peers share one state).
	sync func(t *testing.T)
}

// outcome is what a client can observe of one call, with what differs
// between two chains by nature (transaction IDs, block numbers, peer
// addresses) left out.
type outcome struct {
	// Err is the gateway client's error class: "" (none), endorse,
	// submit, commit-status or evaluate.
	Err string
	// Code is the gRPC status code of the error.
	Code string
	// Details are the endorsing organizations' messages, "MSP: message".
	Details []string
	// Status is the validation code of a submitted transaction.
	Status string
	// Result is the transaction's or query's result.
	Result string
	// Event is the chaincode event the transaction emitted, "name payload".
	Event string
}

// TestConformance runs the same anchoring scenarios against the devnet
// and the real Fabric network and requires the same outcomes: error
// classes, gRPC codes and endorsers' messages, validation codes, results
// and chaincode events. The devnet stands in for Fabric in most of the
// suite; this keeps it from drifting.
func TestConformance(t *testing.T) {
	real := localnettest.Shared(t)
	cc, err := chaincode.New()
	if err != nil {
		t.Fatal(err)
	}
	dn := devnettest.MustStart(t, devnet.Chaincode{Name: real.C.Chaincode, Policy: real.C.EndorsementPolicy, CC: cc})

	chains := []chain{devnetChain(t, dn, real.C.Chaincode), {
		name: "fabric", network: mustGateway(t, real, "TaniMSP").GetNetwork(real.C.Channel),
		client: mustGatewayAs(t, real, "TaniMSP", "client").GetNetwork(real.C.Channel).GetContract(real.C.Chaincode),
	}}
	chains[1].admin = chains[1].network.GetContract(real.C.Chaincode)
	chains[1].sync = func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := real.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// One log, the same on both chains, so results and events compare
	// byte for byte.
	tl := newTestLog(t, randomOrigin(t, "conformance"), 8)
	forger := newTestLog(t, tl.origin, 8)
	other := newTestLog(t, randomOrigin(t, "conformance-unregistered"), 3)
	proof := func(from, to int64) string {
		p, err := tlog.ProveTree(to, from, tl.hashes)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(p))
		for i, h := range p {
			out[i] = base64.StdEncoding.EncodeToString(h[:])
		}
		b, _ := json.Marshal(out)
		return string(b)
	}

	type step struct {
		name string
		run  func(t *testing.T, c chain) outcome
	}
	steps := []step{
		{"RegisterLogAsClientRefused", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, nil, "RegisterLog", tl.origin, tl.vkey)
		}},
		{"RegisterLog", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.admin, nil, "RegisterLog", tl.origin, tl.vkey)
		}},
		{"RegisterLogAgainRefused", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.admin, nil, "RegisterLog", tl.origin, tl.vkey)
		}},
		{"AnchorFirst", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, nil, "Anchor", tl.checkpoint(3), "[]")
		}},
		{"AnchorSameAgainRefused", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, nil, "Anchor", tl.checkpoint(3), "[]")
		}},
		{"AnchorForkRefused", func(t *testing.T, c chain) outcome {
			fork := newTestLog(t, tl.origin, 3)
			fork.signer = tl.signer
			fork.hashes = nil
			for i := range int64(3) {
				add, _ := tlog.StoredHashes(i, []byte(fmt.Sprintf("other record %d", i)), fork.hashes)
				fork.hashes = append(fork.hashes, add...)
			}
			return submit(t, c, c.client, nil, "Anchor", fork.checkpoint(3), "[]")
		}},
		{"AnchorOlderRefused", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, nil, "Anchor", tl.checkpoint(2), proof(2, 3))
		}},
		{"AnchorForgedSignatureRefused", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, nil, "Anchor", forger.checkpoint(5), proof(3, 5))
		}},
		{"AnchorBadProofRefused", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, nil, "Anchor", tl.checkpoint(5), proof(2, 5))
		}},
		{"AnchorUnregisteredOriginRefused", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, nil, "Anchor", other.checkpoint(3), "[]")
		}},
		{"AnchorExtension", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, nil, "Anchor", tl.checkpoint(5), proof(3, 5))
		}},
		{"AnchorOneOrgFailsPolicy", func(t *testing.T, c chain) outcome {
			return submit(t, c, c.client, []string{"TaniMSP"}, "Anchor", tl.checkpoint(6), proof(5, 6))
		}},
		{"ConcurrentAnchorsConflict", func(t *testing.T, c chain) outcome {
			// Both read the latest anchor (5); the second to commit
			// is invalidated by MVCC.
			a := endorse(t, c.client, nil, "Anchor", tl.checkpoint(7), proof(5, 7))
			b := endorse(t, c.client, nil, "Anchor", tl.checkpoint(8), proof(5, 8))
			first := commit(t, c, a)
			second := commit(t, c, b)
			return outcome{Status: first.Status + " then " + second.Status, Event: first.Event + " | " + second.Event}
		}},
		{"GetAnchor", func(t *testing.T, c chain) outcome {
			return evaluate(c.client, "GetAnchor", tl.origin, "5")
		}},
		{"GetAnchorMissing", func(t *testing.T, c chain) outcome { return evaluate(c.client, "GetAnchor", tl.origin, "4") }},
		{"LatestAnchor", func(t *testing.T, c chain) outcome { return evaluate(c.client, "LatestAnchor", tl.origin) }},
		{"UnknownFunctionRefused", func(t *testing.T, c chain) outcome { return evaluate(c.client, "Rewrite", tl.origin) }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got := make([]outcome, len(chains))
			for i, c := range chains {
				got[i] = s.run(t, c)
			}
			if diff := cmp.Diff(got[1], got[0]); diff != "" {
				t.Errorf("the devnet differs from Fabric (-fabric +devnet):\n%s", diff)
			}
			t.Logf("%+v", got[1])
		})
	}
}

func devnetChain(t *testing.T, n *devnet.Network, cc string) chain {
	t.Helper()
	id, err := n.Identity("TaniMSP", "admin")
	if err != nil {
		t.Fatal(err)
	}
	xid, err := identity.NewX509Identity(id.MSPID, id.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	sign, err := identity.NewPrivateKeySign(id.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	gw, err := client.Connect(xid, client.WithSign(sign), client.WithClientConnection(devnettest.MustConn(t, n)),
		client.WithEvaluateTimeout(30*time.Second), client.WithEndorseTimeout(30*time.Second),
		client.WithSubmitTimeout(30*time.Second), client.WithCommitStatusTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	network := gw.GetNetwork(n.Channel())
	return chain{name: "devnet", network: network, admin: network.GetContract(cc),
		client: devnettest.MustGateway(t, n, "TaniMSP").GetNetwork(n.Channel()).GetContract(cc)}
}

func endorse(t *testing.T, contract *client.Contract, orgs []string, fn string, args ...string) *client.Transaction {
	t.Helper()
	opts := []client.ProposalOption{client.WithArguments(args...)}
	if orgs != nil {
		opts = append(opts, client.WithEndorsingOrganizations(orgs...))
	}
	p, err := contract.NewProposal(fn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := p.Endorse()
	if err != nil {
		t.Fatalf("endorse %s: %v", fn, err)
	}
	return tx
}

// submit endorses and submits fn and waits for its commit.
func submit(t *testing.T, c chain, contract *client.Contract, orgs []string, fn string, args ...string) outcome {
	t.Helper()
	opts := []client.ProposalOption{client.WithArguments(args...)}
	if orgs != nil {
		opts = append(opts, client.WithEndorsingOrganizations(orgs...))
	}
	p, err := contract.NewProposal(fn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := p.Endorse()
	if err != nil {
		return failure("endorse", err)
	}
	return commit(t, c, tx)
}

func commit(t *testing.T, c chain, tx *client.Transaction) outcome {
	t.Helper()
	cm, err := tx.Submit()
	if err != nil {
		return failure("submit", err)
	}
	st, err := cm.Status()
	if err != nil {
		return failure("commit-status", err)
	}
	if c.sync != nil {
		c.sync(t)
	}
	o := outcome{Status: st.Code.String(), Result: normalize(string(tx.Result()), st.TransactionID)}
	if st.Successful {
		o.Event = chaincodeEvent(t, c, st)
	}
	return o
}

// chaincodeEvent is the chaincode event tx emitted ("" for none), read
// from the transaction's block as the chain's deliver service serves it.
func chaincodeEvent(t *testing.T, c chain, st *client.Status) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocks, err := c.network.BlockEvents(ctx, client.WithStartBlock(st.BlockNumber))
	if err != nil {
		t.Fatal(err)
	}
	var block *cb.Block
	select {
	case block = <-blocks:
	case <-ctx.Done():
		t.Fatalf("block %d of tx %s: %v", st.BlockNumber, st.TransactionID, ctx.Err())
	}
	if block == nil {
		t.Fatalf("no block %d", st.BlockNumber)
	}
	for _, data := range block.GetData().GetData() {
		var env cb.Envelope
		var payload cb.Payload
		var chdr cb.ChannelHeader
		if proto.Unmarshal(data, &env) != nil || proto.Unmarshal(env.Payload, &payload) != nil ||
			proto.Unmarshal(payload.GetHeader().GetChannelHeader(), &chdr) != nil || chdr.TxId != st.TransactionID {
			continue
		}
		var tx pb.Transaction
		if err := proto.Unmarshal(payload.Data, &tx); err != nil {
			t.Fatal(err)
		}
		for _, action := range tx.Actions {
			var cap pb.ChaincodeActionPayload
			var prp pb.ProposalResponsePayload
			var cca pb.ChaincodeAction
			var ev pb.ChaincodeEvent
			if err := proto.Unmarshal(action.Payload, &cap); err != nil {
				t.Fatal(err)
			}
			if err := proto.Unmarshal(cap.GetAction().GetProposalResponsePayload(), &prp); err != nil {
				t.Fatal(err)
			}
			if err := proto.Unmarshal(prp.Extension, &cca); err != nil {
				t.Fatal(err)
			}
			if len(cca.Events) == 0 {
				return ""
			}
			if err := proto.Unmarshal(cca.Events, &ev); err != nil {
				t.Fatal(err)
			}
			return ev.EventName + " " + normalize(string(ev.Payload), st.TransactionID)
		}
	}
	t.Fatalf("tx %s is not in block %d", st.TransactionID, st.BlockNumber)
	return ""
}

func evaluate(contract *client.Contract, fn string, args ...string) outcome {
	b, err := contract.EvaluateTransaction(fn, args...)
	if err != nil {
		return failure("evaluate", err)
	}
	return outcome{Result: normalizeTxIDs(string(b))}
}

func failure(class string, err error) outcome {
	o := outcome{Err: class, Code: status.Code(err).String()}
	var ds []*gateway.ErrorDetail
	var ee *client.EndorseError
	var se *client.SubmitError
	var ce *client.CommitStatusError
	switch {
	case errors.As(err, &ee):
		ds = ee.Details()
	case errors.As(err, &se):
		ds = se.Details()
	case errors.As(err, &ce):
		ds = ce.Details()
	default:
		if s, ok := status.FromError(err); ok {
			for _, d := range s.Details() {
				if ed, ok := d.(*gateway.ErrorDetail); ok {
					ds = append(ds, ed)
				}
			}
		}
	}
	for _, d := range ds {
		o.Details = append(o.Details, d.MspId+": "+txIDPattern.ReplaceAllString(d.Message, "<txid>"))
	}
	slices.Sort(o.Details)
	return o
}

// normalize replaces the transaction's ID, which differs between chains.
func normalize(s, txID string) string {
	return strings.ReplaceAll(s, txID, "<txid>")
}

// txIDPattern matches transaction IDs quoted in messages.
var txIDPattern = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

// normalizeTxIDs replaces every "tx_id" value in a JSON result.
func normalizeTxIDs(s string) string {
	var m map[string]any
	if json.Unmarshal([]byte(s), &m) != nil {
		return s
	}
	if _, ok := m["tx_id"]; ok {
		m["tx_id"] = "<txid>"
	}
	b, _ := json.Marshal(m)
	return string(b)
}
