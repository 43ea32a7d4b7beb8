// Package throttle bounds password guessing: failed sign-ins are counted
// per account (the name as typed) and per client address in a Postgres
// table of the owning module, so that every process of a deployment
// counts the same, and a locked key is refused (apperr.TooMany, with when
// to retry) before its password is looked at. The identity module's
// portal and operator sign-in and mobile-api's agent login use it, each
// with its own table and allowances.
//
// It must never store what was typed (keys are SHA-256 digests) nor
// answer differently for names that do not exist.
package throttle
