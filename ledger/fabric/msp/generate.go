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
