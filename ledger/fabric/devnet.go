package fabric

import "github.com/tani-platform/tani/ledger/devnet"

// DevnetConfig is the client configuration for a started devnet, acting as
// id (one of the devnet's identities). Only the values differ from a real
// network's configuration, never the code path.
func DevnetConfig(ci devnet.ConnectionInfo, id *devnet.Identity, chaincodeName string) Config {
	return Config{
		Endpoint: ci.Endpoint, ServerName: ci.ServerName, TLSCACert: ci.TLSCACertPath, Insecure: ci.Insecure,
		MSPID: id.MSPID, Cert: id.CertPath, Key: id.KeyPath,
		Channel: ci.Channel, Chaincode: chaincodeName, Retries: DefaultRetries,
	}
}
