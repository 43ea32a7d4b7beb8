package localnet_test

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/hyperledger/fabric-gateway/pkg/client"

	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// voucherChain is a chain with the vouchers contract as each
// organization's client, through TaniMSP's gateway.
type voucherChain struct {
	chain
	as map[string]*client.Contract
}

// TestVoucherConformance runs the voucher scenarios that exercise
// state-based endorsement (key-level policies set by the contract, checked
// by the committing peers and used by the gateway to plan endorsements)
// against the devnet and the real Fabric network, and requires the same
// outcomes, as TestConformance does for anchoring.
func TestVoucherConformance(t *testing.T) {
	real := localnettest.Shared(t)
	dn := devnettest.MustVouchers(t, nil)
	orgs := []string{"TaniMSP", "BankMSP", "DistributorMSP"}

	dc := voucherChain{chain: chain{name: "devnet", network: devnettest.MustGateway(t, dn.Net, "TaniMSP").GetNetwork(dn.Net.Channel())}, as: map[string]*client.Contract{}}
	fc := voucherChain{chain: chain{name: "fabric", network: mustGatewayAs(t, real, "TaniMSP", "client").GetNetwork(real.C.Channel)}, as: map[string]*client.Contract{}}
	fc.sync = func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := real.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range orgs {
		dc.as[o] = devnettest.MustGateway(t, dn.Net, o).GetNetwork(dn.Net.Channel()).GetContract(vouchers.DefaultChaincode)
		cfg := real.ClientConfig("TaniMSP") // TaniMSP's peer and gateway, o's client identity
		cfg.MSPID = o
		cfg.Cert, cfg.Key = real.C.ClientPaths(o)
		fc.as[o] = mustGatewayConfig(t, cfg).GetNetwork(real.C.Channel).GetContract(real.C.VouchersChaincode())
	}
	chains := []voucherChain{dc, fc}

	// The same vouchers on both chains (fresh ids: the real network is
	// shared and outlives the test).
	dealer := uuid.NewString()
	expires := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	req := func(id string) string {
		b, _ := json.Marshal(vouchers.IssueRequest{
			ID: id, FarmerID: uuid.NewString(), LoanID: uuid.NewString(), Amount: vouchers.Money{Minor: 90_000, Currency: "XOF"},
			Categories: []string{"seed"}, DistributorOrgs: []string{dealer}, ExpiresAt: expires,
		})
		return string(b)
	}
	redeem := func(category string) string {
		b, _ := json.Marshal(vouchers.RedeemRequest{DistributorOrg: dealer, DeliveryID: uuid.NewString(), ReceiptHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Goods: []vouchers.Goods{{Category: category, Amount: vouchers.Money{Minor: 60_000, Currency: "XOF"}}}})
		return string(b)
	}
	v1, v2 := uuid.NewString(), uuid.NewString()
	issue1, issue2 := req(v1), req(v2)
	goodRedeem, badRedeem, otherRedeem := redeem("seed"), redeem("tools"), redeem("seed")
	stale := map[string]*client.Transaction{}

	type step struct {
		name string
		run  func(t *testing.T, c voucherChain) outcome
	}
	steps := []step{
		{"Issue", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["BankMSP"], nil, "Issue", issue1)
		}},
		{"IssueAgainRefused", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["BankMSP"], nil, "Issue", issue1)
		}},
		{"IssueByDistributorRefused", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["DistributorMSP"], nil, "Issue", issue2)
		}},
		{"IssueWithoutTheBankInvalid", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["BankMSP"], []string{"TaniMSP", "DistributorMSP"}, "Issue", issue2)
		}},
		{"RedeemByBankRefused", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["BankMSP"], nil, "Redeem", v1, goodRedeem)
		}},
		{"RedeemOutOfCategoryRefused", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["DistributorMSP"], nil, "Redeem", v1, badRedeem)
		}},
		{"RedeemByTheDistributorAloneInvalid", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["DistributorMSP"], []string{"DistributorMSP"}, "Redeem", v1, goodRedeem)
		}},
		{"Redeem", func(t *testing.T, c voucherChain) outcome {
			stale[c.name] = endorse(t, c.as["DistributorMSP"], nil, "Redeem", v1, otherRedeem)
			return submit(t, c.chain, c.as["DistributorMSP"], nil, "Redeem", v1, goodRedeem)
		}},
		{"StaleRedemptionInvalid", func(t *testing.T, c voucherChain) outcome {
			// Endorsed before the redemption above committed, by the
			// parties its policy then named; submitted after, it is
			// validated against the voucher's new policy (the bank's),
			// which the peers check before MVCC.
			return commit(t, c.chain, stale[c.name])
		}},
		{"RedeemAgainRefused", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["DistributorMSP"], nil, "Redeem", v1, goodRedeem)
		}},
		{"SettleWithoutTheBankInvalid", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["BankMSP"], []string{"TaniMSP", "DistributorMSP"}, "Settle", v1, "REF-1")
		}},
		{"Settle", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["BankMSP"], nil, "Settle", v1, "REF-1")
		}},
		{"GetVoucher", func(t *testing.T, c voucherChain) outcome { return evaluate(c.as["TaniMSP"], "GetVoucher", v1) }},
		{"GetVoucherUnknown", func(t *testing.T, c voucherChain) outcome { return evaluate(c.as["TaniMSP"], "GetVoucher", v2) }},
		{"RegisterAsClientRefused", func(t *testing.T, c voucherChain) outcome {
			return submit(t, c.chain, c.as["TaniMSP"], nil, "RegisterOrganization", "OtherBankMSP", "bank")
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got := make([]outcome, len(chains))
			for i, c := range chains {
				got[i] = normalizeVoucher(s.run(t, c))
			}
			if diff := cmp.Diff(got[1], got[0]); diff != "" {
				t.Errorf("the devnet differs from Fabric (-fabric +devnet):\n%s", diff)
			}
			t.Logf("%+v", got[1])
		})
	}
}

var (
	timePattern = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z`)
	txIDJSON    = regexp.MustCompile(`"(tx_id|issue_tx_id)":"[0-9a-f]{64}"`)
)

// normalizeVoucher replaces what differs between chains by nature in a
// voucher outcome: transaction IDs and the transactions' timestamps.
func normalizeVoucher(o outcome) outcome {
	n := func(s string) string {
		s = txIDJSON.ReplaceAllString(s, `"$1":"<txid>"`)
		s = txIDPattern.ReplaceAllString(s, "<txid>")
		return timePattern.ReplaceAllString(s, "<time>")
	}
	o.Result, o.Event = n(o.Result), n(o.Event)
	for i, d := range o.Details {
		o.Details[i] = n(d)
	}
	return o
}
