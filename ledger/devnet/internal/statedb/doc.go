// Package statedb holds the devnet's world state: the committed value and
// version (block number, transaction number) of every key, per chaincode
// namespace, and its metadata (the key-level endorsement policy of
// state-based endorsement). Versions are what MVCC validation compares against.
//
// It must never expose uncommitted writes: only the committer changes it,
// and simulations read committed state only.
package statedb
