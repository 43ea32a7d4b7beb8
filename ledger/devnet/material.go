package devnet

import (
	"fmt"
	"path/filepath"

	"github.com/tani-platform/tani/ledger/devnet/internal/msp"
)

// OrdererOrg is the MSP ID of the devnet's orderer organization.
const OrdererOrg = ordererMSPID

// GenerateMaterial creates, or loads when present, the crypto material of
// orgs and of the orderer organization under <dir>/crypto, in the layout
// Start uses (see README), without starting anything. `tani network` uses
// it so that a consortium directory is also a devnet directory. hosts are
// extra DNS names or IPs for the nodes' TLS certificates.
func GenerateMaterial(dir string, orgs, hosts []string) error {
	cryptoDir := filepath.Join(dir, "crypto")
	for _, id := range orgs {
		if id == ordererMSPID {
			return fmt.Errorf("devnet: %s is the orderer organization", id)
		}
		if _, err := msp.LoadOrCreateOrg(cryptoDir, id, msp.RolePeer, hosts); err != nil {
			return err
		}
	}
	if _, err := msp.LoadOrCreateOrg(cryptoDir, ordererMSPID, msp.RoleOrderer, hosts); err != nil {
		return err
	}
	return nil
}
