package record_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

// signedRecords returns n decoded records signed by the keys in turn,
// and each record's key.
func signedRecords(tb testing.TB, n int, keys ...ed25519.PrivateKey) ([]*record.Record, []ed25519.PublicKey) {
	tb.Helper()
	v := validate.New()
	lat, lon := -7.25, 110.4
	recs, pubs := make([]*record.Record, n), make([]ed25519.PublicKey, n)
	for i := range n {
		key := keys[i%len(keys)]
		payload := fmt.Sprintf(`{"farmer_id":%q,"consent_id":%q,"reason":"changed bank %d"}`, uuid.NewString(), uuid.NewString(), i)
		_, raw, err := record.Sign(key, record.Envelope{
			ID: uuid.NewString(), Type: record.TypeConsentRevoked, CapturedAt: now.Add(-time.Hour).Format(time.RFC3339),
			DeviceID: uuid.NewString(), Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: 4}, Payload: json.RawMessage(payload),
		})
		if err != nil {
			tb.Fatal(err)
		}
		rec, problems := record.Decode(v, raw, now)
		if problems != nil {
			tb.Fatalf("decode: %v", problems)
		}
		recs[i], pubs[i] = &rec, key.Public().(ed25519.PublicKey)
	}
	return recs, pubs
}

func newKeys(n int) []ed25519.PrivateKey {
	out := make([]ed25519.PrivateKey, n)
	for i := range out {
		_, out[i], _ = ed25519.GenerateKey(nil)
	}
	return out
}

func TestKeysVerify(t *testing.T) {
	keys := newKeys(3)
	t.Run("OK_AllGood", func(t *testing.T) {
		// More than one batch equation's worth, from several devices.
		recs, pubs := signedRecords(t, 150, keys...)
		for i, err := range record.NewKeys().Verify(recs, pubs) {
			if err != nil {
				t.Errorf("record %d: %v, want it verified", i, err)
			}
		}
	})
	t.Run("ErrEachBadOneNamed", func(t *testing.T) {
		recs, pubs := signedRecords(t, 150, keys...)
		other := newKeys(1)[0].Public().(ed25519.PublicKey)
		pubs[3] = other                                 // another device's key
		recs[70].Canonical[len(recs[70].Canonical)-3]++ // the signed bytes changed
		recs[71].Env.Signature = "not base64!"
		sig, _ := base64.StdEncoding.DecodeString(recs[140].Env.Signature)
		recs[140].Env.Signature = base64.StdEncoding.EncodeToString(sig[:40])
		pubs[149] = pubs[149][:31]
		want := map[int]string{3: "does not verify", 70: "does not verify", 71: "64 bytes of base64", 140: "64 bytes of base64", 149: "does not verify"}
		for i, err := range record.NewKeys().Verify(recs, pubs) {
			w, bad := want[i]
			switch {
			case bad && (err == nil || !strings.Contains(err.Error(), w)):
				t.Errorf("record %d: %v, want an error saying %q", i, err, w)
			case !bad && err != nil:
				t.Errorf("record %d: %v, want it verified beside the bad ones", i, err)
			}
		}
	})
	t.Run("ErrSmallOrderKey", func(t *testing.T) {
		// The identity point as a key and (R, S) = (identity, 0) as a
		// signature: crypto/ed25519 accepts it for any message, so any
		// record "verifies" under such a device key. Tani's rule refuses
		// the key, one by one and in a batch.
		identity := make([]byte, 32)
		identity[0] = 1
		forged := make([]byte, 64)
		forged[0] = 1
		recs, pubs := signedRecords(t, 2, keys[0])
		recs[0].Env.Signature = base64.StdEncoding.EncodeToString(forged)
		pubs[0] = identity
		if !ed25519.Verify(identity, recs[0].SigningInput(), forged) {
			t.Fatal("the standard library refused the forgery; the test no longer shows the difference")
		}
		if err := recs[0].Verify(identity); !errors.Is(err, record.ErrBadSignature) {
			t.Errorf("Verify = %v, want ErrBadSignature", err)
		}
		errs := record.NewKeys().Verify(recs, pubs)
		if !errors.Is(errs[0], record.ErrBadSignature) || errs[1] != nil {
			t.Errorf("batch = %v, want the forgery refused and the good record verified", errs)
		}
	})
	t.Run("OK_AgreesWithVerifyOneByOne", func(t *testing.T) {
		recs, pubs := signedRecords(t, 20, keys...)
		ks := record.NewKeys()
		for i, r := range recs {
			if err := r.Verify(pubs[i]); err != nil {
				t.Errorf("Verify %d: %v", i, err)
			}
			if err := ks.VerifyCanonical(pubs[i], r.Canonical, r.Env.Signature); err != nil {
				t.Errorf("Keys.VerifyCanonical %d: %v", i, err)
			}
			if err := ks.VerifyCanonical(pubs[(i+1)%len(pubs)], r.Canonical, r.Env.Signature); pubs[i].Equal(pubs[(i+1)%len(pubs)]) == (err != nil) {
				t.Errorf("Keys.VerifyCanonical %d under the next record's key: %v", i, err)
			}
		}
	})
}

// BenchmarkKeysVerify is the cost per signature of checking a batch the
// size of one /sync request and of one ingest batch, against one by one.
func BenchmarkKeysVerify(b *testing.B) {
	keys := newKeys(8)
	for _, n := range []int{100, 256} {
		recs, pubs := signedRecords(b, n, keys...)
		b.Run(fmt.Sprintf("OneByOne/%d", n), func(b *testing.B) {
			for b.Loop() {
				for i, r := range recs {
					if err := r.Verify(pubs[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/signature")
		})
		b.Run(fmt.Sprintf("Batch/%d", n), func(b *testing.B) {
			ks := record.NewKeys()
			for b.Loop() {
				for _, err := range ks.Verify(recs, pubs) {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/signature")
		})
	}
}

// torsionSignature signs msg under key as an RFC 8032 signer would, except
// that R carries a component of order 8: the cofactored equation accepts
// it, the cofactorless one (crypto/ed25519) refuses it.
func torsionSignature(tb testing.TB, key ed25519.PrivateKey, msg []byte) []byte {
	tb.Helper()
	h := sha512.Sum512(key.Seed())
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	a, err := scalar.NewFromBytesModOrder(h[:32])
	if err != nil {
		tb.Fatal(err)
	}
	var nonce [64]byte
	rand.Read(nonce[:])
	r, err := scalar.NewFromBytesModOrderWide(nonce[:])
	if err != nil {
		tb.Fatal(err)
	}
	R := curve.NewEdwardsPoint().MulBasepoint(curve.ED25519_BASEPOINT_TABLE, r)
	R.Add(R, curve.EIGHT_TORSION[1])
	var rc curve.CompressedEdwardsY
	rc.SetEdwardsPoint(R)
	d := sha512.New()
	d.Write(rc[:])
	d.Write(key.Public().(ed25519.PublicKey))
	d.Write(msg)
	k, err := scalar.NewFromBytesModOrderWide(d.Sum(nil))
	if err != nil {
		tb.Fatal(err)
	}
	s := scalar.New().Mul(k, a)
	s.Add(s, r)
	sig := make([]byte, 64)
	copy(sig, rc[:])
	if err := s.ToBytes(sig[32:]); err != nil {
		tb.Fatal(err)
	}
	return sig
}

// TestVerifyPathsAgree: a signature is accepted or refused the same way by
// every path a record takes — alone (Record.Verify, Keys.VerifyCanonical:
// /sync's and ingest's fallback to name a bad record) and in a batch
// equation (Keys.Verify) — including a signature the two Ed25519 equations
// disagree on, so a record /sync acknowledged is never refused by ingest
// for the way it was checked.
func TestVerifyPathsAgree(t *testing.T) {
	keys := newKeys(3)
	recs, pubs := signedRecords(t, 100, keys...)
	// Record 5: a torsion component in R (accepted by the one rule);
	// record 6: the same over other bytes (refused by every path).
	recs[5].Env.Signature = base64.StdEncoding.EncodeToString(torsionSignature(t, keys[5%3], recs[5].SigningInput()))
	recs[6].Env.Signature = base64.StdEncoding.EncodeToString(torsionSignature(t, keys[6%3], []byte("other bytes")))
	sig5, _ := base64.StdEncoding.DecodeString(recs[5].Env.Signature)
	if ed25519.Verify(pubs[5], recs[5].SigningInput(), sig5) {
		t.Fatal("crypto/ed25519 accepted the torsion signature; the test no longer shows the equations' difference")
	}
	want := func(i int) bool { return i != 6 }
	batch := record.NewKeys().Verify(recs, pubs)
	ks := record.NewKeys()
	for i, r := range recs {
		single := r.Verify(pubs[i])
		cached := ks.VerifyCanonical(pubs[i], r.Canonical, r.Env.Signature)
		for path, err := range map[string]error{"Record.Verify": single, "Keys.VerifyCanonical": cached, "Keys.Verify (batch)": batch[i]} {
			if (err == nil) != want(i) {
				t.Errorf("record %d by %s: %v, want accepted=%v", i, path, err, want(i))
			}
		}
	}
}

func TestCheckDeviceKey(t *testing.T) {
	good := newKeys(1)[0].Public().(ed25519.PublicKey)
	if err := record.CheckDeviceKey(good); err != nil {
		t.Errorf("CheckDeviceKey(a generated key) = %v, want nil", err)
	}
	for _, k := range []struct{ name, hex, want string }{
		{"identity", "0100000000000000000000000000000000000000000000000000000000000000", "small order"},
		{"order 2", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "small order"},
		{"order 4", "0000000000000000000000000000000000000000000000000000000000000000", "small order"},
		{"non-canonical identity (y = p+1)", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "canonical"},
		{"short", "0100", "32 bytes"},
	} {
		b, _ := hex.DecodeString(k.hex)
		if err := record.CheckDeviceKey(b); err == nil || !strings.Contains(err.Error(), k.want) {
			t.Errorf("CheckDeviceKey(%s) = %v, want an error saying %q", k.name, err, k.want)
		}
		// The verification rule refuses them too, alone and in a batch.
		recs, pubs := signedRecords(t, 2, newKeys(1)...)
		pubs[0] = b
		if errs := record.NewKeys().Verify(recs, pubs); errs[0] == nil || errs[1] != nil {
			t.Errorf("batch with a %s key = %v, want it refused and the other verified", k.name, errs)
		}
	}
}
