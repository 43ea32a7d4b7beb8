// Package lending is the banks' API under /bank/v1: explainable credit
// scores and loans repaid at harvest, over attested records only. It must
// never serve a farmer's data without a live consent naming the bank.
//
// Today it owns the /bank/v1 route group; its API arrives with the lending
// issue.
package lending
