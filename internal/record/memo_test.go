package record

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"
)

// memoRecord is a decoded-looking record with distinct canonical bytes.
func memoRecord(i int) *Record {
	return &Record{Env: Envelope{ID: fmt.Sprint("r", i)}, Canonical: fmt.Appendf(nil, `{"id":"r%d"}`, i)}
}

func TestMemo(t *testing.T) {
	key := make(ed25519.PublicKey, ed25519.PublicKeySize)
	t.Run("OK_EachReaderTakesOnce", func(t *testing.T) {
		m := NewMemo(2, 10, time.Minute)
		r := memoRecord(1)
		m.Put(r, key)
		for reader := range 2 {
			got, k, ok := m.Take(Hash(r.Canonical), r.Canonical)
			if !ok || got.Env.ID != "r1" || !k.Equal(key) {
				t.Fatalf("reader %d: Take = %v, %x, %v; want the record and its key", reader, got.Env.ID, k, ok)
			}
		}
		if _, _, ok := m.Take(Hash(r.Canonical), r.Canonical); ok || m.Len() != 0 {
			t.Errorf("a third take hit (or %d records kept), want the record forgotten after both readers", m.Len())
		}
	})
	t.Run("ErrOtherBytesMiss", func(t *testing.T) {
		m := NewMemo(1, 10, time.Minute)
		r := memoRecord(1)
		m.Put(r, key)
		changed := append([]byte(nil), r.Canonical...)
		changed[len(changed)-2]++
		if _, _, ok := m.Take(Hash(r.Canonical), changed); ok {
			t.Error("bytes other than the checked ones were taken")
		}
		if _, _, ok := m.Take(Hash(changed), changed); ok {
			t.Error("unchecked bytes were taken")
		}
		if _, _, ok := m.Take(Hash(r.Canonical), r.Canonical); !ok {
			t.Error("the checked bytes missed after the failed attempts")
		}
	})
	t.Run("OK_FullRemembersNoMoreUntilExpiry", func(t *testing.T) {
		now := time.Unix(1_700_000_000, 0)
		m := NewMemo(1, 2, time.Minute)
		m.now = func() time.Time { return now }
		for i := range 3 {
			m.Put(memoRecord(i), key)
		}
		if m.Len() != 2 {
			t.Fatalf("holds %d, want the capacity 2", m.Len())
		}
		if _, _, ok := m.Take(Hash(memoRecord(2).Canonical), memoRecord(2).Canonical); ok {
			t.Error("a record put while full was remembered")
		}
		now = now.Add(2 * time.Minute)
		m.Put(memoRecord(3), key)
		if _, _, ok := m.Take(Hash(memoRecord(0).Canonical), memoRecord(0).Canonical); ok {
			t.Error("an expired record was taken")
		}
		if _, _, ok := m.Take(Hash(memoRecord(3).Canonical), memoRecord(3).Canonical); !ok {
			t.Error("a record put after the old ones expired was not remembered")
		}
	})
	t.Run("OK_QueueBoundedBehindAnUntakenRecord", func(t *testing.T) {
		m := NewMemo(1, 4, time.Hour)
		m.Put(memoRecord(-1), key) // never taken: refused downstream
		for i := range 1000 {
			r := memoRecord(i)
			m.Put(r, key)
			if _, _, ok := m.Take(Hash(r.Canonical), r.Canonical); !ok {
				t.Fatalf("record %d missed", i)
			}
		}
		if len(m.queue) > 2*m.capacity+1 {
			t.Errorf("queue holds %d references for %d records, want it bounded", len(m.queue), m.Len())
		}
	})
	t.Run("OK_NilMemo", func(t *testing.T) {
		var m *Memo
		r := memoRecord(1)
		m.Put(r, key)
		if _, _, ok := m.Take(Hash(r.Canonical), r.Canonical); ok || m.Len() != 0 {
			t.Error("a nil memo remembered")
		}
	})
}
