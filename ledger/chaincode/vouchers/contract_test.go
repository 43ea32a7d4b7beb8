package vouchers

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

const (
	voucherID  = "0b8c7a52-3f5e-4d7a-9c1e-2a6b8d9e0f11"
	farmerID   = "1c9d8b63-4a6f-4e8b-8d2f-3b7c9e0a1f22"
	loanID     = "2dae9c74-5b70-4f9c-9e30-4c8d0f1b2a33"
	bankOrg    = "3ebfad85-6c81-4aad-8f41-5d9e1a2c3b44"
	dealerA    = "4fc0be96-7d92-4bbe-9052-6eaf2b3d4c55"
	dealerB    = "50d1cfa7-8ea3-4ccf-a163-7fb03c4e5d66"
	deliveryID = "61e2d0b8-9fb4-4dd0-b274-80c14d5f6e77"
	receipt    = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)

// fixture is a registry of TaniMSP (operator), BankMSP and Bank2MSP
// (banks), DistributorMSP and Distributor2MSP (distributors), with each
// organization's admin and client.
type fixture struct {
	l        *ledger
	c        *Contract
	admin    map[string]caller
	client   map[string]caller
	outsider caller
}

func mustFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{l: newLedger(t), c: &Contract{}, admin: map[string]caller{}, client: map[string]caller{}, outsider: mustCaller(t, "OutsiderMSP", "client")}
	for _, org := range []struct{ msp, role string }{
		{"TaniMSP", RoleOperator}, {"BankMSP", RoleBank}, {"Bank2MSP", RoleBank},
		{"DistributorMSP", RoleDistributor}, {"Distributor2MSP", RoleDistributor},
	} {
		f.admin[org.msp] = mustCaller(t, org.msp, "admin")
		f.client[org.msp] = mustCaller(t, org.msp, "client")
		if _, err := f.register(f.admin["TaniMSP"], org.msp, org.role); err != nil {
			t.Fatalf("register %s: %v", org.msp, err)
		}
	}
	return f
}

func (f *fixture) register(who caller, mspID, role string) (string, error) {
	return f.l.call(who, t0, func(ctx contractapi.TransactionContextInterface) (string, error) {
		return f.c.RegisterOrganization(ctx, mspID, role)
	})
}

func issueRequest() IssueRequest {
	return IssueRequest{
		ID: voucherID, BankOrg: bankOrg, FarmerID: farmerID, LoanID: loanID,
		Amount:       Money{Minor: 150_000_00, Currency: "IDR"},
		Categories:   []string{CategorySeed, CategoryFertilizer},
		Distributors: []string{"DistributorMSP"}, DistributorOrgs: []string{dealerA},
		Region: "ID-JB", ExpiresAt: t0.Add(90 * 24 * time.Hour),
	}
}

func redeemRequest() RedeemRequest {
	return RedeemRequest{
		DistributorOrg: dealerA, DeliveryID: deliveryID, LeafIndex: 4711, ReceiptHash: receipt, Region: "ID-JB",
		Goods: []Goods{
			{Category: CategorySeed, Amount: Money{Minor: 40_000_00, Currency: "IDR"}},
			{Category: CategoryFertilizer, Amount: Money{Minor: 100_000_00, Currency: "IDR"}},
		},
	}
}

func (f *fixture) issue(who caller, at time.Time, r IssueRequest) (*Voucher, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return f.issueRaw(who, at, string(b))
}

func (f *fixture) issueRaw(who caller, at time.Time, req string) (*Voucher, error) {
	return decodeResult(f.l.call(who, at, func(ctx contractapi.TransactionContextInterface) (string, error) {
		return f.c.Issue(ctx, req)
	}))
}

func (f *fixture) redeem(who caller, at time.Time, id string, r RedeemRequest) (*Voucher, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return decodeResult(f.l.call(who, at, func(ctx contractapi.TransactionContextInterface) (string, error) {
		return f.c.Redeem(ctx, id, string(b))
	}))
}

func (f *fixture) settle(who caller, at time.Time, id, ref string) (*Voucher, error) {
	return decodeResult(f.l.call(who, at, func(ctx contractapi.TransactionContextInterface) (string, error) {
		return f.c.Settle(ctx, id, ref)
	}))
}

func (f *fixture) get(t *testing.T, id string) *Voucher {
	t.Helper()
	v, err := decodeResult(f.l.call(f.client["TaniMSP"], t0, func(ctx contractapi.TransactionContextInterface) (string, error) {
		return f.c.GetVoucher(ctx, id)
	}))
	if err != nil {
		t.Fatalf("GetVoucher %s: %v", id, err)
	}
	return v
}

func decodeResult(s string, err error) (*Voucher, error) {
	if err != nil {
		return nil, err
	}
	var v Voucher
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// wantRefusal fails unless err is a Refusal of class whose message holds
// want, and the ledger is unchanged (nothing of a refused call is kept).
func (f *fixture) wantRefusal(t *testing.T, err error, class, want string, before map[string][]byte) {
	t.Helper()
	if !IsRefusal(err, class) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %v, want a %s refusal containing %q", err, class, want)
	}
	if p := ParseRefusal("chaincode response 500, " + err.Error()); p == nil || p.Class != class {
		t.Errorf("ParseRefusal(%q) = %+v, want class %s", err.Error(), p, class)
	}
	if before != nil && !cmp.Equal(before, f.l.state) {
		t.Errorf("state changed by a refused call: %s", cmp.Diff(before, f.l.state))
	}
}

func (f *fixture) snapshot() map[string][]byte {
	out := map[string][]byte{}
	for k, v := range f.l.state {
		out[k] = bytes.Clone(v)
	}
	return out
}

// principals decodes a key-level policy into "MSP.role" per identity and
// the rule's N, so tests can say who must endorse.
func principals(t *testing.T, b []byte) (n int32, ids []string) {
	t.Helper()
	env := &common.SignaturePolicyEnvelope{}
	if err := proto.Unmarshal(b, env); err != nil {
		t.Fatalf("decode policy: %v", err)
	}
	for _, p := range env.Identities {
		r := &msp.MSPRole{}
		if err := proto.Unmarshal(p.Principal, r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.MspIdentifier+"."+strings.ToLower(r.Role.String()))
	}
	return env.Rule.GetNOutOf().GetN(), ids
}

func key(t *testing.T, objectType string, attrs ...string) string {
	t.Helper()
	k, err := (&txStub{}).CreateCompositeKey(objectType, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLifecycle(t *testing.T) {
	f := mustFixture(t)
	bank, dist := f.client["BankMSP"], f.client["DistributorMSP"]
	issued, err := f.issue(bank, t0, issueRequest())
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	want := &Voucher{
		ID: voucherID, Status: StatusIssued, Issuer: "BankMSP", BankOrg: bankOrg, FarmerID: farmerID, LoanID: loanID,
		Amount: Money{Minor: 150_000_00, Currency: "IDR"}, Categories: []string{CategorySeed, CategoryFertilizer},
		Distributors: []string{"DistributorMSP"}, DistributorOrgs: []string{dealerA}, Region: "ID-JB",
		ExpiresAt: t0.Add(90 * 24 * time.Hour), IssuedAt: t0, IssueTxID: issued.IssueTxID,
	}
	if diff := cmp.Diff(want, issued); diff != "" {
		t.Fatalf("issued voucher (-want +got):\n%s", diff)
	}
	vk := key(t, voucherKey, voucherID)
	if n, ids := principals(t, f.l.policies[vk]); n != 2 || !cmp.Equal(ids, []string{"TaniMSP.peer", "DistributorMSP.peer"}) {
		t.Errorf("got issued voucher policy %d of %v, want Tani AND the eligible distributor", n, ids)
	}

	redeemedAt := t0.Add(10 * 24 * time.Hour)
	redeemed, err := f.redeem(dist, redeemedAt, voucherID, redeemRequest())
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	want.Status = StatusRedeemed
	want.Redemption = &Redemption{
		Distributor: "DistributorMSP", DistributorOrg: dealerA, DeliveryID: deliveryID, LeafIndex: 4711, ReceiptHash: receipt,
		Region: "ID-JB", Goods: redeemRequest().Goods, Amount: Money{Minor: 140_000_00, Currency: "IDR"},
		RedeemedAt: redeemedAt, TxID: redeemed.Redemption.TxID,
	}
	if diff := cmp.Diff(want, redeemed); diff != "" {
		t.Fatalf("redeemed voucher (-want +got):\n%s", diff)
	}
	if n, ids := principals(t, f.l.policies[vk]); n != 2 || !cmp.Equal(ids, []string{"BankMSP.peer", "TaniMSP.peer"}) {
		t.Errorf("got redeemed voucher policy %d of %v, want the issuing bank and Tani", n, ids)
	}

	settledAt := redeemedAt.Add(48 * time.Hour)
	settled, err := f.settle(bank, settledAt, voucherID, "BNI/2026/03/000123")
	if err != nil {
		t.Fatalf("settle: %v", err)
	}
	want.Status = StatusSettled
	want.Settlement = &Settlement{PaymentReference: "BNI/2026/03/000123", Amount: Money{Minor: 140_000_00, Currency: "IDR"}, SettledAt: settledAt, TxID: settled.Settlement.TxID}
	if diff := cmp.Diff(want, settled); diff != "" {
		t.Fatalf("settled voucher (-want +got):\n%s", diff)
	}
	if n, ids := principals(t, f.l.policies[vk]); n != 3 || !cmp.Equal(ids, []string{"BankMSP.peer", "DistributorMSP.peer", "TaniMSP.peer"}) {
		t.Errorf("got settled voucher policy %d of %v, want all three", n, ids)
	}
	if diff := cmp.Diff(want, f.get(t, voucherID)); diff != "" {
		t.Errorf("GetVoucher (-want +got):\n%s", diff)
	}

	// One event per state change, carrying the voucher as left.
	var names []string
	for i, ev := range f.l.events {
		names = append(names, ev.name)
		var v Voucher
		if err := json.Unmarshal(ev.payload, &v); err != nil {
			t.Fatal(err)
		}
		if wantStatus := []string{StatusIssued, StatusRedeemed, StatusSettled}[i]; v.Status != wantStatus {
			t.Errorf("event %d %s carries status %s, want %s", i, ev.name, v.Status, wantStatus)
		}
	}
	if !cmp.Equal(names, []string{IssuedEvent, RedeemedEvent, SettledEvent}) {
		t.Errorf("got events %v", names)
	}
	// The issuer's and the redeemer's lanes were written (their peers
	// must endorse) and keep their registration policies.
	for _, org := range []string{"BankMSP", "DistributorMSP"} {
		lk := key(t, laneKey, org)
		if n, ids := principals(t, f.l.policies[lk]); n != 1 || !cmp.Equal(ids, []string{org + ".peer"}) {
			t.Errorf("lane of %s has policy %d of %v, want its own peer", org, n, ids)
		}
	}
}

func TestRegisterOrganization(t *testing.T) {
	f := mustFixture(t)
	for _, tc := range []struct {
		name, msp, role string
		who             caller
		class, want     string
	}{
		{"ErrNotAdmin", "NewBankMSP", RoleBank, f.client["TaniMSP"], ClassForbidden, "only an organization admin"},
		{"ErrBadMSPID", "bad msp", RoleBank, f.admin["TaniMSP"], ClassInvalid, "is not an MSP ID"},
		{"ErrBadRole", "NewBankMSP", "auditor", f.admin["TaniMSP"], ClassInvalid, `role "auditor"`},
		{"ErrAlreadyRegistered", "BankMSP", RoleDistributor, f.admin["BankMSP"], ClassConflict, "already registered as bank"},
		{"ErrSecondOperator", "OtherMSP", RoleOperator, f.admin["BankMSP"], ClassConflict, "TaniMSP is already the operator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.snapshot()
			_, err := f.register(tc.who, tc.msp, tc.role)
			f.wantRefusal(t, err, tc.class, tc.want, before)
		})
	}
	t.Run("OK", func(t *testing.T) {
		out, err := f.register(f.admin["BankMSP"], "Distributor3MSP", RoleDistributor)
		if err != nil {
			t.Fatal(err)
		}
		var org Organization
		if err := json.Unmarshal([]byte(out), &org); err != nil {
			t.Fatal(err)
		}
		if org.MSPID != "Distributor3MSP" || org.Role != RoleDistributor || org.RegisteredBy != "BankMSP" {
			t.Errorf("got %+v", org)
		}
	})
}

func TestIssueRefusals(t *testing.T) {
	f := mustFixture(t)
	bank := f.client["BankMSP"]
	if _, err := f.issue(bank, t0, issueRequest()); err != nil {
		t.Fatalf("issue: %v", err)
	}
	fresh := func(mut func(*IssueRequest)) IssueRequest {
		r := issueRequest()
		r.ID = "72f3e1c9-a0c5-4ee1-8385-91d25e607f88"
		mut(&r)
		return r
	}
	for _, tc := range []struct {
		name        string
		who         caller
		at          time.Time
		req         IssueRequest
		class, want string
	}{
		{"ErrDistributorIssues", f.client["DistributorMSP"], t0, fresh(func(*IssueRequest) {}), ClassForbidden, "DistributorMSP is registered as distributor; only a bank may issue"},
		{"ErrOperatorIssues", f.client["TaniMSP"], t0, fresh(func(*IssueRequest) {}), ClassForbidden, "TaniMSP is registered as operator"},
		{"ErrUnregisteredIssues", f.outsider, t0, fresh(func(*IssueRequest) {}), ClassForbidden, "OutsiderMSP is not registered"},
		{"ErrDuplicateID", bank, t0, issueRequest(), ClassConflict, "a voucher with this id exists"},
		{"ErrBadID", bank, t0, fresh(func(r *IssueRequest) { r.ID = "0B8C7A52-3F5E-4D7A-9C1E-2A6B8D9E0F11" }), ClassInvalid, "is not a lowercase UUID"},
		{"ErrNilFarmer", bank, t0, fresh(func(r *IssueRequest) { r.FarmerID = nilUUID }), ClassInvalid, "farmer_id"},
		{"ErrBadLoan", bank, t0, fresh(func(r *IssueRequest) { r.LoanID = "L-1" }), ClassInvalid, "loan_id"},
		{"ErrBadBankOrg", bank, t0, fresh(func(r *IssueRequest) { r.BankOrg = "bni" }), ClassInvalid, "bank_org"},
		{"ErrZeroAmount", bank, t0, fresh(func(r *IssueRequest) { r.Amount.Minor = 0 }), ClassInvalid, "amount.minor must be from 1"},
		{"ErrNegativeAmount", bank, t0, fresh(func(r *IssueRequest) { r.Amount.Minor = -5 }), ClassInvalid, "amount.minor must be from 1"},
		{"ErrHugeAmount", bank, t0, fresh(func(r *IssueRequest) { r.Amount.Minor = MaxMinor + 1 }), ClassInvalid, "amount.minor must be from 1"},
		{"ErrCurrency", bank, t0, fresh(func(r *IssueRequest) { r.Amount.Currency = "idr" }), ClassInvalid, "not an ISO 4217 code"},
		{"ErrNoCategories", bank, t0, fresh(func(r *IssueRequest) { r.Categories = nil }), ClassInvalid, "categories must list"},
		{"ErrUnknownCategory", bank, t0, fresh(func(r *IssueRequest) { r.Categories = []string{"fertiliser"} }), ClassInvalid, `"fertiliser" is not an input category`},
		{"ErrDuplicateCategory", bank, t0, fresh(func(r *IssueRequest) { r.Categories = []string{"seed", "seed"} }), ClassInvalid, "listed twice"},
		{"ErrUnregisteredDistributor", bank, t0, fresh(func(r *IssueRequest) { r.Distributors = []string{"GhostMSP"} }), ClassInvalid, "GhostMSP is not registered as a distributor"},
		{"ErrBankAsDistributor", bank, t0, fresh(func(r *IssueRequest) { r.Distributors = []string{"Bank2MSP"} }), ClassInvalid, "Bank2MSP is not registered as a distributor"},
		{"ErrBadDistributorOrg", bank, t0, fresh(func(r *IssueRequest) { r.DistributorOrgs = []string{"dealer-a"} }), ClassInvalid, "distributor_orgs[0]"},
		{"ErrBadRegion", bank, t0, fresh(func(r *IssueRequest) { r.Region = "<script>" }), ClassInvalid, "region"},
		{"ErrNoExpiry", bank, t0, fresh(func(r *IssueRequest) { r.ExpiresAt = time.Time{} }), ClassInvalid, "expires_at is required"},
		{"ErrExpiresNow", bank, t0, fresh(func(r *IssueRequest) { r.ExpiresAt = t0 }), ClassInvalid, "is not after the transaction time"},
		{"ErrExpiresTooLate", bank, t0, fresh(func(r *IssueRequest) { r.ExpiresAt = t0.Add(MaxValidity + time.Hour) }), ClassInvalid, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.snapshot()
			_, err := f.issue(tc.who, tc.at, tc.req)
			f.wantRefusal(t, err, tc.class, tc.want, before)
		})
	}
	t.Run("ErrNotJSON", func(t *testing.T) {
		_, err := f.issueRaw(bank, t0, `{"id":`)
		f.wantRefusal(t, err, ClassInvalid, "not the expected JSON", nil)
	})
	t.Run("ErrUnknownField", func(t *testing.T) {
		_, err := f.issueRaw(bank, t0, `{"id":"72f3e1c9-a0c5-4ee1-8385-91d25e607f88","amount_usd":5}`)
		f.wantRefusal(t, err, ClassInvalid, `unknown field "amount_usd"`, nil)
	})
	t.Run("ErrNoOperator", func(t *testing.T) {
		g := &fixture{l: newLedger(t), c: &Contract{}}
		admin, client := mustCaller(t, "BankMSP", "admin"), mustCaller(t, "BankMSP", "client")
		if _, err := g.register(admin, "BankMSP", RoleBank); err != nil {
			t.Fatal(err)
		}
		r := issueRequest()
		r.Distributors = nil
		_, err := g.issue(client, t0, r)
		g.wantRefusal(t, err, ClassConflict, "no operator is registered", nil)
	})
}

func TestRedeemRefusals(t *testing.T) {
	f := mustFixture(t)
	bank, dist := f.client["BankMSP"], f.client["DistributorMSP"]
	if _, err := f.issue(bank, t0, issueRequest()); err != nil {
		t.Fatal(err)
	}
	expires := issueRequest().ExpiresAt
	at := t0.Add(time.Hour)
	req := func(mut func(*RedeemRequest)) RedeemRequest {
		r := redeemRequest()
		mut(&r)
		return r
	}
	same := func(*RedeemRequest) {}
	for _, tc := range []struct {
		name        string
		who         caller
		at          time.Time
		id          string
		req         RedeemRequest
		class, want string
	}{
		{"ErrBankRedeems", bank, at, voucherID, req(same), ClassForbidden, "BankMSP is registered as bank; only a distributor may redeem"},
		{"ErrOperatorRedeems", f.client["TaniMSP"], at, voucherID, req(same), ClassForbidden, "TaniMSP is registered as operator"},
		{"ErrUnregisteredRedeems", f.outsider, at, voucherID, req(same), ClassForbidden, "OutsiderMSP is not registered"},
		{"ErrUnknownVoucher", dist, at, "72f3e1c9-a0c5-4ee1-8385-91d25e607f88", req(same), ClassNotFound, "does not exist"},
		{"ErrBadVoucherID", dist, at, "voucher-1", req(same), ClassInvalid, "is not a lowercase UUID"},
		{"ErrWrongDistributor", f.client["Distributor2MSP"], at, voucherID, req(same), ClassForbidden, "Distributor2MSP is not an eligible distributor"},
		{"ErrWrongDistributorOrg", dist, at, voucherID, req(func(r *RedeemRequest) { r.DistributorOrg = dealerB }), ClassForbidden, "distributor organization"},
		{"ErrNoDistributorOrg", dist, at, voucherID, req(func(r *RedeemRequest) { r.DistributorOrg = "" }), ClassForbidden, `distributor organization ""`},
		{"ErrWrongRegion", dist, at, voucherID, req(func(r *RedeemRequest) { r.Region = "ID-JT" }), ClassForbidden, `delivered in region "ID-JT"`},
		{"ErrGoodsOutOfCategory", dist, at, voucherID, req(func(r *RedeemRequest) { r.Goods[1].Category = CategoryTools }), ClassInvalid, "category tools is outside the voucher's categories"},
		{"ErrUnknownGoodsCategory", dist, at, voucherID, req(func(r *RedeemRequest) { r.Goods[0].Category = "beer" }), ClassInvalid, `"beer" is not an input category`},
		{"ErrGoodsCurrency", dist, at, voucherID, req(func(r *RedeemRequest) { r.Goods[0].Amount.Currency = "USD" }), ClassInvalid, "priced in USD"},
		{"ErrAmountAboveVoucher", dist, at, voucherID, req(func(r *RedeemRequest) { r.Goods[1].Amount.Minor = 110_000_01 }), ClassInvalid, "goods worth 15000001 exceed"},
		{"ErrZeroGoods", dist, at, voucherID, req(func(r *RedeemRequest) { r.Goods[0].Amount.Minor = 0 }), ClassInvalid, "goods[0].amount.minor"},
		{"ErrNoGoods", dist, at, voucherID, req(func(r *RedeemRequest) { r.Goods = nil }), ClassInvalid, "goods must list"},
		{"ErrBadDelivery", dist, at, voucherID, req(func(r *RedeemRequest) { r.DeliveryID = "d-1" }), ClassInvalid, "delivery_id"},
		{"ErrBadReceiptHash", dist, at, voucherID, req(func(r *RedeemRequest) { r.ReceiptHash = strings.ToUpper(receipt) }), ClassInvalid, "receipt_hash"},
		{"ErrExpiredAtExpiry", dist, expires, voucherID, req(same), ClassConflict, "expired at"},
		{"ErrExpired", dist, expires.Add(time.Second), voucherID, req(same), ClassConflict, "expired at"},
		{"ErrBeforeIssue", dist, t0.Add(-time.Second), voucherID, req(same), ClassInvalid, "before the issue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.snapshot()
			_, err := f.redeem(tc.who, tc.at, tc.id, tc.req)
			f.wantRefusal(t, err, tc.class, tc.want, before)
		})
	}
	t.Run("OKJustBeforeExpiry", func(t *testing.T) {
		if _, err := f.redeem(dist, expires.Add(-time.Nanosecond), voucherID, redeemRequest()); err != nil {
			t.Fatalf("redeem a nanosecond before expiry: %v", err)
		}
	})
	t.Run("ErrSecondRedemption", func(t *testing.T) {
		before := f.snapshot()
		r := redeemRequest()
		r.DeliveryID = "83a4f2da-b1d6-4ff2-9496-a2e36f718099"
		_, err := f.redeem(dist, at, voucherID, r)
		f.wantRefusal(t, err, ClassConflict, "already redeemed", before)
	})
	t.Run("OKAnyRegisteredDistributor", func(t *testing.T) {
		r := issueRequest()
		r.ID, r.Distributors, r.DistributorOrgs, r.Region = "94b503eb-c2e7-4003-a5a7-b3f4a8290aaa", nil, nil, ""
		if _, err := f.issue(bank, t0, r); err != nil {
			t.Fatal(err)
		}
		vk := key(t, voucherKey, r.ID)
		if n, ids := principals(t, f.l.policies[vk]); n != 1 || !cmp.Equal(ids, []string{"TaniMSP.peer"}) {
			t.Errorf("voucher for any distributor has policy %d of %v, want Tani (the redeemer's lane names the distributor)", n, ids)
		}
		rr := redeemRequest()
		rr.DistributorOrg, rr.Region = "", ""
		if _, err := f.redeem(f.client["Distributor2MSP"], at, r.ID, rr); err != nil {
			t.Fatalf("redeem by another registered distributor: %v", err)
		}
	})
}

func TestSettleRefusals(t *testing.T) {
	f := mustFixture(t)
	bank, dist := f.client["BankMSP"], f.client["DistributorMSP"]
	if _, err := f.issue(bank, t0, issueRequest()); err != nil {
		t.Fatal(err)
	}
	redeemedAt := t0.Add(time.Hour)
	at := redeemedAt.Add(time.Hour)
	t.Run("ErrBeforeRedemption", func(t *testing.T) {
		before := f.snapshot()
		_, err := f.settle(bank, at, voucherID, "PAY-1")
		f.wantRefusal(t, err, ClassConflict, "not redeemed yet", before)
	})
	if _, err := f.redeem(dist, redeemedAt, voucherID, redeemRequest()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		who         caller
		at          time.Time
		id, ref     string
		class, want string
	}{
		{"ErrDistributorSettles", dist, at, voucherID, "PAY-1", ClassForbidden, "DistributorMSP is registered as distributor; only a bank may settle"},
		{"ErrUnregisteredSettles", f.outsider, at, voucherID, "PAY-1", ClassForbidden, "OutsiderMSP is not registered"},
		{"ErrOtherBankSettles", f.client["Bank2MSP"], at, voucherID, "PAY-1", ClassForbidden, "only the issuing bank BankMSP may settle it, not Bank2MSP"},
		{"ErrUnknownVoucher", bank, at, "72f3e1c9-a0c5-4ee1-8385-91d25e607f88", "PAY-1", ClassNotFound, "does not exist"},
		{"ErrEmptyReference", bank, at, voucherID, "", ClassInvalid, "payment reference"},
		{"ErrControlInReference", bank, at, voucherID, "PAY\n1", ClassInvalid, "payment reference"},
		{"ErrBeforeRedemptionTime", bank, redeemedAt.Add(-time.Second), voucherID, "PAY-1", ClassInvalid, "before the redemption"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.snapshot()
			_, err := f.settle(tc.who, tc.at, tc.id, tc.ref)
			f.wantRefusal(t, err, tc.class, tc.want, before)
		})
	}
	if _, err := f.settle(bank, at, voucherID, "PAY-1"); err != nil {
		t.Fatalf("settle: %v", err)
	}
	t.Run("ErrSecondSettlement", func(t *testing.T) {
		before := f.snapshot()
		_, err := f.settle(bank, at, voucherID, "PAY-2")
		f.wantRefusal(t, err, ClassConflict, "already settled in tx", before)
	})
	t.Run("ErrRedeemSettled", func(t *testing.T) {
		before := f.snapshot()
		_, err := f.redeem(dist, at, voucherID, redeemRequest())
		f.wantRefusal(t, err, ClassConflict, "already redeemed", before)
	})
}

func TestGetVoucherRefusals(t *testing.T) {
	f := mustFixture(t)
	_, err := f.l.call(f.client["TaniMSP"], t0, func(ctx contractapi.TransactionContextInterface) (string, error) {
		return f.c.GetVoucher(ctx, voucherID)
	})
	f.wantRefusal(t, err, ClassNotFound, "does not exist", nil)
	out, err := f.l.call(f.client["TaniMSP"], t0, func(ctx contractapi.TransactionContextInterface) (string, error) {
		return f.c.GetOrganization(ctx, "NobodyMSP")
	})
	if err != nil || out != "" {
		t.Errorf("GetOrganization of an unregistered MSP = %q, %v; want an empty result", out, err)
	}
}

func TestNew(t *testing.T) {
	cc, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if cc.Info.Title != "tani-vouchers" {
		t.Errorf("got title %q", cc.Info.Title)
	}
}
