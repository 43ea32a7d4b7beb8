package natsbus_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
)

func records(n, size int) ([][]byte, []string) {
	recs, ids := make([][]byte, n), make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("r%d", i)
		recs[i] = []byte(fmt.Sprintf(`{"id":%q,"pad":%q}`, ids[i], strings.Repeat("x", size)))
	}
	return recs, ids
}

func TestBundle(t *testing.T) {
	t.Run("OK_RecordsRoundTrip", func(t *testing.T) {
		recs, ids := records(250, 10)
		msgs := natsbus.Bundle("farm.submitted.x", recs, ids)
		if len(msgs) != 3 {
			t.Fatalf("%d messages, want 3 (100, 100, 50 records)", len(msgs))
		}
		var got [][]byte
		for _, m := range msgs {
			if m.Subject != "farm.submitted.x" {
				t.Errorf("subject %q", m.Subject)
			}
			if !strings.HasPrefix(m.Header.Get(jetstream.MsgIDHeader), "bundle:") {
				t.Errorf("message ID %q, want a bundle's", m.Header.Get(jetstream.MsgIDHeader))
			}
			rs, ok := natsbus.Records(m.Header, m.Data)
			if !ok {
				t.Fatalf("Records refused a bundle of %s records", m.Header.Get(natsbus.HeaderRecords))
			}
			got = append(got, rs...)
		}
		if len(got) != len(recs) {
			t.Fatalf("%d records back, want %d", len(got), len(recs))
		}
		for i := range recs {
			if !bytes.Equal(got[i], recs[i]) {
				t.Fatalf("record %d = %s, want %s", i, got[i], recs[i])
			}
		}
	})
	t.Run("OK_SameRecordsSameIDs", func(t *testing.T) {
		recs, ids := records(30, 10)
		a := natsbus.Bundle("s", recs, ids)[0].Header.Get(jetstream.MsgIDHeader)
		b := natsbus.Bundle("s", recs, ids)[0].Header.Get(jetstream.MsgIDHeader)
		c := natsbus.Bundle("s", recs[1:], ids[1:])[0].Header.Get(jetstream.MsgIDHeader)
		if a != b || a == c {
			t.Errorf("ids %q, %q (same records) and %q (one fewer): want the first two equal, the third different", a, b, c)
		}
	})
	t.Run("OK_OneRecordIsAPlainMessage", func(t *testing.T) {
		recs, ids := records(1, 10)
		m := natsbus.Bundle("s", recs, ids)[0]
		if m.Header.Get(jetstream.MsgIDHeader) != "r0" || m.Header.Get(natsbus.HeaderRecords) != "" || !bytes.Equal(m.Data, recs[0]) {
			t.Errorf("one record: id %q, %s %q, data %s; want the record as it was sent before bundles",
				m.Header.Get(jetstream.MsgIDHeader), natsbus.HeaderRecords, m.Header.Get(natsbus.HeaderRecords), m.Data)
		}
	})
	t.Run("OK_BytesBounded", func(t *testing.T) {
		recs, ids := records(12, 100<<10) // 100 KiB each
		big, _ := records(1, natsbus.MaxBundleBytes+1)
		recs, ids = append(recs, big...), append(ids, "big")
		msgs := natsbus.Bundle("s", recs, ids)
		n := 0
		for _, m := range msgs {
			rs, _ := natsbus.Records(m.Header, m.Data)
			n += len(rs)
			if len(rs) > 1 && len(m.Data) > natsbus.MaxBundleBytes {
				t.Errorf("a bundle of %d bytes, want at most %d", len(m.Data), natsbus.MaxBundleBytes)
			}
		}
		last := msgs[len(msgs)-1]
		if n != len(recs) || last.Header.Get(jetstream.MsgIDHeader) != "big" {
			t.Errorf("%d records in %d messages, last %q; want all %d, the oversized one alone", n, len(msgs), last.Header.Get(jetstream.MsgIDHeader), len(recs))
		}
	})
	t.Run("ErrMalformed", func(t *testing.T) {
		recs, ids := records(3, 10)
		m := natsbus.Bundle("s", recs, ids)[0]
		for name, data := range map[string][]byte{
			"fewer lines": bytes.Join(recs[:2], []byte("\n")),
			"more lines":  append(bytes.Join(recs, []byte("\n")), "\n{}"...),
			"empty line":  []byte("{}\n\n{}"),
		} {
			if _, ok := natsbus.Records(m.Header, data); ok {
				t.Errorf("%s: Records accepted it", name)
			}
		}
		m.Header.Set(natsbus.HeaderRecords, "many")
		if _, ok := natsbus.Records(m.Header, m.Data); ok {
			t.Errorf("a count that is not a number: Records accepted it")
		}
	})
}

// TestConsumerBundles: handlers see one message per record; the bundle is
// delivered again while a record fails for a reason that may pass, and a
// refused record is dead-lettered alone.
func TestConsumerBundles(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	const subject = "farm.submitted.bundled"
	recs := [][]byte{[]byte(`{"id":"a"}`), []byte(`{"id":"bad"}`), []byte(`{"id":"c"}`)}
	bundle := natsbus.Bundle(subject, recs, []string{"a", "bad", "c"})[0]

	var mu sync.Mutex
	seen := map[string]int{}
	seqs := map[string]uint64{}
	var settleErr error
	runBatch(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "bundled", FilterSubjects: []string{subject}},
		func(ctx context.Context, msgs []jetstream.Msg) []error {
			mu.Lock()
			defer mu.Unlock()
			errs := make([]error, len(msgs))
			for i, m := range msgs {
				d := string(m.Data())
				seen[d]++
				md, err := m.Metadata()
				if err != nil {
					t.Errorf("metadata of %s: %v", d, err)
					continue
				}
				seqs[d] = md.Sequence.Stream
				if m.Subject() != subject {
					t.Errorf("subject %q, want %q", m.Subject(), subject)
				}
				switch {
				case d == `{"id":"bad"}`:
					errs[i] = apperr.Errorf(apperr.Invalid, "not a record we take")
				case d == `{"id":"c"}` && seen[d] == 1:
					errs[i] = fmt.Errorf("database unavailable")
					settleErr = m.Ack()
				}
			}
			return errs
		})
	if _, err := natsbus.PublishAll(t.Context(), js, []*nats.Msg{bundle}); err != nil {
		t.Fatal(err)
	}
	dl := deadLetters(t, js, 1)[0]
	waitFor(t, func() bool { return ackPending(t, js, "bundled") == 0 })

	mu.Lock()
	defer mu.Unlock()
	if seen[`{"id":"a"}`] != 2 || seen[`{"id":"c"}`] != 2 || seen[`{"id":"bad"}`] != 2 {
		t.Errorf("handled %v; want each record twice: the bundle again, whole, after c failed", seen)
	}
	if seqs[`{"id":"a"}`] != seqs[`{"id":"c"}`] {
		t.Errorf("stream sequences %v; want the bundle's for each record", seqs)
	}
	if settleErr == nil {
		t.Errorf("a handler acked a record of a bundle; want an error: the runner settles the bundle")
	}
	if string(dl.Data()) != `{"id":"bad"}` || dl.Subject() != "dead."+subject {
		t.Errorf("dead letter %s on %s; want the refused record alone, on dead.%s", dl.Data(), dl.Subject(), subject)
	}
	if got := dl.Headers().Get(jetstream.MsgIDHeader); got != "dead:bundled:"+bundle.Header.Get(jetstream.MsgIDHeader)+"#1" {
		t.Errorf("dead letter id %q; want the bundle's id and the record's place", got)
	}
	if got := dl.Headers().Get(natsbus.HeaderRecords); got != "" {
		t.Errorf("dead letter has %s %q; want none: it is one record", natsbus.HeaderRecords, got)
	}
	if got := dl.Headers().Get(natsbus.HeaderDeadNotice); !strings.Contains(got, "not a record we take") {
		t.Errorf("notice %q, want the handler's", got)
	}
}

// TestConsumerBundles_OneByOne: a Handler gets a bundle's records one by
// one, and the bundle is acked once all are handled.
func TestConsumerBundles_OneByOne(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	const subject = "farm.submitted.onebyone"
	var mu sync.Mutex
	var seen []string
	run(t, js, natsbus.ConsumerConfig{Stream: natsbus.StreamFarm, Durable: "onebyone", FilterSubjects: []string{subject}},
		func(ctx context.Context, msg jetstream.Msg) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, string(msg.Data()))
			return nil
		})
	recs, ids := records(3, 1)
	if _, err := natsbus.PublishAll(t.Context(), js, natsbus.Bundle(subject, recs, ids)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 3 })
	waitFor(t, func() bool { return ackPending(t, js, "onebyone") == 0 })
	mu.Lock()
	defer mu.Unlock()
	for i, r := range recs {
		if seen[i] != string(r) {
			t.Errorf("record %d handled as %s, want %s", i, seen[i], r)
		}
	}
}
