package natsbus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bundles: one message, several records.
//
// JetStream's cost is per message (the store's write, the
// de-duplication, the delivery and the ack): about 50 µs of CPU a message
// in this process (BenchmarkRecordsPerMessage), over a quarter of what
// Tani spent on a record when each record was a message of its own. So a
// publisher that has many records at once (mobile-api, a /sync request)
// sends those of one subject together as a bundle: the records as JSON
// Lines (each one's canonical JSON, which never holds a raw newline, then
// a newline between records) with HeaderRecords saying how many there
// are. A message without that header is one record, as every message was
// before bundles, so a stream may hold both.
//
// Consumers never see a bundle: the runner hands their handler one message
// per record (Units) and settles the bundle by the outcomes of its records;
// a refused record is dead-lettered on its own (see Consumer). Whoever
// must delete a record for good deletes its bundle and publishes the
// others again (internal/forget's Excise).

// HeaderRecords is set on a bundle: how many records its data holds.
const HeaderRecords = "Tani-Records"

// A bundle carries at most MaxBundleRecords records and, unless it is one
// record, MaxBundleBytes of data: well under NATS's default 1 MB payload
// limit, so a bundle fits any server Tani may be pointed at.
const (
	MaxBundleRecords = 100
	MaxBundleBytes   = 512 << 10
)

// Bundle returns the messages that carry records on subject, in order:
// consecutive records joined into bundles of at most MaxBundleRecords and
// MaxBundleBytes. ids are the records' ids (as long as records), from
// which each message's ID is derived: a message of one record has that
// record's id, as before bundles; a bundle's is "bundle:" and a hash of
// its ids in order, so the same records published again in the same
// bundles (a retried request) are de-duplicated by JetStream. Bundle
// panics if ids and records differ in length.
func Bundle(subject string, records [][]byte, ids []string) []*nats.Msg {
	if len(ids) != len(records) {
		panic("natsbus.Bundle: one id per record")
	}
	var msgs []*nats.Msg
	for start := 0; start < len(records); {
		end, size := start+1, len(records[start])
		for end < len(records) && end-start < MaxBundleRecords && size+1+len(records[end]) <= MaxBundleBytes {
			size += 1 + len(records[end])
			end++
		}
		msgs = append(msgs, bundle(subject, records[start:end], ids[start:end]))
		start = end
	}
	return msgs
}

func bundle(subject string, records [][]byte, ids []string) *nats.Msg {
	msg := nats.NewMsg(subject)
	frame(msg, records)
	if len(records) == 1 {
		msg.Header.Set(jetstream.MsgIDHeader, ids[0])
		return msg
	}
	h := sha256.New()
	for i, id := range ids {
		if i > 0 {
			h.Write([]byte{'\n'})
		}
		h.Write([]byte(id))
	}
	msg.Header.Set(jetstream.MsgIDHeader, "bundle:"+hex.EncodeToString(h.Sum(nil)[:16]))
	return msg
}

// Keeping returns msg (a message as delivered) as a new message that
// carries only the records keep: its subject and headers, and a message ID
// derived from msg's and what it keeps, so that the same records kept
// again are de-duplicated. It is how a record is deleted out of a bundle
// (internal/forget's Excise).
func Keeping(msg jetstream.Msg, keep [][]byte) *nats.Msg {
	out := nats.NewMsg(msg.Subject())
	for k, v := range msg.Headers() {
		out.Header[k] = slices.Clone(v)
	}
	frame(out, keep)
	h := sha256.New()
	h.Write([]byte(msg.Headers().Get(jetstream.MsgIDHeader)))
	for _, r := range keep {
		h.Write([]byte{'\n'})
		h.Write(r)
	}
	out.Header.Set(jetstream.MsgIDHeader, "excised:"+hex.EncodeToString(h.Sum(nil)[:16]))
	return out
}

// frame sets msg's data and HeaderRecords to carry records: one record as
// it is, several as JSON Lines.
func frame(msg *nats.Msg, records [][]byte) {
	if len(records) == 1 {
		msg.Data = records[0]
		msg.Header.Del(HeaderRecords)
		return
	}
	msg.Data = bytes.Join(records, []byte{'\n'})
	msg.Header.Set(HeaderRecords, strconv.Itoa(len(records)))
}

// Records returns the records a message's data holds: the data itself
// for a message of one record, the lines of a bundle. ok is false for a
// bundle whose lines are not as many as its header says (or are empty),
// which no publisher of Tani's writes: such a message is refused whole.
func Records(headers nats.Header, data []byte) (records [][]byte, ok bool) {
	n := headers.Get(HeaderRecords)
	if n == "" {
		return [][]byte{data}, true
	}
	want, err := strconv.Atoi(n)
	if err != nil || want < 2 || want > MaxBundleRecords || bytes.Count(data, []byte{'\n'}) != want-1 {
		return nil, false
	}
	records = bytes.Split(data, []byte{'\n'})
	for _, r := range records {
		if len(r) == 0 {
			return nil, false
		}
	}
	return records, true
}

// RecordsIn is how many records a message with headers h carries, by its
// HeaderRecords; a malformed bundle counts as one (it is refused whole).
func RecordsIn(h nats.Header) int {
	n, err := strconv.Atoi(h.Get(HeaderRecords))
	if err != nil || n < 2 {
		return 1
	}
	return n
}

// unit is one record of a bundle, handed to a handler as a message of its
// own: the bundle's subject, headers and metadata (its stream sequence is
// the bundle's), this record's data. The runner settles the bundle, so a
// handler may not.
type unit struct {
	jetstream.Msg // the bundle
	data          []byte
	index         int
}

func (u *unit) Data() []byte { return u.data }

func (u *unit) Ack() error                       { return errUnitSettle }
func (u *unit) DoubleAck(context.Context) error  { return errUnitSettle }
func (u *unit) Nak() error                       { return errUnitSettle }
func (u *unit) NakWithDelay(time.Duration) error { return errUnitSettle }
func (u *unit) InProgress() error                { return errUnitSettle }
func (u *unit) Term() error                      { return errUnitSettle }
func (u *unit) TermWithReason(string) error      { return errUnitSettle }

var errUnitSettle = errors.New("natsbus: a record of a bundle is settled by the consumer runner, with its bundle")

// Whole returns the message msg was delivered in: the bundle of a record
// a consumer handed over, or msg itself.
func Whole(msg jetstream.Msg) jetstream.Msg {
	if u, ok := msg.(*unit); ok {
		return u.Msg
	}
	return msg
}

// units splits a batch of messages into the messages handlers see, one
// per record, and says which message each came from. A malformed bundle
// is handed over whole, and its handler refuses it as it would any record
// it cannot read. Without bundles the batch is returned as it is.
func units(msgs []jetstream.Msg) (out []jetstream.Msg, from []int) {
	bundled := false
	for _, m := range msgs {
		if m.Headers().Get(HeaderRecords) != "" {
			bundled = true
			break
		}
	}
	if !bundled {
		return msgs, nil
	}
	for i, m := range msgs {
		records, ok := Records(m.Headers(), m.Data())
		if !ok || len(records) == 1 {
			out, from = append(out, m), append(from, i)
			continue
		}
		for k, r := range records {
			out, from = append(out, &unit{Msg: m, data: r, index: k}), append(from, i)
		}
	}
	return out, from
}

// Units returns the messages a handler gets for msg: one per record of a
// bundle; msg itself for a message of one record (or a malformed bundle).
func Units(msg jetstream.Msg) []jetstream.Msg {
	out, _ := units([]jetstream.Msg{msg})
	return out
}
