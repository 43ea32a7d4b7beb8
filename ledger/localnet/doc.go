// Package localnet runs a consortium (ledger/consortium) as a real
// Hyperledger Fabric network of local processes, without Docker: per
// organization a Fabric CA server, a peer and the anchor chaincode as a
// service (cmd/tani-chaincode, one package per organization), and one or
// three etcdraft orderers. Up creates the channel from the consortium's
// genesis block (channel participation API, then `peer channel join`),
// installs, approves and commits the chaincode definition the consortium
// records (approving again with a new sequence after a membership change),
// and returns once every peer answers and sees every other organization's
// peer through gossip. EnrollMember brings up a new member's own CA and
// enrolls its identities through the CA's REST API.
//
// Everything it runs lives under <consortium>/run: configuration, ledgers,
// logs and one pid file per process. It must never stop a process it did
// not start (a pid file whose process runs another program is ignored),
// and never depends on where the Fabric binaries came from: the caller
// names their directory.
package localnet
