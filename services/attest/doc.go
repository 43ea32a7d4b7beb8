// Package attest decides, per record and per attribute, what is verified,
// how, by whom and until when, and journals verified records. Only attested
// data reaches banks and distributors. It must never let a record through
// when a rule errors.
//
// Today it owns the /admin/v1 route group; verification rules, the review
// queue and journaling arrive with the attestation issue.
package attest
