package policy

import (
	"slices"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

func TestSatisfied(t *testing.T) {
	const expr = "AND('TaniMSP.peer', OR('BankMSP.peer', \"DistributorMSP.peer\"))"
	p, err := Parse(expr)
	if err != nil {
		t.Fatal(err)
	}
	peer := func(m string) Signer { return Signer{MSPID: m, Role: "peer"} }
	tests := []struct {
		name    string
		signers []Signer
		want    bool
	}{
		{"OK/TaniAndBank", []Signer{peer("TaniMSP"), peer("BankMSP")}, true},
		{"OK/DistributorAndTani", []Signer{peer("DistributorMSP"), peer("TaniMSP")}, true},
		{"Fail/TaniOnly", []Signer{peer("TaniMSP")}, false},
		{"Fail/BankAndDistributor", []Signer{peer("BankMSP"), peer("DistributorMSP")}, false},
		{"Fail/TaniClientNotPeer", []Signer{{MSPID: "TaniMSP", Role: "client"}, peer("BankMSP")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Satisfied(tt.signers); got != tt.want {
				t.Errorf("Satisfied(%v) = %v, want %v", tt.signers, got, tt.want)
			}
		})
	}
}

func TestOneSignaturePerPrincipal(t *testing.T) {
	p, err := Parse("OutOf(2, 'A.member', 'A.peer')")
	if err != nil {
		t.Fatal(err)
	}
	if p.Satisfied([]Signer{{MSPID: "A", Role: "peer"}}) {
		t.Error("one signature satisfied two principals, want it used once")
	}
	if !p.Satisfied([]Signer{{MSPID: "A", Role: "peer"}, {MSPID: "A", Role: "peer"}}) {
		t.Error("two signatures did not satisfy OutOf(2), want satisfied")
	}
}

func TestLayout(t *testing.T) {
	p, err := Parse("OutOf(2, 'TaniMSP.peer', 'BankMSP.peer', 'DistributorMSP.peer')")
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Layout([]string{"BankMSP", "DistributorMSP", "TaniMSP"}, "TaniMSP")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Contains(got, "TaniMSP") {
		t.Errorf("Layout = %v, want two organizations including TaniMSP", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, expr := range []string{"", "AND(", "XOR('A.peer')", "OutOf(3, 'A.peer', 'B.peer')", "'A.king'", "AND('A.peer') extra"} {
		if _, err := Parse(expr); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", expr)
		}
	}
}

func TestFromEnvelope(t *testing.T) {
	role := func(msp string, r mspproto.MSPRole_MSPRoleType) *mspproto.MSPPrincipal {
		b, err := proto.Marshal(&mspproto.MSPRole{MspIdentifier: msp, Role: r})
		if err != nil {
			t.Fatal(err)
		}
		return &mspproto.MSPPrincipal{PrincipalClassification: mspproto.MSPPrincipal_ROLE, Principal: b}
	}
	signedBy := func(i int32) *cb.SignaturePolicy {
		return &cb.SignaturePolicy{Type: &cb.SignaturePolicy_SignedBy{SignedBy: i}}
	}
	nOutOf := func(n int32, rules ...*cb.SignaturePolicy) *cb.SignaturePolicy {
		return &cb.SignaturePolicy{Type: &cb.SignaturePolicy_NOutOf_{NOutOf: &cb.SignaturePolicy_NOutOf{N: n, Rules: rules}}}
	}
	// AND(Tani.peer, OR(D1.peer, D2.peer)), as the vouchers contract sets.
	env, err := proto.Marshal(&cb.SignaturePolicyEnvelope{
		Rule:       nOutOf(2, signedBy(0), nOutOf(1, signedBy(1), signedBy(2))),
		Identities: []*mspproto.MSPPrincipal{role("TaniMSP", mspproto.MSPRole_PEER), role("D1MSP", mspproto.MSPRole_PEER), role("D2MSP", mspproto.MSPRole_PEER)},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	if want := "OutOf(2, 'TaniMSP.peer', OutOf(1, 'D1MSP.peer', 'D2MSP.peer'))"; p.String() != want {
		t.Errorf("got %s, want %s", p, want)
	}
	peer := func(m string) Signer { return Signer{MSPID: m, Role: "peer"} }
	for _, tc := range []struct {
		signers []Signer
		want    bool
	}{
		{[]Signer{peer("TaniMSP"), peer("D2MSP")}, true},
		{[]Signer{peer("D1MSP"), peer("D2MSP")}, false},
		{[]Signer{peer("TaniMSP")}, false},
		{[]Signer{{MSPID: "TaniMSP", Role: "client"}, peer("D1MSP")}, false},
	} {
		if got := p.Satisfied(tc.signers); got != tc.want {
			t.Errorf("Satisfied(%v) = %v, want %v", tc.signers, got, tc.want)
		}
	}
	// The chaincode's policy and a key's, each satisfied on its own: the
	// distributor's one signature counts for both.
	cc, err := Parse("OutOf(2, 'TaniMSP.peer', 'BankMSP.peer', 'D1MSP.peer')")
	if err != nil {
		t.Fatal(err)
	}
	got, err := LayoutAll([]*Policy{cc, p}, []string{"TaniMSP", "BankMSP", "D1MSP", "D2MSP"}, "TaniMSP")
	if err != nil || !slices.Equal(got, []string{"TaniMSP", "D1MSP"}) {
		t.Errorf("LayoutAll = %v, %v; want [TaniMSP D1MSP]", got, err)
	}
	if _, err := LayoutAll([]*Policy{p}, []string{"BankMSP", "D1MSP"}, "BankMSP"); err == nil {
		t.Error("LayoutAll without Tani: got a layout, want an error")
	}
	t.Run("ErrUnsupportedPrincipal", func(t *testing.T) {
		b, _ := proto.Marshal(&cb.SignaturePolicyEnvelope{Rule: signedBy(0), Identities: []*mspproto.MSPPrincipal{{PrincipalClassification: mspproto.MSPPrincipal_IDENTITY}}})
		if _, err := FromEnvelope(b); err == nil {
			t.Error("got a policy from an IDENTITY principal, want an error")
		}
	})
	t.Run("ErrSignedByOutOfRange", func(t *testing.T) {
		b, _ := proto.Marshal(&cb.SignaturePolicyEnvelope{Rule: signedBy(3), Identities: []*mspproto.MSPPrincipal{role("TaniMSP", mspproto.MSPRole_PEER)}})
		if _, err := FromEnvelope(b); err == nil {
			t.Error("got a policy naming a missing identity, want an error")
		}
	})
}
