// Package policy parses Fabric signature-policy expressions such as
// AND('TaniMSP.peer', OR('BankMSP.peer', 'DistributorMSP.peer')) or
// OutOf(2, 'A.member', 'B.member', 'C.member') and evaluates them against a set
// of already verified identities, with Fabric's rule that one signature
// satisfies at most one principal.
//
// It must never verify signatures itself: callers pass only identities whose
// signatures they have checked.
package policy
