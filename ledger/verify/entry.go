package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// entryHeader is the first line of every entry. It versions the encoding so
// that a later format can be told apart from this one forever.
const entryHeader = "tani.ledger/entry/v1"

// EntryType says what a journal entry records.
type EntryType string

const (
	// TypeRevision is one revision of one record.
	TypeRevision EntryType = "revision"
	// TypeRedaction records that the payload of an earlier revision was
	// erased (consent withdrawn, erasure request). The revision's leaf, and
	// so its payload hash, stays in the log.
	TypeRedaction EntryType = "redaction"
)

// Entry is the decoded form of one leaf of the log. The leaf commits to the
// payload's SHA-256, never to the payload itself, so that a payload can be
// erased without changing any leaf, root or proof.
type Entry struct {
	Type     EntryType
	RecordID string
	// Kind names what the revision is about, e.g. "plot.mapped".
	// Empty for redactions.
	Kind     string
	Revision int64
	// PayloadHash is the SHA-256 of the revision's payload; for a redaction,
	// that of the payload it erased.
	PayloadHash [sha256.Size]byte
	// OccurredAt is when the recorded fact happened, by the recorder's clock.
	// Zero for redactions.
	OccurredAt time.Time
	// SignatureRef points at the device or agent signature over the payload
	// (kept by the service that captured it). Empty when there is none.
	SignatureRef string
	// Target is the leaf index of the redacted revision (redactions only).
	Target int64
	// Reason says why a payload was redacted (redactions only).
	Reason string
	// LoggedAt is when the sequencer appended the entry.
	LoggedAt time.Time
}

// timeFormat is RFC 3339 in UTC with exactly six fractional digits, the
// precision PostgreSQL keeps, so that times survive a round trip unchanged.
const timeFormat = "2006-01-02T15:04:05.000000Z"

// Marshal returns the canonical bytes of e: the exact leaf data. It fails on
// fields that could make the encoding ambiguous.
func (e Entry) Marshal() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, 192+len(e.RecordID)+len(e.Kind)+len(e.SignatureRef)+len(e.Reason)))
}

// AppendBinary appends the canonical bytes of e (what Marshal returns) to
// b, so that a caller encoding many entries can reuse one buffer.
func (e Entry) AppendBinary(b []byte) ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	line := func(k, v string) { b = append(append(append(append(b, k...), ' '), v...), '\n') }
	b = append(b, entryHeader+"\n"...)
	line("type", string(e.Type))
	line("record", e.RecordID)
	var hash [44]byte
	base64.StdEncoding.Encode(hash[:], e.PayloadHash[:])
	switch e.Type {
	case TypeRevision:
		line("kind", e.Kind)
		b = strconv.AppendInt(append(b, "revision "...), e.Revision, 10)
		b = append(append(append(b, "\npayload-sha256 "...), hash[:]...), '\n')
		b = append(appendTime(append(b, "occurred "...), e.OccurredAt), '\n')
		line("signature", e.SignatureRef)
	case TypeRedaction:
		b = strconv.AppendInt(append(b, "revision "...), e.Revision, 10)
		b = append(append(append(b, "\npayload-sha256 "...), hash[:]...), '\n')
		b = strconv.AppendInt(append(b, "target "...), e.Target, 10)
		b = append(b, '\n')
		line("reason", e.Reason)
	}
	return appendLogged(b, e.LoggedAt), nil
}

// loggedLine is the last line of every entry: "logged <time>\n".
const loggedLine = len("logged ") + len(timeFormat) + 1

func appendLogged(b []byte, t time.Time) []byte {
	return append(appendTime(append(b, "logged "...), t), '\n')
}

// appendTime appends t in timeFormat: what t.UTC().AppendFormat does,
// written out for the years 0 to 9999, since every entry carries two times
// and audits encode millions of entries.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timeFormat)
	}
	hour, minute, sec := t.Clock()
	digits := func(b []byte, v, n int) []byte {
		for i := n - 1; i >= 0; i-- {
			b = append(b, 0)
		}
		for i := len(b) - 1; n > 0; i, n = i-1, n-1 {
			b[i] = byte('0' + v%10)
			v /= 10
		}
		return b
	}
	b = digits(b, year, 4)
	b = digits(append(b, '-'), int(month), 2)
	b = digits(append(b, '-'), day, 2)
	b = digits(append(b, 'T'), hour, 2)
	b = digits(append(b, ':'), minute, 2)
	b = digits(append(b, ':'), sec, 2)
	b = digits(append(b, '.'), t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// Stamp returns a copy of the canonical entry data with its log time set
// to t, kept to the microsecond: a sequencer encodes and checks an entry
// once, before it knows when the entry will be logged, and stamps it then.
func Stamp(data []byte, t time.Time) ([]byte, error) {
	i := len(data) - loggedLine
	if i < 0 || !bytes.HasPrefix(data[i:], []byte("logged ")) || data[len(data)-1] != '\n' {
		return nil, errors.New("entry: no log time to stamp")
	}
	return appendLogged(append(make([]byte, 0, len(data)), data[:i]...), t.Truncate(time.Microsecond)), nil
}

func (e Entry) validate() error {
	switch e.Type {
	case TypeRevision:
		if err := checkText("kind", e.Kind, false); err != nil {
			return err
		}
		if err := checkText("signature", e.SignatureRef, true); err != nil {
			return err
		}
		if e.OccurredAt.IsZero() {
			return errors.New("entry: occurred time is zero")
		}
	case TypeRedaction:
		if e.Target < 0 {
			return fmt.Errorf("entry: negative redaction target %d", e.Target)
		}
		if err := checkText("reason", e.Reason, false); err != nil {
			return err
		}
	default:
		return fmt.Errorf("entry: unknown type %q", e.Type)
	}
	if err := checkText("record", e.RecordID, false); err != nil {
		return err
	}
	if e.Revision < 1 {
		return fmt.Errorf("entry: revision %d is not positive", e.Revision)
	}
	if e.LoggedAt.IsZero() {
		return errors.New("entry: logged time is zero")
	}
	return nil
}

// checkText rejects values that would break the line format or hide
// characters from a human auditor reading the entry.
func checkText(field, v string, emptyOK bool) error {
	if v == "" && !emptyOK {
		return fmt.Errorf("entry: %s is empty", field)
	}
	if len(v) > 1024 {
		return fmt.Errorf("entry: %s is longer than 1024 bytes", field)
	}
	// Printable ASCII, the usual case, needs only its ends looked at.
	ascii := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f {
			ascii = false
			break
		}
	}
	if ascii {
		if v != "" && (v[0] == ' ' || v[len(v)-1] == ' ') {
			return fmt.Errorf("entry: %s has leading or trailing space", field)
		}
		return nil
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("entry: %s is not valid UTF-8", field)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("entry: %s contains control character %U", field, r)
		}
	}
	if strings.TrimSpace(v) != v {
		return fmt.Errorf("entry: %s has leading or trailing space", field)
	}
	return nil
}

// ParseEntry decodes leaf data. Only canonical encodings are accepted: the
// result must marshal back to exactly data, so one entry has one encoding.
func ParseEntry(data []byte) (Entry, error) {
	text := string(data)
	if !strings.HasSuffix(text, "\n") {
		return Entry{}, errors.New("entry: missing final newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) == 0 || lines[0] != entryHeader {
		return Entry{}, fmt.Errorf("entry: first line is not %q", entryHeader)
	}
	fields := make(map[string]string, len(lines))
	for i, l := range lines[1:] {
		k, v, ok := strings.Cut(l, " ")
		if !ok {
			return Entry{}, fmt.Errorf("entry: line %d has no value", i+2)
		}
		if _, dup := fields[k]; dup {
			return Entry{}, fmt.Errorf("entry: field %q repeated", k)
		}
		fields[k] = v
	}
	var e Entry
	var err error
	e.Type = EntryType(fields["type"])
	e.RecordID = fields["record"]
	e.Kind = fields["kind"]
	e.SignatureRef = fields["signature"]
	e.Reason = fields["reason"]
	if e.Revision, err = strconv.ParseInt(fields["revision"], 10, 64); err != nil {
		return Entry{}, fmt.Errorf("entry: revision: %w", err)
	}
	h, err := base64.StdEncoding.Strict().DecodeString(fields["payload-sha256"])
	if err != nil || len(h) != sha256.Size {
		return Entry{}, fmt.Errorf("entry: payload-sha256 is not a base64 SHA-256")
	}
	copy(e.PayloadHash[:], h)
	if e.LoggedAt, err = time.Parse(timeFormat, fields["logged"]); err != nil {
		return Entry{}, fmt.Errorf("entry: logged: %w", err)
	}
	switch e.Type {
	case TypeRevision:
		if e.OccurredAt, err = time.Parse(timeFormat, fields["occurred"]); err != nil {
			return Entry{}, fmt.Errorf("entry: occurred: %w", err)
		}
	case TypeRedaction:
		if e.Target, err = strconv.ParseInt(fields["target"], 10, 64); err != nil {
			return Entry{}, fmt.Errorf("entry: target: %w", err)
		}
	}
	again, err := e.Marshal()
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(again, data) {
		return Entry{}, errors.New("entry: not in canonical form")
	}
	return e, nil
}
