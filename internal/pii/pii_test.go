package pii_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tani-platform/tani/internal/pii"
)

// MustKeys returns keys from a fresh random key file, as `tani keys init`
// would write it.
func MustKeys(tb testing.TB) *pii.Keys {
	tb.Helper()
	data, err := pii.KeyKind.New()
	if err != nil {
		tb.Fatal(err)
	}
	k, err := pii.Parse(data)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestNationalIDHash(t *testing.T) {
	k := MustKeys(t)
	t.Run("OK_Deterministic", func(t *testing.T) {
		a, b := k.NationalIDHash("3201234567890001"), k.NationalIDHash("3201234567890001")
		if !bytes.Equal(a, b) || len(a) != 32 {
			t.Errorf("got %x and %x, want the same 32-byte hash twice", a, b)
		}
	})
	t.Run("OK_SpacesAndCaseIgnored", func(t *testing.T) {
		want := k.NationalIDHash("AB1234567")
		for _, typed := range []string{"ab1234567", " AB 123 4567 ", "aB\t1234567\n"} {
			if got := k.NationalIDHash(typed); !bytes.Equal(got, want) {
				t.Errorf("%q hashes to %x, want %x (the same ID typed differently)", typed, got, want)
			}
		}
	})
	t.Run("OK_DifferentIDsDiffer", func(t *testing.T) {
		if bytes.Equal(k.NationalIDHash("3201234567890001"), k.NationalIDHash("3201234567890002")) {
			t.Error("two IDs share a hash")
		}
	})
	t.Run("OK_KeySeparation", func(t *testing.T) {
		// Another deployment's key gives another hash: the hash is useless
		// without the key (no dictionary of all IDs works across keys).
		other := MustKeys(t)
		if bytes.Equal(k.NationalIDHash("3201234567890001"), other.NationalIDHash("3201234567890001")) {
			t.Error("two keys give the same hash of one ID")
		}
	})
	t.Run("OK_NotAPhoneHash", func(t *testing.T) {
		// A national ID never collides with a phone's hash, even when
		// someone types the phone's domain prefix into the ID field.
		if bytes.Equal(k.NationalIDHash("phone:+6281234567890"), k.PhoneHash("+6281234567890")) {
			t.Error("a national ID hashes like a phone")
		}
	})
}

func TestPhoneHash(t *testing.T) {
	k := MustKeys(t)
	if !bytes.Equal(k.PhoneHash("+6281234567890"), k.PhoneHash("+6281234567890")) {
		t.Error("PhoneHash is not deterministic")
	}
	if bytes.Equal(k.PhoneHash("+6281234567890"), k.PhoneHash("+6281234567891")) {
		t.Error("two phones share a hash")
	}
	if bytes.Equal(k.PhoneHash("+6281234567890"), MustKeys(t).PhoneHash("+6281234567890")) {
		t.Error("two keys give the same hash of one phone")
	}
}

func TestEncrypt(t *testing.T) {
	k := MustKeys(t)
	const phone = "+6281234567890"
	t.Run("OK_RoundTrip", func(t *testing.T) {
		sealed := k.Encrypt(phone)
		if bytes.Contains(sealed, []byte(phone)) || bytes.Contains(sealed, []byte("81234567890")) {
			t.Fatal("the sealed value holds the phone in clear")
		}
		got, err := k.Decrypt(sealed)
		if err != nil || got != phone {
			t.Errorf("got %q, %v; want %q", got, err, phone)
		}
	})
	t.Run("OK_EmptyValue", func(t *testing.T) {
		if got, err := k.Decrypt(k.Encrypt("")); err != nil || got != "" {
			t.Errorf("got %q, %v; want the empty string back", got, err)
		}
	})
	t.Run("OK_FreshNonceEachTime", func(t *testing.T) {
		// Equal phones must not be recognizable as equal from their
		// ciphertexts (that is what PhoneHash is for, under the key).
		if bytes.Equal(k.Encrypt(phone), k.Encrypt(phone)) {
			t.Error("two encryptions of one phone are identical")
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		sealed := k.Encrypt(phone)
		for i := range sealed {
			bad := bytes.Clone(sealed)
			bad[i] ^= 0x01
			if got, err := k.Decrypt(bad); err == nil {
				t.Fatalf("byte %d flipped: decrypted to %q, want an error", i, got)
			}
		}
	})
	t.Run("ErrTruncated", func(t *testing.T) {
		sealed := k.Encrypt(phone)
		for _, n := range []int{0, 5, 12, len(sealed) - 1} {
			if _, err := k.Decrypt(sealed[:n]); err == nil {
				t.Errorf("%d of %d bytes: decrypted, want an error", n, len(sealed))
			}
		}
	})
	t.Run("ErrOtherKey", func(t *testing.T) {
		if _, err := MustKeys(t).Decrypt(k.Encrypt(phone)); err == nil {
			t.Error("another key decrypted the phone")
		}
	})
	t.Run("OK_SameKeyFileSameKeys", func(t *testing.T) {
		// Two processes given one key file read each other's ciphertexts
		// and compute the same hashes: what a split deployment relies on.
		data, _ := pii.KeyKind.New()
		a, _ := pii.Parse(data)
		b, _ := pii.Parse(data)
		if got, err := b.Decrypt(a.Encrypt(phone)); err != nil || got != phone {
			t.Errorf("got %q, %v; want %q", got, err, phone)
		}
		if !bytes.Equal(a.NationalIDHash("X1"), b.NationalIDHash("X1")) {
			t.Error("one key file, two hashes")
		}
	})
}

func TestDerive(t *testing.T) {
	k := MustKeys(t)
	a := k.Derive("jetstream-store")
	if len(a) != 32 || !bytes.Equal(a, k.Derive("jetstream-store")) {
		t.Errorf("got %x, want a deterministic 32-byte key", a)
	}
	if bytes.Equal(a, k.Derive("media")) {
		t.Error("two purposes derive the same key")
	}
	if bytes.Equal(a, MustKeys(t).Derive("jetstream-store")) {
		t.Error("two PII keys derive the same key")
	}
}

func TestParse(t *testing.T) {
	t.Run("OK_KeyFileWithNewline", func(t *testing.T) {
		data, err := pii.KeyKind.New()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(data, []byte("\n")) || len(bytes.TrimSpace(data)) != 2*pii.KeySize {
			t.Errorf("a new key file is %q, want %d hex digits and a newline", data, 2*pii.KeySize)
		}
		if _, err := pii.Parse(data); err != nil {
			t.Error(err)
		}
		if other, _ := pii.KeyKind.New(); bytes.Equal(other, data) {
			t.Error("two new key files are identical")
		}
	})
	secret := strings.Repeat("ab", pii.KeySize)
	for name, data := range map[string]string{
		"too short":   secret[:126],
		"too long":    secret + "ab",
		"not hex":     "zz" + secret[2:],
		"two lines":   secret[:64] + "\n" + secret[64:],
		"raw 64 byte": string(bytes.Repeat([]byte{0xab}, pii.KeySize)),
	} {
		t.Run("Err_"+strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			_, err := pii.Parse([]byte(data))
			if err == nil {
				t.Fatal("parsed a malformed key file")
			}
			if strings.Contains(err.Error(), secret[:16]) {
				t.Errorf("the error %q quotes the key", err)
			}
			if err := pii.KeyKind.Check([]byte(data)); err == nil {
				t.Error("KeyKind.Check accepts what Parse refuses")
			}
		})
	}
}

func TestNew_ErrWrongLength(t *testing.T) {
	for _, n := range []int{0, 32, 63, 65} {
		if _, err := pii.New(make([]byte, n)); err == nil {
			t.Errorf("New accepted a %d-byte key", n)
		}
	}
	if _, err := pii.New(make([]byte, pii.KeySize)); err != nil {
		t.Errorf("New refused %d bytes: %v", pii.KeySize, err)
	}
}

func TestID(t *testing.T) {
	data, _ := pii.KeyKind.New()
	a, _ := pii.Parse(data)
	b, _ := pii.Parse(data)
	if a.ID() == "" || a.ID() != b.ID() {
		t.Errorf("one key file, IDs %q and %q; want one non-empty ID", a.ID(), b.ID())
	}
	if MustKeys(t).ID() == a.ID() {
		t.Error("two keys share an ID")
	}
	text := strings.TrimSpace(string(data))
	for i := 0; i+16 <= len(text); i += 16 {
		if strings.Contains(a.ID(), text[i:i+16]) {
			t.Fatal("the ID shows part of the key")
		}
	}
}
