package nodeclient_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// callOutput is what gateway.mjs prints in "submit" and "evaluate" modes.
type callOutput struct {
	Result string        `json:"result"`
	Commit *commitStatus `json:"commit"`
	Event  *struct {
		EventName     string `json:"eventName"`
		TransactionID string `json:"transactionId"`
		Payload       string `json:"payload"`
	} `json:"event"`
	Error *nodeError `json:"error"`
}

// TestNodeGatewayClientVouchers runs the vouchers lifecycle with the
// official Node gateway client against a devnet, as a bank's and a
// distributor's own integrations would: each with its own identity, the
// gateway planning endorsements from the key-level policies, and a
// redemption endorsed by the distributor alone invalidated.
func TestNodeGatewayClientVouchers(t *testing.T) {
	script := mustInstall(t)
	v := devnettest.MustVouchers(t, nil)
	ci := v.Net.ConnectionInfo()
	as := func(org string) map[string]any {
		id, err := v.Net.Identity(org, "client")
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"endpoint": ci.Endpoint, "channel": v.Net.Channel(), "chaincode": vouchers.DefaultChaincode,
			"tlsCACert": ci.TLSCACertPath, "mspId": org, "cert": id.CertPath, "key": id.KeyPath}
	}
	runNodeVouchers(t, script, as, func(*testing.T) {}, v.Client)
}

// TestNodeGatewayClientVouchersRealPeer is the same against the suite's
// real Fabric network, through TaniMSP's peer as its connection profile
// describes it.
func TestNodeGatewayClientVouchersRealPeer(t *testing.T) {
	net := localnettest.Shared(t)
	script := mustInstall(t)
	endpoint, tlsCA := fromProfile(t, filepath.Join(net.C.Dir, "connection-TaniMSP.json"))
	as := func(org string) map[string]any {
		cert, key := net.C.ClientPaths(org)
		return map[string]any{"endpoint": endpoint, "channel": net.C.Channel, "chaincode": net.C.VouchersChaincode(),
			"tlsCACert": tlsCA, "mspId": org, "cert": cert, "key": key}
	}
	gw := net.ClientConfig("TaniMSP")
	gw.Chaincode = net.C.VouchersChaincode()
	cert, key := net.C.ClientPaths("TaniMSP")
	c, err := vouchers.Dial(gw, []vouchers.Identity{{MSPID: "TaniMSP", Cert: cert, Key: key}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sync := func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := net.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
	}
	runNodeVouchers(t, script, as, sync, c)
}

func runNodeVouchers(t *testing.T, script string, as func(org string) map[string]any, sync func(*testing.T), goClient *vouchers.Client) {
	dealer, id := uuid.NewString(), uuid.NewString()
	issue, _ := json.Marshal(vouchers.IssueRequest{
		ID: id, FarmerID: uuid.NewString(), LoanID: uuid.NewString(), Amount: vouchers.Money{Minor: 120_00, Currency: "GHS"},
		Categories: []string{"fertilizer"}, Distributors: []string{"DistributorMSP"}, DistributorOrgs: []string{dealer},
		ExpiresAt: time.Now().Add(90 * 24 * time.Hour).UTC(),
	})
	redeem, _ := json.Marshal(vouchers.RedeemRequest{DistributorOrg: dealer, DeliveryID: uuid.NewString(),
		ReceiptHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Goods:       []vouchers.Goods{{Category: "fertilizer", Amount: vouchers.Money{Minor: 95_00, Currency: "GHS"}}}})
	call := func(t *testing.T, org, mode, fn string, args []string, endorsers ...string) callOutput {
		t.Helper()
		in := as(org)
		in["mode"], in["fn"], in["args"] = mode, fn, args
		if endorsers != nil {
			in["endorsingOrganizations"] = endorsers
		}
		var out callOutput
		runNode(t, script, in, &out)
		if out.Commit != nil && out.Commit.Successful {
			sync(t)
		}
		return out
	}
	wantValid := func(t *testing.T, out callOutput, event, status string) {
		t.Helper()
		if out.Error != nil || out.Commit == nil || !out.Commit.Successful || out.Event == nil || out.Event.EventName != event {
			t.Fatalf("got %+v (error %+v), want a valid transaction emitting %s", out.Commit, out.Error, event)
		}
		var v vouchers.Voucher
		if err := json.Unmarshal([]byte(out.Event.Payload), &v); err != nil || v.Status != status || v.ID != id {
			t.Errorf("event payload %s, want voucher %s %s", out.Event.Payload, id, status)
		}
	}

	t.Run("OKIssueByTheBank", func(t *testing.T) {
		wantValid(t, call(t, "BankMSP", "submit", "Issue", []string{string(issue)}), "VoucherIssued", vouchers.StatusIssued)
	})
	t.Run("ErrRedeemEndorsedByTheDistributorAlone", func(t *testing.T) {
		out := call(t, "DistributorMSP", "submit", "Redeem", []string{id, string(redeem)}, "DistributorMSP")
		// 10 is ENDORSEMENT_POLICY_FAILURE.
		if out.Commit == nil || out.Commit.Successful || out.Commit.Code != 10 {
			t.Fatalf("got %+v (error %+v), want the commit invalidated with code 10", out.Commit, out.Error)
		}
	})
	t.Run("OKRedeemByTheDistributor", func(t *testing.T) {
		wantValid(t, call(t, "DistributorMSP", "submit", "Redeem", []string{id, string(redeem)}), "VoucherRedeemed", vouchers.StatusRedeemed)
	})
	t.Run("ErrRedeemAgain", func(t *testing.T) {
		out := call(t, "DistributorMSP", "submit", "Redeem", []string{id, string(redeem)})
		if out.Error == nil || !anyDetail(out.Error, "vouchers: conflict: redeem "+id+": already redeemed") {
			t.Fatalf("got %+v, want the endorsers' already-redeemed refusal", out)
		}
	})
	t.Run("OKSettleByTheBank", func(t *testing.T) {
		wantValid(t, call(t, "BankMSP", "submit", "Settle", []string{id, "GCB-2231"}), "VoucherSettled", vouchers.StatusSettled)
	})
	t.Run("OKSameStateFromGo", func(t *testing.T) {
		out := call(t, "DistributorMSP", "evaluate", "GetVoucher", []string{id})
		v, err := goClient.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		if out.Error != nil || strings.TrimSpace(out.Result) != string(b) {
			t.Errorf("Node read %q (error %+v), Go read %s", out.Result, out.Error, b)
		}
	})
}
