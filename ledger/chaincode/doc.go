// Package chaincode is the anchor chaincode: the Fabric contract that keeps,
// for each registered journal (its note origin), the log's public key and the
// last anchored checkpoint, and accepts a new checkpoint only if its note is
// signed by that key and a consistency proof shows it extends the last one.
// Because every endorsing organization runs this check on its own peer,
// rewriting journal history needs all of them to collude.
//
// It runs as real Go chaincode (fabric-contract-api-go/v2): in the devnet, or
// as chaincode-as-a-service on a real peer through cmd/tani-chaincode.
//
// It must never accept a checkpoint it has not verified, never let a
// registered key be replaced or an anchor overwritten, and never depend on
// anything outside the transaction (clock, network, randomness): endorsers
// must compute identical results.
package chaincode
