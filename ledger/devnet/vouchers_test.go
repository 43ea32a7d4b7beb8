package devnet_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// TestKeyLevelPoliciesSurviveRestart: the devnet rebuilds its state by
// replaying the blocks at start, key metadata included, so a voucher's
// key-level policy still binds after a restart.
func TestKeyLevelPoliciesSurviveRestart(t *testing.T) {
	cfg := devnet.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0"}
	cc, err := devnet.VouchersChaincode(nil)
	must(t, err)
	n1 := devnettest.MustStartConfig(t, cfg, cc)
	admin := devnettest.MustVouchersClient(t, n1, []string{"TaniMSP"}, "admin")
	ctx := context.Background()
	must(t, admin.EnsureRegistered(ctx, "TaniMSP", devnet.DefaultVoucherRoles()))
	parties := devnettest.MustVouchersClient(t, n1, []string{"BankMSP", "DistributorMSP"}, "client")
	id := uuid.NewString()
	if _, err := parties.Issue(ctx, "BankMSP", vouchers.IssueRequest{
		ID: id, FarmerID: uuid.NewString(), LoanID: uuid.NewString(), Amount: vouchers.Money{Minor: 1000, Currency: "USD"},
		Categories: []string{"seed"}, ExpiresAt: time.Now().Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := parties.Redeem(ctx, "DistributorMSP", id, vouchers.RedeemRequest{DeliveryID: uuid.NewString(), ReceiptHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Goods: []vouchers.Goods{{Category: "seed", Amount: vouchers.Money{Minor: 1000, Currency: "USD"}}}}); err != nil {
		t.Fatal(err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	must(t, n1.Stop(stopCtx))

	n2 := devnettest.MustStartConfig(t, cfg, cc)
	bank := devnettest.MustGateway(t, n2, "BankMSP").GetNetwork(n2.Channel()).GetContract(vouchers.DefaultChaincode)
	settle := func(ref string, endorsers ...string) peer.TxValidationCode {
		p, err := bank.NewProposal("Settle", client.WithArguments(id, ref), client.WithEndorsingOrganizations(endorsers...))
		must(t, err)
		tx, err := p.Endorse()
		must(t, err)
		cm, err := tx.Submit()
		must(t, err)
		st, err := cm.Status()
		must(t, err)
		return st.Code
	}
	// The redeemed voucher's policy is the bank's and Tani's: were it
	// lost, the chaincode's (a majority) would accept Tani and the
	// distributor.
	if got := settle("PAY-1", "TaniMSP", "DistributorMSP"); got != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
		t.Errorf("after restart, a settlement endorsed by Tani and the distributor: %s, want ENDORSEMENT_POLICY_FAILURE (the key-level policy)", got)
	}
	if got := settle("PAY-1", "BankMSP", "TaniMSP"); got != peer.TxValidationCode_VALID {
		t.Errorf("after restart, a settlement endorsed by the bank and Tani: %s, want VALID", got)
	}
}
