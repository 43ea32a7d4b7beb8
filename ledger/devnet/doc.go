// Package devnet is a single-process Hyperledger Fabric development network.
// It serves the real Fabric Gateway and Deliver gRPC services, so the
// unmodified fabric-gateway client connects to it as to a peer, and it
// enforces what a peer and orderer enforce: MSP identities, low-S ECDSA
// signatures, TxID derivation, endorsement policies across organizations,
// duplicate-TxID and MVCC invalidation, Fabric block hashing, commit status
// and chaincode and block events. Chaincode runs as real Go chaincode over
// the chaincode shim protocol.
//
// It must never be used as a production network: it has no gossip,
// discovery, private data, CouchDB, BFT or chaincode lifecycle (see README).
package devnet
