// Package ledger is Tani's verifiable journal: an append-only RFC 6962 Merkle
// log of record revisions kept in PostgreSQL, with signed checkpoints,
// inclusion and consistency proofs, offline receipts, full history with
// redaction, and an audit that recomputes everything from the stored rows
// and holds it to the anchors the chain holds (the network is read by the
// caller; this package never reaches it).
//
// One sequencer writes at a time (a PostgreSQL advisory lock makes it one
// across processes); entries, tlog stored hashes and the tree size move
// together in one transaction, so a committed append is durable and provable.
//
// It must never rewrite or delete a leaf, a stored hash or a checkpoint: the
// only mutation after append is erasing a redacted payload, which the leaf
// commits to by hash only. It must never hand-roll tree hashing; tlog and
// transparency-dev/merkle do that.
package ledger
