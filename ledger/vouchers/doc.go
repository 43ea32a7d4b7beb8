// Package vouchers is how Tani's services use the vouchers chaincode
// (ledger/chaincode/vouchers): a Client that issues, redeems, settles and
// reads vouchers on the chain as the identities of the organizations Tani
// acts for (a bank's to issue and settle, a distributor's to redeem), and a
// Projection that follows the chaincode's events into Postgres
// (vouchers.vouchers, read through the public view vouchers.voucher_states
// or Get and List) with a checkpoint committed in the same transaction, so
// that it can be wiped and rebuilt from the chain at any time.
//
// lending (issue on disbursement, settle when the bank pays) and
// marketplace (redeem on a verified delivery) both use it: it lives here,
// not in either service, because services never import each other.
//
// It must never write the projection from anything but a chaincode event,
// and never report a transaction as done before the chain committed it:
// the chain is the truth, and a refusal by the chain is an error the caller
// sees with its class (apperr invalid, not_found, conflict, forbidden).
package vouchers
