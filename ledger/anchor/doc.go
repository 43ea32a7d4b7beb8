// Package anchor puts the journal's checkpoints on a Fabric channel and
// checks them there. The Anchorer anchors every new checkpoint, in order,
// with a consistency proof from the last anchored one, records the
// transaction and block in ledger.checkpoints.anchor (and so in every
// receipt), catches up on the backlog after an outage, and listens to the
// chaincode's Anchored events so that anchors made by another process or
// before a crash are recorded too. ReadChain reads everything the chain
// holds for a log, for the audit to hold the journal to; VerifyReceipt
// checks a receipt's checkpoint on the chain.
//
// It must never anchor out of order, never record an anchor the chain does
// not hold, and never treat a chain whose root differs from the journal's as
// anything but a fault: that is the rewrite anchoring exists to expose.
package anchor
