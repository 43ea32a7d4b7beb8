package vouchers

import (
	"fmt"
	"slices"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/statebased"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// Key-level endorsement policies (Fabric's state-based endorsement). A
// committing peer validates a write to a key that carries one against it
// instead of the chaincode's policy, with the policy the key had before the
// transaction; a key without one (a key being created) is validated against
// the chaincode-level policy. So:
//
//   - A lane key per bank and distributor (written at registration)
//     requires that organization's peer. Issue writes the issuer's lane and
//     Redeem the redeemer's, without reading them (so that concurrent
//     transactions of one organization do not conflict): the issuing bank's
//     and the redeeming distributor's own peers must endorse.
//   - A voucher is created under the chaincode-level policy (a majority of
//     the consortium) with RedemptionPolicy: Tani's peer and one of its
//     eligible distributors' peers.
//   - Redeem replaces it with SettlementPolicy: the issuing bank's peer and
//     Tani's. Not the bank's alone: a key's policy governs every write to
//     it, and a redeemed voucher the bank alone could rewrite (back to
//     issued, another amount) would let one organization undo what two
//     others endorsed. Tani, the operator, takes part in every change after
//     the issue.
//   - Settle replaces it with SettledPolicy: the bank, Tani and the
//     distributor together, so that a settled voucher is final.

// AllOf is a key-level policy requiring a peer of every organization named
// (the statebased package's policy).
func AllOf(orgs ...string) ([]byte, error) {
	ep, err := statebased.NewStateEP(nil)
	if err != nil {
		return nil, err
	}
	if err := ep.AddOrgs(statebased.RoleTypePeer, orgs...); err != nil {
		return nil, err
	}
	return ep.Policy()
}

// RedemptionPolicy is the policy of an issued voucher: AND(operator's
// peer, OR(eligible distributors' peers)); with no eligible list, the
// operator's peer alone (the redeemer's lane then names the distributor).
func RedemptionPolicy(operator string, distributors []string) ([]byte, error) {
	if len(distributors) == 0 {
		return AllOf(operator)
	}
	ds := slices.Clone(distributors)
	slices.Sort(ds)
	ids := append([]string{operator}, ds...)
	principals := make([]*msp.MSPPrincipal, len(ids))
	for i, id := range ids {
		b, err := proto.Marshal(&msp.MSPRole{MspIdentifier: id, Role: msp.MSPRole_PEER})
		if err != nil {
			return nil, err
		}
		principals[i] = &msp.MSPPrincipal{PrincipalClassification: msp.MSPPrincipal_ROLE, Principal: b}
	}
	anyDistributor := make([]*common.SignaturePolicy, len(ds))
	for i := range ds {
		anyDistributor[i] = signedBy(i + 1)
	}
	env := &common.SignaturePolicyEnvelope{
		Rule:       nOutOf(2, signedBy(0), nOutOf(1, anyDistributor...)),
		Identities: principals,
	}
	b, err := proto.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode redemption policy: %w", err)
	}
	return b, nil
}

// SettlementPolicy is the policy of a redeemed voucher: the issuing bank's
// peer and the operator's.
func SettlementPolicy(issuer, operator string) ([]byte, error) { return AllOf(issuer, operator) }

// SettledPolicy is the policy of a settled voucher: every party's peer.
func SettledPolicy(issuer, operator, distributor string) ([]byte, error) {
	return AllOf(issuer, operator, distributor)
}

func signedBy(i int) *common.SignaturePolicy {
	return &common.SignaturePolicy{Type: &common.SignaturePolicy_SignedBy{SignedBy: int32(i)}}
}

func nOutOf(n int, rules ...*common.SignaturePolicy) *common.SignaturePolicy {
	return &common.SignaturePolicy{Type: &common.SignaturePolicy_NOutOf_{NOutOf: &common.SignaturePolicy_NOutOf{N: int32(n), Rules: rules}}}
}
