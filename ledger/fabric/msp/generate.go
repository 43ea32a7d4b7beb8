package msp

import (
	"fmt"
	"path/filepath"
)

// OrdererMSPID is the MSP ID of the orderer organization of every network
// whose material GenerateMaterial lays out.
const OrdererMSPID = "OrdererMSP"

// GenerateMaterial creates, or loads when present, the crypto material of
// orgs and of the orderer organization under <dir>/crypto, in the cryptogen
// layout, without starting anything. `tani network` uses it for a
// consortium's directory and the devnet for its own, so that a consortium
// directory is also a devnet directory. hosts are extra DNS names or IPs for
// the nodes' TLS certificates.
func GenerateMaterial(dir string, orgs, hosts []string) error {
	cryptoDir := filepath.Join(dir, "crypto")
	for _, id := range orgs {
		if id == OrdererMSPID {
			return fmt.Errorf("msp: %s is the orderer organization", id)
		}
		if _, err := LoadOrCreateOrg(cryptoDir, id, RolePeer, hosts); err != nil {
			return err
		}
	}
	if _, err := LoadOrCreateOrg(cryptoDir, OrdererMSPID, RoleOrderer, hosts); err != nil {
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

// loadOrg loads, or creates when absent, the organization mspID of the
// layout GenerateMaterial writes under <dir>/crypto; the orderer
// organization's nodes are orderers, every other's peers.
func loadOrg(dir, mspID string) (*Org, error) {
	role := RolePeer
	if mspID == OrdererMSPID {
		role = RoleOrderer
	}
	return LoadOrCreateOrg(filepath.Join(dir, "crypto"), mspID, role, nil)
}
