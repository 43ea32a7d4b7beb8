package statedb

import (
	"sort"
	"sync"
)

// Version is the height at which a key was last written.
type Version struct {
	BlockNum uint64
	TxNum    uint64
}

// KV is a key with its committed value and version.
type KV struct {
	Key     string
	Value   []byte
	Version Version
}

// Write is what one transaction did to one key: Delete removes the key
// (and its metadata); otherwise the value is written, unless NoValue says
// the transaction wrote only the key's metadata. With SetMetadata the
// key's metadata becomes Metadata (nil: none); without it, a value update
// keeps the key's metadata, as Fabric's committer does. A metadata-only
// write to a key that does not exist is dropped.
type Write struct {
	Namespace   string
	Key         string
	Value       []byte
	Delete      bool
	NoValue     bool
	SetMetadata bool
	Metadata    map[string][]byte
}

type entry struct {
	value    []byte
	metadata map[string][]byte
	ver      Version
}

// DB is an in-memory versioned key-value store. It is rebuilt from the block
// store at start, so it needs no persistence of its own.
type DB struct {
	// commit is held shared by simulations for their whole run and exclusively
	// by commits, so a simulation never sees half of a block, as in Fabric's
	// transaction manager.
	commit sync.RWMutex

	mu sync.RWMutex
	ns map[string]map[string]entry
}

// New returns an empty DB.
func New() *DB { return &DB{ns: make(map[string]map[string]entry)} }

// BeginRead blocks commits until the returned function is called.
func (db *DB) BeginRead() (done func()) {
	db.commit.RLock()
	return db.commit.RUnlock
}

// Get returns the committed value and version of key; ok is false when the
// key does not exist.
func (db *DB) Get(ns, key string) (value []byte, ver Version, ok bool) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	e, ok := db.ns[ns][key]
	return e.value, e.ver, ok
}

// Metadata returns the committed metadata of key (nil when the key has none
// or does not exist): the state-based endorsement policy is its
// VALIDATION_PARAMETER entry.
func (db *DB) Metadata(ns, key string) map[string][]byte {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.ns[ns][key].metadata
}

// Exists reports whether key has a committed value.
func (db *DB) Exists(ns, key string) bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	_, ok := db.ns[ns][key]
	return ok
}

// Range returns the keys in [start, end) in order; an empty end means no
// upper bound.
func (db *DB) Range(ns, start, end string) []KV {
	db.mu.RLock()
	defer db.mu.RUnlock()
	var out []KV
	for k, e := range db.ns[ns] {
		if k >= start && (end == "" || k < end) {
			out = append(out, KV{Key: k, Value: e.value, Version: e.ver})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Apply writes the updates of one valid transaction at version ver.
// Callers commit a whole block between Lock and Unlock.
func (db *DB) Apply(writes []Write, ver Version) {
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, w := range writes {
		m := db.ns[w.Namespace]
		if m == nil {
			m = make(map[string]entry)
			db.ns[w.Namespace] = m
		}
		old, exists := m[w.Key]
		switch {
		case w.Delete:
			delete(m, w.Key)
		case w.NoValue && !w.SetMetadata:
		case w.NoValue && !exists:
			// Metadata of a key that does not exist is dropped.
		case w.NoValue:
			m[w.Key] = entry{value: old.value, metadata: w.Metadata, ver: ver}
		case w.SetMetadata:
			m[w.Key] = entry{value: w.Value, metadata: w.Metadata, ver: ver}
		default:
			m[w.Key] = entry{value: w.Value, metadata: old.metadata, ver: ver}
		}
	}
}

// Lock excludes simulations while a block is being committed.
func (db *DB) Lock() { db.commit.Lock() }

// Unlock ends a block commit.
func (db *DB) Unlock() { db.commit.Unlock() }
