// Package blockstore is the devnet's append-only block file and Fabric's
// block hashing rules (header hash over the ASN.1 DER of number, previous
// hash and data hash; data hash over the concatenated envelopes).
//
// It must never rewrite a block once appended; the only mutation allowed at
// open is cutting off a torn final record left by a crash.
package blockstore
