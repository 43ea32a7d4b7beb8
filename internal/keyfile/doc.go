// Package keyfile reads and creates the secret files every process of a
// Tani deployment must share: the PII key, the access-token signing key,
// the operator token and the journal's signing key. Creation is atomic and
// never replaces a file, so processes that start at the same moment end up
// with one secret, not one each: the first to link its file into place
// wins and the others read the winner's. Whether a process may create a
// secret at all is the composition root's decision (only target all does),
// not this package's.
//
// It must never put a secret's bytes in an error or a log line.
package keyfile
