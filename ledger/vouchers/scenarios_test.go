package vouchers_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/ledger/vouchers"
)

const receiptHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// TestScenarios_Devnet runs the voucher scenarios on a fresh devnet.
func TestScenarios_Devnet(t *testing.T) { runScenarios(t, devnetChain(t)) }

// TestScenarios_Fabric runs the same scenarios on the suite's real Fabric
// network (skipped without one, failed under CI).
func TestScenarios_Fabric(t *testing.T) { runScenarios(t, fabricChain(t)) }

func newID() string { return uuid.NewString() }

// fixture is one voucher's parties: the distributor MSP, the dealer
// organization a voucher names and another one it does not.
type fixture struct {
	dist, dealer, otherDealer, bankOrg string
}

func issueRequest(f fixture, expires time.Time) vouchers.IssueRequest {
	return vouchers.IssueRequest{
		ID: newID(), BankOrg: f.bankOrg, FarmerID: newID(), LoanID: newID(),
		Amount:       vouchers.Money{Minor: 2_500_000, Currency: "KES"},
		Categories:   []string{"seed", "fertilizer"},
		Distributors: []string{f.dist}, DistributorOrgs: []string{f.dealer},
		Region: "KE-Nakuru", ExpiresAt: expires,
	}
}

func redeemRequest(f fixture) vouchers.RedeemRequest {
	return vouchers.RedeemRequest{
		DistributorOrg: f.dealer, DeliveryID: newID(), LeafIndex: 17, ReceiptHash: receiptHash, Region: "KE-Nakuru",
		Goods: []vouchers.Goods{
			{Category: "seed", Amount: vouchers.Money{Minor: 800_000, Currency: "KES"}},
			{Category: "fertilizer", Amount: vouchers.Money{Minor: 1_500_000, Currency: "KES"}},
		},
	}
}

func wantCode(t *testing.T, err error, code apperr.Code, msg string) {
	t.Helper()
	if err == nil || apperr.CodeOf(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("got error %v, want %s containing %q", err, code, msg)
	}
}

// wantState fails unless the chain holds voucher id in status (or, with
// status "", holds no such voucher).
func wantState(t *testing.T, c chain, id, status string) *vouchers.Voucher {
	t.Helper()
	v, err := c.client.Get(context.Background(), id)
	if status == "" {
		if !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("Get %s = %+v, %v; want not found", id, v, err)
		}
		return nil
	}
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	if v.Status != status {
		t.Fatalf("voucher %s is %s, want %s", id, v.Status, status)
	}
	return v
}

// rawSubmit sends fn as org's client, endorsed by exactly endorsers, and
// returns the validation code the peers gave it.
func rawSubmit(t *testing.T, c chain, org string, endorsers []string, fn string, args ...string) peer.TxValidationCode {
	t.Helper()
	p, err := c.raw[org].NewProposal(fn, client.WithArguments(args...), client.WithEndorsingOrganizations(endorsers...))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := p.Endorse()
	if err != nil && c.lagging {
		// Another organization's peer may not have the last block yet.
		err = polltest.Wait(10*time.Second, func() error { tx, err = p.Endorse(); return err })
	}
	if err != nil {
		t.Fatalf("endorse %s by %v: %v", fn, endorsers, err)
	}
	cm, err := tx.Submit()
	if err != nil {
		t.Fatalf("submit %s: %v", fn, err)
	}
	st, err := cm.Status()
	if err != nil {
		t.Fatalf("status of %s: %v", fn, err)
	}
	c.wait(t)
	return st.Code
}

func runScenarios(t *testing.T, c chain) {
	ctx := context.Background()
	f := fixture{dist: c.dist, dealer: newID(), otherDealer: newID(), bankOrg: newID()}
	later := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)

	issue := func(t *testing.T, r vouchers.IssueRequest) *vouchers.Voucher {
		t.Helper()
		v, err := c.client.Issue(ctx, c.bank, r)
		if err != nil {
			t.Fatalf("issue: %v", err)
		}
		c.wait(t)
		return v
	}

	t.Run("OK_IssueRedeemSettle", func(t *testing.T) {
		r := issueRequest(f, later)
		issued := issue(t, r)
		if issued.Status != vouchers.StatusIssued || issued.Issuer != c.bank || !issued.ExpiresAt.Equal(later) {
			t.Fatalf("issued %+v", issued)
		}
		if diff := cmp.Diff(issued, wantState(t, c, r.ID, vouchers.StatusIssued)); diff != "" {
			t.Errorf("chain state after issue (-returned +chain):\n%s", diff)
		}
		// Issuing again (a retry after a lost answer) returns the voucher.
		again, err := c.client.Issue(ctx, c.bank, r)
		if err != nil || again.IssueTxID != issued.IssueTxID {
			t.Errorf("issue again = %+v, %v; want the voucher of tx %s", again, err, issued.IssueTxID)
		}
		// But not a different voucher under the same id.
		changed := r
		changed.Amount.Minor++
		_, err = c.client.Issue(ctx, c.bank, changed)
		wantCode(t, err, apperr.Conflict, "a voucher with this id exists")

		rr := redeemRequest(f)
		redeemed, err := c.client.Redeem(ctx, c.dist, r.ID, rr)
		if err != nil {
			t.Fatalf("redeem: %v", err)
		}
		c.wait(t)
		if redeemed.Status != vouchers.StatusRedeemed || redeemed.Redemption.Amount.Minor != 2_300_000 || redeemed.Redemption.Distributor != c.dist {
			t.Fatalf("redeemed %+v", redeemed.Redemption)
		}
		if again, err := c.client.Redeem(ctx, c.dist, r.ID, rr); err != nil || again.Redemption.TxID != redeemed.Redemption.TxID {
			t.Errorf("redeem again with the same delivery = %v; want the same redemption", err)
		}

		settled, err := c.client.Settle(ctx, c.bank, r.ID, "MPESA-QWE123")
		if err != nil {
			t.Fatalf("settle: %v", err)
		}
		c.wait(t)
		if settled.Status != vouchers.StatusSettled || settled.Settlement.Amount.Minor != 2_300_000 {
			t.Fatalf("settled %+v", settled.Settlement)
		}
		if diff := cmp.Diff(settled, wantState(t, c, r.ID, vouchers.StatusSettled)); diff != "" {
			t.Errorf("chain state after settlement (-returned +chain):\n%s", diff)
		}
		if again, err := c.client.Settle(ctx, c.bank, r.ID, "MPESA-QWE123"); err != nil || again.Settlement.TxID != settled.Settlement.TxID {
			t.Errorf("settle again with the same reference = %v; want the same settlement", err)
		}
		_, err = c.client.Settle(ctx, c.bank, r.ID, "MPESA-OTHER")
		wantCode(t, err, apperr.Conflict, "already settled")
	})

	t.Run("ErrDoubleRedemption", func(t *testing.T) {
		r := issueRequest(f, later)
		issue(t, r)
		first := redeemRequest(f)
		if _, err := c.client.Redeem(ctx, c.dist, r.ID, first); err != nil {
			t.Fatal(err)
		}
		c.wait(t)
		_, err := c.client.Redeem(ctx, c.dist, r.ID, redeemRequest(f))
		wantCode(t, err, apperr.Conflict, "already redeemed")
		if v := wantState(t, c, r.ID, vouchers.StatusRedeemed); v.Redemption.DeliveryID != first.DeliveryID {
			t.Errorf("redemption names delivery %s, want the first one %s", v.Redemption.DeliveryID, first.DeliveryID)
		}
	})

	t.Run("ErrConcurrentRedemptions", func(t *testing.T) {
		r := issueRequest(f, later)
		issue(t, r)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.client.Redeem(ctx, c.dist, r.ID, redeemRequest(f))
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), "already redeemed"):
				t.Errorf("got %v, want one redemption and an already-redeemed conflict", err)
			}
		}
		if won != 1 {
			t.Errorf("%d concurrent redemptions succeeded (%v), want exactly 1", won, errs)
		}
		c.wait(t)
		wantState(t, c, r.ID, vouchers.StatusRedeemed)
	})

	t.Run("ErrExpired", func(t *testing.T) {
		expires := time.Now().Add(2 * time.Second)
		r := issueRequest(f, expires)
		issue(t, r)
		// The chain compares the transaction's timestamp, which the client
		// takes from its clock when it builds the proposal.
		polltest.Eventually(t, 10*time.Second, polltest.Until(func() bool { return time.Now().After(expires) }))
		_, err := c.client.Redeem(ctx, c.dist, r.ID, redeemRequest(f))
		wantCode(t, err, apperr.Conflict, "expired at")
		wantState(t, c, r.ID, vouchers.StatusIssued)
	})

	t.Run("ErrWrongDistributor", func(t *testing.T) {
		r := issueRequest(f, later)
		issue(t, r)
		rr := redeemRequest(f)
		rr.DistributorOrg = f.otherDealer
		_, err := c.client.Redeem(ctx, c.dist, r.ID, rr)
		wantCode(t, err, apperr.Forbidden, "is not eligible for this voucher")
		wantState(t, c, r.ID, vouchers.StatusIssued)
	})

	t.Run("ErrGoodsOutOfCategory", func(t *testing.T) {
		r := issueRequest(f, later)
		issue(t, r)
		rr := redeemRequest(f)
		rr.Goods[1].Category = "tools"
		_, err := c.client.Redeem(ctx, c.dist, r.ID, rr)
		wantCode(t, err, apperr.Invalid, "category tools is outside the voucher's categories")
		wantState(t, c, r.ID, vouchers.StatusIssued)
	})

	t.Run("ErrAmountAboveVoucher", func(t *testing.T) {
		r := issueRequest(f, later)
		issue(t, r)
		rr := redeemRequest(f)
		rr.Goods[1].Amount.Minor = 1_700_001
		_, err := c.client.Redeem(ctx, c.dist, r.ID, rr)
		wantCode(t, err, apperr.Invalid, "exceed the voucher's")
		wantState(t, c, r.ID, vouchers.StatusIssued)
	})

	t.Run("ErrWrongRoles", func(t *testing.T) {
		r := issueRequest(f, later)
		_, err := c.client.Issue(ctx, c.dist, r)
		wantCode(t, err, apperr.Forbidden, "only a bank may issue")
		wantState(t, c, r.ID, "")
		issue(t, r)
		_, err = c.client.Redeem(ctx, c.bank, r.ID, redeemRequest(f))
		wantCode(t, err, apperr.Forbidden, "only a distributor may redeem")
		_, err = c.client.Settle(ctx, c.bank, r.ID, "PAY-1")
		wantCode(t, err, apperr.Conflict, "not redeemed yet")
		if _, err := c.client.Redeem(ctx, c.dist, r.ID, redeemRequest(f)); err != nil {
			t.Fatal(err)
		}
		c.wait(t)
		_, err = c.client.Settle(ctx, c.dist, r.ID, "PAY-1")
		wantCode(t, err, apperr.Forbidden, "only a bank may settle")
		wantState(t, c, r.ID, vouchers.StatusRedeemed)
	})

	// The peers, not only the contract, hold the parties to their
	// endorsements: every endorser below runs the contract and approves,
	// yet the committing peers invalidate the transaction.
	t.Run("ErrMissingEndorsement", func(t *testing.T) {
		r := issueRequest(f, later)
		arg, _ := json.Marshal(r)
		t.Run("IssueWithoutTheBank", func(t *testing.T) {
			// A majority (the chaincode's policy), but not the issuing
			// bank: its lane key refuses.
			if got := rawSubmit(t, c, c.bank, []string{c.operator, c.dist}, "Issue", string(arg)); got != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
				t.Errorf("issue endorsed by Tani and the distributor: %s, want ENDORSEMENT_POLICY_FAILURE", got)
			}
			wantState(t, c, r.ID, "")
		})
		t.Run("IssueByTheBankAlone", func(t *testing.T) {
			if got := rawSubmit(t, c, c.bank, []string{c.bank}, "Issue", string(arg)); got != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
				t.Errorf("issue endorsed by the bank alone: %s, want ENDORSEMENT_POLICY_FAILURE", got)
			}
			wantState(t, c, r.ID, "")
		})
		issue(t, r)
		redeemArg, _ := json.Marshal(redeemRequest(f))
		t.Run("RedeemByTheDistributorAlone", func(t *testing.T) {
			if got := rawSubmit(t, c, c.dist, []string{c.dist}, "Redeem", r.ID, string(redeemArg)); got != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
				t.Errorf("redeem endorsed by the distributor alone: %s, want ENDORSEMENT_POLICY_FAILURE", got)
			}
			wantState(t, c, r.ID, vouchers.StatusIssued)
		})
		t.Run("RedeemWithoutTheDistributor", func(t *testing.T) {
			if got := rawSubmit(t, c, c.dist, []string{c.operator, c.bank}, "Redeem", r.ID, string(redeemArg)); got != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
				t.Errorf("redeem endorsed by Tani and the bank: %s, want ENDORSEMENT_POLICY_FAILURE", got)
			}
			wantState(t, c, r.ID, vouchers.StatusIssued)
		})
		t.Run("RedeemByTheDistributorAndTani", func(t *testing.T) {
			if got := rawSubmit(t, c, c.dist, []string{c.dist, c.operator}, "Redeem", r.ID, string(redeemArg)); got != peer.TxValidationCode_VALID {
				t.Fatalf("redeem endorsed by the distributor and Tani: %s, want VALID", got)
			}
			wantState(t, c, r.ID, vouchers.StatusRedeemed)
		})
		t.Run("SettleWithoutTheBank", func(t *testing.T) {
			if got := rawSubmit(t, c, c.bank, []string{c.operator, c.dist}, "Settle", r.ID, "PAY-9"); got != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
				t.Errorf("settle endorsed by Tani and the distributor: %s, want ENDORSEMENT_POLICY_FAILURE", got)
			}
			wantState(t, c, r.ID, vouchers.StatusRedeemed)
		})
		t.Run("SettleByTheBankAlone", func(t *testing.T) {
			if got := rawSubmit(t, c, c.bank, []string{c.bank}, "Settle", r.ID, "PAY-9"); got != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
				t.Errorf("settle endorsed by the bank alone: %s, want ENDORSEMENT_POLICY_FAILURE", got)
			}
			wantState(t, c, r.ID, vouchers.StatusRedeemed)
		})
		t.Run("SettleByTheBankAndTani", func(t *testing.T) {
			if got := rawSubmit(t, c, c.bank, []string{c.bank, c.operator}, "Settle", r.ID, "PAY-9"); got != peer.TxValidationCode_VALID {
				t.Fatalf("settle endorsed by the bank and Tani: %s, want VALID", got)
			}
			wantState(t, c, r.ID, vouchers.StatusSettled)
		})
	})

	t.Run("ErrUnknownVoucher", func(t *testing.T) {
		_, err := c.client.Get(ctx, newID())
		wantCode(t, err, apperr.NotFound, "does not exist")
		_, err = c.client.Redeem(ctx, c.dist, newID(), redeemRequest(f))
		wantCode(t, err, apperr.NotFound, "does not exist")
	})

	t.Run("ErrNoIdentity", func(t *testing.T) {
		_, err := c.client.Issue(ctx, "NoSuchBankMSP", issueRequest(f, later))
		wantCode(t, err, apperr.Forbidden, "holds no Fabric identity of NoSuchBankMSP")
	})
}
