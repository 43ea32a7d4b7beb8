package policy

import (
	"slices"
	"testing"
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
