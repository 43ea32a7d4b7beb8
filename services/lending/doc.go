// Package lending is the banks' API under /bank/v1: explainable credit
// scores on attested evidence, loan products, and loans from application
// to repayment at harvest, every agreement and state change journaled.
//
// It reads a farmer's data only through the consent gate (Deps.Gate), and
// only what attest has judged: verified records (journaled, each with a
// receipt) and plots under review (counted as unverified). Its sources
// are other owners' public views (ingest.*_facts, attest.evidence,
// attest.evidence_provenance, attest.farmer_regions); it never reads
// another service's tables. Agents' signed loan records (loan.applied,
// loan.accepted, repayment.collected) reach it attested, on
// farm.attested.
//
// It must never serve one bank another bank's products, loans, scores or
// portfolio, never move a loan out of the state machine's order, and
// never count a repayment twice.
package lending
