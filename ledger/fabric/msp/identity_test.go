package msp

import (
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

func TestVerifyLowS(t *testing.T) {
	o, err := LoadOrCreateOrg(t.TempDir(), "TaniMSP", RolePeer, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("payload")
	sig, err := o.Client.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		if err := o.Client.Verify(msg, sig); err != nil {
			t.Errorf("Verify(low-S) = %v, want nil", err)
		}
	})
	t.Run("ErrHighS", func(t *testing.T) {
		var s ecdsaSignature
		if _, err := asn1.Unmarshal(sig, &s); err != nil {
			t.Fatal(err)
		}
		s.S = new(big.Int).Sub(o.Client.Key.Curve.Params().N, s.S)
		high, _ := asn1.Marshal(s)
		if err := o.Client.Verify(msg, high); err == nil {
			t.Error("Verify(high-S) = nil, want rejection")
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		if err := o.Client.Verify(append(msg, '!'), sig); err == nil {
			t.Error("Verify(tampered) = nil, want error")
		}
	})
}

func TestValidate(t *testing.T) {
	root := t.TempDir()
	tani, err := LoadOrCreateOrg(root, "TaniMSP", RolePeer, nil)
	if err != nil {
		t.Fatal(err)
	}
	bank, err := LoadOrCreateOrg(root, "BankMSP", RolePeer, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(map[string][]*x509.Certificate{"TaniMSP": {tani.CACert}, "BankMSP": {bank.CACert}})
	t.Run("OK", func(t *testing.T) {
		if _, err := m.DeserializeValid(tani.Client.Serialized); err != nil {
			t.Errorf("got %v, want valid", err)
		}
	})
	t.Run("ErrWrongCA", func(t *testing.T) {
		forged, err := NewIdentity("BankMSP", tani.Client.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.DeserializeValid(forged.Serialized); err == nil {
			t.Error("TaniMSP certificate accepted as BankMSP, want chain error")
		}
	})
	t.Run("ErrExpired", func(t *testing.T) {
		m.now = func() time.Time { return time.Now().Add(20 * 365 * 24 * time.Hour) }
		defer func() { m.now = time.Now }()
		if _, err := m.DeserializeValid(tani.Client.Serialized); err == nil {
			t.Error("expired certificate accepted, want validity error")
		}
	})
	t.Run("OKReload", func(t *testing.T) {
		again, err := LoadOrCreateOrg(root, "TaniMSP", RolePeer, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Client.Cert.Equal(tani.Client.Cert) {
			t.Error("reloaded client certificate differs, want the stored one")
		}
	})
}
