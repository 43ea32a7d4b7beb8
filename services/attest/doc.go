// Package attest decides, per record and per attribute, what is verified,
// how, by whom and until when, and journals verified records. Only attested
// data reaches banks and distributors.
//
// A rule is a name, a version and a function returning a verdict with its
// explanation; Process evaluates a batch of ingested records against
// evidence loaded in bulk from attest's own projections, stores every
// decision in one transaction and appends every verified record to the
// journal in one Append. The review queue under /admin/v1 lets supervisors
// approve, reject or send a second agent.
//
// It must never let a record through when a rule errors: such a record
// stays pending with the error and is retried.
package attest
