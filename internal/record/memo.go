package record

import (
	"bytes"
	"crypto/ed25519"
	"sync"
	"time"
)

// Memo remembers, inside one process, the records this process has read
// strictly (Decode and CheckPayload) and whose device signature it has
// verified, by their exact canonical bytes. A later stage of the same
// process that receives the same bytes from the stream — ingest after
// /sync, attest after ingest, when they run in one process — takes the
// checked record instead of reading it and verifying its signature again.
//
// It trusts nothing it did not check itself: a record is taken only when
// the bytes received are identical to the bytes that were checked, and
// the signature only stands for the key it was verified with (the taker
// compares it with the device key it looked up). Bytes from anywhere else
// — another process, a forged publish, a replay — miss and are checked
// in full. Every check that depends on the time passes later if it passed
// earlier (they bound dates from above), so a record checked at /sync is
// still a record ingest would accept.
//
// It is bounded: at most capacity records, each kept until every reader
// took it or maxAge passed; when full, new records are not remembered
// (those already remembered are the next the readers take), and they are
// simply checked again downstream.
type Memo struct {
	mu       sync.Mutex
	readers  int
	capacity int
	maxAge   time.Duration
	m        map[[32]byte]*memoEntry
	queue    []memoRef // in the order remembered, for expiry
	now      func() time.Time
	taken    uint64
}

type memoEntry struct {
	rec  Record
	key  ed25519.PublicKey
	left int // readers that have not taken it
	at   time.Time
}

type memoRef struct {
	hash [32]byte
	at   time.Time
}

// Memo bounds used by the composition root: about 1.5 KB per record, so
// about 100 MB when full. A record stays until attest, the last reader,
// takes it; when agents sync a burst (50,000 records in the load tool's
// run), attest falls tens of thousands of records behind /sync, and with
// room for half as many, one record in five was read and verified again
// by ingest and by attest.
const (
	MemoCapacity = 65536
	MemoMaxAge   = 5 * time.Minute
)

// NewMemo returns a memo for records that readers stages of this process
// will each take once. A nil *Memo remembers nothing and never hits.
func NewMemo(readers, capacity int, maxAge time.Duration) *Memo {
	return &Memo{readers: readers, capacity: capacity, maxAge: maxAge, m: map[[32]byte]*memoEntry{}, now: time.Now}
}

// Put remembers r, fully checked, and the key its signature verified
// under. r must not be changed afterwards.
func (m *Memo) Put(r *Record, key ed25519.PublicKey) {
	if m == nil || m.readers < 1 {
		return
	}
	h := Hash(r.Canonical)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	if len(m.m) >= m.capacity {
		return
	}
	rec := *r
	rec.payload = nil
	m.m[h] = &memoEntry{rec: rec, key: key, left: m.readers, at: now}
	m.queue = append(m.queue, memoRef{hash: h, at: now})
}

// Take returns the checked record whose canonical bytes are exactly data
// (hash is their SHA-256, Hash(data)) and the key its signature verified
// under, and counts this reader's take.
func (m *Memo) Take(hash [32]byte, data []byte) (Record, ed25519.PublicKey, bool) {
	if m == nil {
		return Record{}, nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[hash]
	if !ok || !bytes.Equal(e.rec.Canonical, data) {
		return Record{}, nil, false
	}
	if e.left--; e.left <= 0 {
		delete(m.m, hash)
	}
	m.taken++
	return e.rec, e.key, true
}

// Taken counts the records taken so far: the reads and verifications the
// memo saved.
func (m *Memo) Taken() uint64 {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.taken
}

// Readers is how many stages take each record.
func (m *Memo) Readers() int { return m.readers }

// Len is how many records the memo holds.
func (m *Memo) Len() int {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}

// live reports whether ref still names a remembered record.
func (m *Memo) live(ref memoRef) bool {
	e, ok := m.m[ref.hash]
	return ok && e.at.Equal(ref.at)
}

// expire forgets records older than maxAge and drops queue references to
// records already taken, so that the queue stays within a few times the
// capacity. m.mu is held.
func (m *Memo) expire(now time.Time) {
	i := 0
	for ; i < len(m.queue); i++ {
		ref := m.queue[i]
		if m.live(ref) {
			if now.Sub(ref.at) < m.maxAge {
				break
			}
			delete(m.m, ref.hash)
		}
	}
	m.queue = m.queue[i:]
	if len(m.queue) > 2*m.capacity {
		// A record no reader takes (refused downstream) holds the front
		// until it expires; meanwhile drop what was taken behind it.
		kept := make([]memoRef, 0, len(m.m))
		for _, ref := range m.queue {
			if m.live(ref) {
				kept = append(kept, ref)
			}
		}
		m.queue = kept
	} else if cap(m.queue) > 2*len(m.queue)+1024 {
		m.queue = append([]memoRef(nil), m.queue...)
	}
}
