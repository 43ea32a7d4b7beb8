// Package auth holds Tani's authentication mechanics: short-lived EdDSA
// JWTs for agents (and later portal users), opaque single-use refresh
// tokens stored only as hashes, bcrypt passwords, the operator token that
// guards /admin/v1, and the echo middleware that enforces them. Who may do
// what is decided by each service; this package never stores users.
package auth
