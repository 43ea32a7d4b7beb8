package devnet

import "github.com/tani-platform/tani/ledger/fabric/msp"

// OrdererOrg is the MSP ID of the devnet's orderer organization.
const OrdererOrg = msp.OrdererMSPID

// GenerateMaterial creates, or loads when present, the crypto material of
// orgs and of the orderer organization under <dir>/crypto, in the layout
// Start uses (see README), without starting anything.
func GenerateMaterial(dir string, orgs, hosts []string) error {
	return msp.GenerateMaterial(dir, orgs, hosts)
}
