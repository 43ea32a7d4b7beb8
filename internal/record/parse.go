package record

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/tani-platform/tani/internal/apperr"
)

// Limits of the strict record parser. A record is small: its largest part
// is a plot boundary of at most MaxPolygonPositions positions, well under
// MaxRecordBytes even pretty-printed.
const (
	// MaxRecordBytes is the largest record accepted, as sent.
	MaxRecordBytes = 1 << 20
	// maxDepth bounds nesting; a record nests six levels deep (record,
	// payload, boundary, coordinates, ring, position).
	maxDepth = 16
	// maxSafeNumber is 2^53: from there on a 64-bit float, and so RFC 8785
	// canonical JSON, no longer tells neighbouring integers apart.
	maxSafeNumber = 1 << 53
)

// kind is the JSON type of a parsed value.
type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k kind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

// value is one strictly parsed JSON value. Object members are kept in RFC
// 8785 order (by the UTF-16 code units of their keys), array elements in
// document order with empty keys. An array of numbers only (a position)
// keeps them in nums instead: boundaries have thousands.
type value struct {
	kind kind
	b    bool
	num  float64
	str  string
	kids []member
	nums []float64
}

// elems is the number of elements of an array.
func (v *value) elems() int { return len(v.kids) + len(v.nums) }

// elem returns element i of an array.
func (v *value) elem(i int) *value {
	if v.nums != nil {
		return &value{kind: kindNumber, num: v.nums[i]}
	}
	return &v.kids[i].val
}

type member struct {
	key string
	val value
}

// pathElem is one step of the path to a value, for field errors. Indexes
// are kept as numbers so that the path costs nothing unless it is printed.
type pathElem struct {
	key   string
	index int // ≥ 0 for an array element
}

// formatPath names a value as field errors do: payload.boundary.coordinates[0][3].
func formatPath(path []pathElem) string {
	var b strings.Builder
	for _, e := range path {
		if e.index >= 0 {
			fmt.Fprintf(&b, "[%d]", e.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(shortKey(e.key))
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}

// shortKey keeps an attacker's megabyte-long key out of error messages.
func shortKey(k string) string {
	const limit = 64
	if len(k) <= limit {
		return k
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(k[cut]) {
		cut--
	}
	return k[:cut] + "…"
}

// parser reads one JSON text strictly. It refuses what would let two
// readers of the same bytes disagree (duplicate keys, keys that differ
// only in letter case, numbers canonical JSON cannot carry exactly,
// invalid UTF-8, lone surrogates) and what Postgres cannot store or a
// reviewer's screen should not render (NUL and other control characters).
type parser struct {
	data  []byte
	pos   int
	depth int
	path  []pathElem
	stack []member  // children of the open arrays and objects
	nums  []float64 // elements of the open arrays of numbers only
	err   *apperr.FieldError
	buf   []byte // scratch for strings with escapes
}

// parsers keeps parsers' scratch space between records: a boundary's
// thousands of positions would otherwise grow a fresh stack every time.
var parsers = sync.Pool{New: func() any { return new(parser) }}

// parseObject parses data, which must be exactly one JSON object.
func parseObject(data []byte) (value, *apperr.FieldError) {
	p := parsers.Get().(*parser)
	defer func() {
		*p = parser{stack: p.stack[:0], nums: p.nums[:0], path: p.path[:0], buf: p.buf[:0]}
		parsers.Put(p)
	}()
	p.data = data
	p.skipSpace()
	if p.pos >= len(p.data) || p.data[p.pos] != '{' {
		return value{}, &apperr.FieldError{Field: "body", Message: "must be a JSON object"}
	}
	v := p.value()
	if p.err != nil {
		return value{}, p.err
	}
	p.skipSpace()
	if p.pos < len(p.data) {
		return value{}, &apperr.FieldError{Field: "body", Message: fmt.Sprintf("unexpected data after the JSON object at byte %d", p.pos)}
	}
	return v, nil
}

func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = &apperr.FieldError{Field: formatPath(p.path), Message: fmt.Sprintf(format, args...)}
	}
}

func (p *parser) syntax(what string) {
	if p.pos >= len(p.data) {
		p.fail("malformed JSON: unexpected end, %s", what)
		return
	}
	p.fail("malformed JSON at byte %d: %s", p.pos, what)
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value() value {
	p.skipSpace()
	if p.pos >= len(p.data) {
		p.syntax("a value is missing")
		return value{}
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		p.pos++
		s, _ := p.string()
		return value{kind: kindString, str: s}
	case c == 't':
		return p.literal("true", value{kind: kindBool, b: true})
	case c == 'f':
		return p.literal("false", value{kind: kindBool})
	case c == 'n':
		return p.literal("null", value{kind: kindNull})
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	p.syntax("expected a value")
	return value{}
}

func (p *parser) literal(word string, v value) value {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		p.syntax("expected " + word)
		return value{}
	}
	p.pos += len(word)
	return v
}

func (p *parser) enter() bool {
	p.depth++
	if p.depth > maxDepth {
		p.fail("nests deeper than %d levels", maxDepth)
		return false
	}
	return true
}

// push adds a child to the stack, doubling it when full: append's gentler
// growth for large slices would copy a boundary's stack many times over.
func (p *parser) push(m member) {
	if len(p.stack) == cap(p.stack) {
		p.stack = slices.Grow(p.stack, max(len(p.stack), 64))
	}
	p.stack = append(p.stack, m)
}

// children moves the members collected since base off the stack.
func (p *parser) children(base int) []member {
	if len(p.stack) == base {
		return nil
	}
	kids := make([]member, len(p.stack)-base)
	copy(kids, p.stack[base:])
	clear(p.stack[base:])
	p.stack = p.stack[:base]
	return kids
}

func (p *parser) array() value {
	p.pos++ // [
	if !p.enter() {
		return value{}
	}
	defer func() { p.depth-- }()
	base, numBase := len(p.stack), len(p.nums)
	onlyNums := true
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return value{kind: kindArray}
	}
	for i := 0; ; i++ {
		p.path = append(p.path, pathElem{index: i})
		v := p.value()
		p.path = p.path[:len(p.path)-1]
		if p.err != nil {
			return value{}
		}
		switch {
		case onlyNums && v.kind == kindNumber:
			if len(p.nums) == cap(p.nums) {
				p.nums = slices.Grow(p.nums, max(len(p.nums), 64))
			}
			p.nums = append(p.nums, v.num)
		case onlyNums:
			onlyNums = false
			for _, f := range p.nums[numBase:] {
				p.push(member{val: value{kind: kindNumber, num: f}})
			}
			p.nums = p.nums[:numBase]
			fallthrough
		default:
			p.push(member{val: v})
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			p.syntax("an array is not closed")
			return value{}
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			continue
		case ']':
			p.pos++
			if onlyNums {
				nums := slices.Clone(p.nums[numBase:])
				p.nums = p.nums[:numBase]
				return value{kind: kindArray, nums: nums}
			}
			return value{kind: kindArray, kids: p.children(base)}
		}
		p.syntax("expected , or ] in an array")
		return value{}
	}
}

func (p *parser) object() value {
	p.pos++ // {
	if !p.enter() {
		return value{}
	}
	defer func() { p.depth-- }()
	base := len(p.stack)
	var folded map[string]string // folded key → key, once the object is large
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return value{kind: kindObject}
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			p.syntax("expected a quoted key")
			return value{}
		}
		p.pos++
		key, ok := p.string()
		if !ok {
			return value{}
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			p.syntax("expected : after a key")
			return value{}
		}
		p.pos++
		p.path = append(p.path, pathElem{key: key, index: -1})
		v := p.value()
		if p.err == nil {
			folded = p.sameKey(base, key, folded)
		}
		p.path = p.path[:len(p.path)-1]
		if p.err != nil {
			return value{}
		}
		p.push(member{key: key, val: v})
		p.skipSpace()
		if p.pos >= len(p.data) {
			p.syntax("an object is not closed")
			return value{}
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			continue
		case '}':
			p.pos++
			kids := p.children(base)
			slices.SortFunc(kids, func(a, b member) int { return compareUTF16Keys(a.key, b.key) })
			return value{kind: kindObject, kids: kids}
		}
		p.syntax("expected , or } in an object")
		return value{}
	}
}

// sameKey refuses key if an earlier member of the open object (from base
// on the stack) has the same key or one equal to it under Unicode case
// folding. encoding/json matches keys to fields that way, so a
// case-variant key is a second, hidden reading of the same field. Small
// objects are searched; from 16 members on, folded keys go in a map, so
// that an object of many keys costs linear time.
func (p *parser) sameKey(base int, key string, folded map[string]string) map[string]string {
	earlier := p.stack[base:]
	var first string
	var found bool
	if folded == nil && len(earlier) < 16 {
		for _, m := range earlier {
			if strings.EqualFold(m.key, key) {
				first, found = m.key, true
				break
			}
		}
	} else {
		if folded == nil {
			folded = make(map[string]string, 2*len(earlier))
			for _, m := range earlier {
				folded[foldKey(m.key)] = m.key
			}
		}
		fk := foldKey(key)
		first, found = folded[fk]
		if !found {
			folded[fk] = key
		}
	}
	switch {
	case !found:
	case first == key:
		p.fail("appears twice in the same object; every key must appear once")
	default:
		p.fail("differs from the key %q only in letter case; keys must be unique and spelled exactly", shortKey(first))
	}
	return folded
}

// foldKey maps s to one representative of the strings strings.EqualFold
// holds equal to it: every character becomes the least of its simple case
// folding orbit.
func foldKey(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b = utf8.AppendRune(b, least)
	}
	return string(b)
}

// string reads a string after its opening quote and returns its value.
func (p *parser) string() (string, bool) {
	start := p.pos
	// Fast path: printable ASCII without escapes, the common case.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			return s, true
		}
		if c == '\\' || c < 0x20 || c >= 0x7f {
			break
		}
		p.pos++
	}
	b := append(p.buf[:0], p.data[start:p.pos]...)
	for {
		if p.pos >= len(p.data) {
			p.syntax("a string is not closed")
			return "", false
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			p.buf = b
			return string(b), true
		case c == '\\':
			r, ok := p.escape()
			if !ok {
				return "", false
			}
			if !p.allowedRune(r) {
				return "", false
			}
			b = utf8.AppendRune(b, r)
		case c < 0x80:
			if !p.allowedRune(rune(c)) {
				return "", false
			}
			b = append(b, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				p.fail("is not valid UTF-8 (byte 0x%02x at %d)", c, p.pos)
				return "", false
			}
			if !p.allowedRune(r) {
				return "", false
			}
			b = append(b, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
}

// escape reads one escape sequence at p.pos (the backslash) and returns
// the character it stands for, pairing UTF-16 surrogates.
func (p *parser) escape() (rune, bool) {
	if p.pos+1 >= len(p.data) {
		p.syntax("an escape is cut short")
		return 0, false
	}
	c := p.data[p.pos+1]
	p.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return 0, false
		}
		if !utf16.IsSurrogate(r) {
			return r, true
		}
		if r >= 0xdc00 {
			p.fail("holds a lone UTF-16 surrogate \\u%04x", r)
			return 0, false
		}
		if p.pos+1 >= len(p.data) || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
			p.fail("holds a lone UTF-16 surrogate \\u%04x", r)
			return 0, false
		}
		p.pos += 2
		lo, ok := p.hex4()
		if !ok {
			return 0, false
		}
		if lo < 0xdc00 || lo > 0xdfff {
			p.fail("holds a lone UTF-16 surrogate \\u%04x", r)
			return 0, false
		}
		return utf16.DecodeRune(r, lo), true
	}
	p.pos -= 2
	p.syntax(fmt.Sprintf("unknown escape \\%c", c))
	return 0, false
}

func (p *parser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		p.syntax("a \\u escape needs four hex digits")
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			p.syntax("a \\u escape needs four hex digits")
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// allowedRune refuses control characters: NUL, which Postgres text and
// jsonb cannot hold, and the others (terminal escapes, bidirectional
// overrides), which can disguise a name on a reviewer's screen or in a log.
func (p *parser) allowedRune(r rune) bool {
	if !forbiddenRune(r) {
		return true
	}
	p.fail("must not contain control characters (found U+%04X)", r)
	return false
}

// forbiddenRune is true for C0 and C1 control characters, DEL and the
// Unicode bidirectional embedding, override and isolate controls.
func forbiddenRune(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// number reads an RFC 8259 number and refuses what RFC 8785 cannot carry
// exactly: magnitudes from 2^53 on (where IEEE 754 doubles skip integers),
// overflow, and non-zero numbers too small to be anything but zero.
func (p *parser) number() value {
	start := p.pos
	nonZero := false
	if p.data[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			if p.data[p.pos] != '0' {
				nonZero = true
			}
			p.pos++
			n++
		}
		return n
	}
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
	case p.pos < len(p.data) && p.data[p.pos] >= '1' && p.data[p.pos] <= '9':
		digits()
	default:
		p.syntax("malformed number")
		return value{}
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			p.syntax("malformed number: digits must follow the decimal point")
			return value{}
		}
	}
	mantissaNonZero := nonZero
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			p.syntax("malformed number: digits must follow the exponent")
			return value{}
		}
	}
	// ParseFloat keeps nothing of its argument (its errors copy it), so
	// the literal is passed without copying it into a string first.
	lit := p.data[start:p.pos]
	f, err := strconv.ParseFloat(unsafe.String(&lit[0], len(lit)), 64)
	switch {
	case err != nil || math.IsInf(f, 0):
		p.fail("is a number out of range")
		return value{}
	case math.Abs(f) >= maxSafeNumber:
		p.fail("is a number of magnitude 2^53 or more, which canonical JSON cannot carry exactly")
		return value{}
	case f == 0 && mantissaNonZero:
		p.fail("is a number too small to be told apart from zero")
		return value{}
	}
	return value{kind: kindNumber, num: f}
}

// compareUTF16Keys orders keys as RFC 8785 §3.2.3 does, by UTF-16 code
// units, without allocating. UTF-16 order differs from code point order
// only between a character above U+FFFF and one in U+E000–U+FFFF.
func compareUTF16Keys(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			return utf16Unit(ra) - utf16Unit(rb)
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

// utf16Unit is the first UTF-16 code unit of r, with its second unit as a
// tie-breaker (both are compared when the first units are equal).
func utf16Unit(r rune) int {
	if r < 0x10000 {
		return int(r) << 16
	}
	hi, lo := utf16.EncodeRune(r)
	return int(hi)<<16 | int(lo)
}

// appendCanonical appends the RFC 8785 form of v.
func appendCanonical(b []byte, v *value) []byte {
	switch v.kind {
	case kindNull:
		return append(b, "null"...)
	case kindBool:
		if v.b {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case kindNumber:
		return appendNumber(b, v.num)
	case kindString:
		return appendString(b, v.str)
	case kindArray:
		b = append(b, '[')
		for i, f := range v.nums {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendNumber(b, f)
		}
		for i := range v.kids {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, &v.kids[i].val)
		}
		return append(b, ']')
	}
	b = append(b, '{')
	for i := range v.kids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v.kids[i].key)
		b = append(b, ':')
		b = appendCanonical(b, &v.kids[i].val)
	}
	return append(b, '}')
}

// appendNumber writes f as ECMAScript's Number.prototype.toString does
// (RFC 8785 §3.2.2.3): the shortest digits that read back as f, in
// positional notation from 1e-6 up to 1e21, in exponential notation beyond.
func appendNumber(b []byte, f float64) []byte {
	if f == 0 {
		return append(b, '0') // also for -0
	}
	abs := math.Abs(f)
	if abs >= 1e-6 && abs < 1e21 {
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'e', -1, 64)
	// Go writes e-07 and e+09 where ECMAScript writes e-7 and e+9.
	if e := slices.Index(b[start:], 'e'); e >= 0 && start+e+2 < len(b) && b[start+e+2] == '0' {
		b = slices.Delete(b, start+e+2, start+e+3)
	}
	return b
}

// appendString writes s as an RFC 8785 string: only the quotation mark,
// the reverse solidus and control characters are escaped, with JSON's
// short forms where it has them.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		start = i + 1
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
