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

// GenerateNode creates, unless present, one more node of mspID's node role
// under <dir>/crypto/<mspID>/<role>s/<name> (the second and third orderer
// of a Raft cluster). hosts go into its TLS certificate.
func GenerateNode(dir, mspID, name string, hosts []string) error {
	o, err := loadOrg(dir, mspID)
	if err != nil {
		return err
	}
	return o.IssueNode(name, hosts)
}

// GenerateServiceTLS creates, unless present, a TLS server certificate
// from mspID's TLS CA for a service beside its nodes (its Fabric CA
// server, its chaincode server) under
// <dir>/crypto/<mspID>/services/<name>/tls/{server.crt,server.key,ca.crt}.
func GenerateServiceTLS(dir, mspID, name string, hosts []string) error {
	o, err := loadOrg(dir, mspID)
	if err != nil {
		return err
	}
	return o.IssueServiceTLS(name, hosts)
}

func loadOrg(dir, mspID string) (*msp.Org, error) {
	role := msp.RolePeer
	if mspID == ordererMSPID {
		role = msp.RoleOrderer
	}
	return msp.LoadOrCreateOrg(filepath.Join(dir, "crypto"), mspID, role, nil)
}
