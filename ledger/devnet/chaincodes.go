package devnet

import (
	"github.com/tani-platform/tani/ledger/devnet/assetcc"
	"github.com/tani-platform/tani/ledger/fabric"
)

// AssetChaincodeName is the name under which DefaultChaincodes hosts the
// conformance asset contract.
const AssetChaincodeName = "asset"

// MajorityPolicy returns OutOf(n/2+1, ...) over the peers of orgs.
func MajorityPolicy(orgs []string) string { return fabric.MajorityPolicy(orgs) }

// DefaultChaincodes hosts the asset contract with a majority endorsement
// policy over orgs (DefaultOrgs when empty).
func DefaultChaincodes(orgs []string) []Chaincode {
	if len(orgs) == 0 {
		orgs = DefaultOrgs
	}
	cc, err := assetcc.New()
	if err != nil {
		// The contract is static; failing to build it is a programming error.
		panic(err)
	}
	return []Chaincode{{Name: AssetChaincodeName, Policy: MajorityPolicy(orgs), CC: cc}}
}
