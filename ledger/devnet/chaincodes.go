package devnet

import (
	"github.com/tani-platform/tani/ledger/chaincode/vouchers"
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

// VouchersChaincodeName is the name under which the devnet hosts the
// vouchers chaincode.
const VouchersChaincodeName = "vouchers"

// DefaultVoucherRoles are the roles the default organizations play for
// vouchers: Tani operates the platform and co-endorses redemptions, the
// bank issues and settles, the distributor redeems.
func DefaultVoucherRoles() map[string]string {
	return map[string]string{"TaniMSP": "operator", "BankMSP": "bank", "DistributorMSP": "distributor"}
}

// VouchersChaincode is the vouchers chaincode as the devnet hosts it: its
// chaincode-level policy (what creating a voucher or a registry entry
// needs) a majority of orgs (DefaultOrgs when empty); key-level policies
// do the rest (see ledger/chaincode/vouchers).
func VouchersChaincode(orgs []string) (Chaincode, error) {
	if len(orgs) == 0 {
		orgs = DefaultOrgs
	}
	cc, err := vouchers.New()
	if err != nil {
		return Chaincode{}, err
	}
	return Chaincode{Name: VouchersChaincodeName, Policy: MajorityPolicy(orgs), CC: cc}, nil
}
