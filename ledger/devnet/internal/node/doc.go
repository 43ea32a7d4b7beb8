// Package node is the devnet's peer and ordering service in one process: the
// endorsers of every organization, the Fabric Gateway service, the Deliver
// service, a batch-cutting orderer that builds and signs hashed blocks, and
// the committer that validates transactions (signatures, duplicate TxIDs,
// endorsement policies, MVCC and phantom reads) before updating state.
//
// It must never commit a write set of a transaction it marked invalid, never
// emit chaincode events for invalid transactions, and never change a block
// after handing it to the block store.
package node
