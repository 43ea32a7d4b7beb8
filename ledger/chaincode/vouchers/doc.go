// Package vouchers is the vouchers chaincode: the Fabric contract that holds
// every input voucher a bank issues on a loan's disbursement, its one
// redemption by a distributor against a verified delivery, and its
// settlement when the bank pays the distributor.
//
// The contract refuses, on every endorsing peer: an issue or settlement by
// an organization not registered as a bank (and a settlement by another
// bank than the issuer), a redemption by one not registered as a
// distributor or not eligible for the voucher, a second redemption, a
// redemption at or after the voucher's expiry (by the transaction's
// timestamp), goods outside the voucher's categories or worth more than it,
// and a settlement before the redemption. The peers enforce who must
// endorse (the package's Policies): the contract sets state-based
// endorsement policies (key-level validation parameters) on every voucher
// and on each organization's "lane" key, so that a transaction that was not
// endorsed by the issuing bank, the redeeming distributor or Tani is
// invalidated by every committing peer, whatever an endorser's code did.
//
// It runs as real Go chaincode (fabric-contract-api-go/v2): in the devnet,
// or as chaincode-as-a-service on a real peer through cmd/tani-chaincode
// -chaincode vouchers.
//
// It must never depend on anything outside the transaction (clock,
// network, randomness): endorsers must compute identical results, so times
// are the transaction's timestamp, never the peer's clock.
package vouchers
