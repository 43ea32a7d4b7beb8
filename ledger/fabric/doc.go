// Package fabric is Tani's client of the anchor chaincode on a Hyperledger
// Fabric channel, built on the official fabric-gateway client: a TLS
// connection to a peer's gateway, an identity and signer loaded from MSP
// files, explicit timeouts on every call, and a checkpointed listener for
// Anchored events.
//
// Submitting follows the gateway's four error classes. An EndorseError or a
// SubmitError means the transaction never reached the ledger, so it may be
// retried when the status says the failure was transient; a
// CommitStatusError means the outcome is unknown, so the same signed
// transaction's status is asked again rather than submitting anew; a
// CommitError (which is not a TransactionError) means the transaction was
// ordered but invalidated, so a fresh transaction is needed, and only an
// MVCC conflict makes that worth doing at once.
//
// It must never submit a transaction whose ID it has not reported to the
// caller first, and never retry a chaincode rejection: those are verdicts.
package fabric
