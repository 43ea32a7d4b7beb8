package record

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
)

// SigningInputOf is SigningInput for a record already in canonical form
// (the output of Canonical), without canonicalizing it again: servers need
// the canonical record anyway (to hash and store it), and canonicalizing
// is the costly half of checking a signature.
//
// It relies on RFC 8785 being compositional: every member value inside a
// canonical object is itself canonical, so the canonical object without
// "signature" is the remaining members, in RFC 8785 key order, with their
// values copied byte for byte. Only the keys are written anew.
func SigningInputOf(canonical []byte) ([]byte, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(canonical, &members); err != nil {
		return nil, fmt.Errorf("record is not a JSON object: %w", err)
	}
	delete(members, "signature")
	keys := make([]string, 0, len(members))
	size := 2
	for k, v := range members {
		keys = append(keys, k)
		size += len(k) + len(v) + 4
	}
	slices.SortFunc(keys, compareUTF16)
	var b strings.Builder
	b.Grow(size)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(&b, k)
		b.WriteByte(':')
		b.Write(members[k])
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// VerifyCanonical is Verify for a record already in canonical form.
func VerifyCanonical(pub ed25519.PublicKey, canonical []byte, signature string) error {
	if _, err := decodeSignature(signature); err != nil {
		return err
	}
	msg, err := SigningInputOf(canonical)
	if err != nil {
		return err
	}
	return verifySignature(pub, msg, signature)
}

// compareUTF16 orders property names as RFC 8785 §3.2.3 does: by their
// UTF-16 code units, which differs from byte order above U+FFFF.
func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

// writeString writes s as an RFC 8785 string: only the quotation mark,
// the reverse solidus and control characters are escaped, the short forms
// where JSON has them.
func writeString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\f':
			b.WriteString(`\f`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
