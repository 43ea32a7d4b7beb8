package ccrun

import (
	"fmt"
	"sort"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/devnet/internal/statedb"
)

// simulation records what one transaction read and wrote in one namespace.
type simulation struct {
	db     *statedb.DB
	ns     string
	reads  map[string]*kvrwset.Version // nil version: key was absent
	order  []string
	writes map[string]*kvrwset.KVWrite
	// mdWrites are metadata writes by key; a nil map deletes the key's
	// metadata.
	mdWrites map[string]map[string][]byte
	ranges   []*kvrwset.RangeQueryInfo
}

func newSimulation(db *statedb.DB, ns string) *simulation {
	return &simulation{db: db, ns: ns, reads: map[string]*kvrwset.Version{}, writes: map[string]*kvrwset.KVWrite{}, mdWrites: map[string]map[string][]byte{}}
}

func (s *simulation) recordRead(key string, ver statedb.Version, ok bool) {
	if _, seen := s.reads[key]; seen {
		return
	}
	s.order = append(s.order, key)
	if ok {
		s.reads[key] = &kvrwset.Version{BlockNum: ver.BlockNum, TxNum: ver.TxNum}
	} else {
		s.reads[key] = nil
	}
}

// get reads committed state, as Fabric's simulator does: a transaction does
// not see its own writes.
func (s *simulation) get(key string) []byte {
	v, ver, ok := s.db.Get(s.ns, key)
	s.recordRead(key, ver, ok)
	return v
}

// getMetadata reads a key's committed metadata and, as Fabric's simulator
// does, records a read of the key.
func (s *simulation) getMetadata(key string) map[string][]byte {
	_, ver, ok := s.db.Get(s.ns, key)
	s.recordRead(key, ver, ok)
	return s.db.Metadata(s.ns, key)
}

// putMetadata sets one metadata entry of key. Like the peer's handler it
// replaces the key's metadata with that one entry (an empty policy then
// means none).
func (s *simulation) putMetadata(key, name string, value []byte) {
	s.mdWrites[key] = map[string][]byte{name: value}
}

func (s *simulation) put(key string, value []byte) {
	s.writes[key] = &kvrwset.KVWrite{Key: key, Value: value}
}

func (s *simulation) del(key string) {
	s.writes[key] = &kvrwset.KVWrite{Key: key, IsDelete: true}
}

// rangeQuery returns committed keys in [start, end) and records them both as
// reads and as a range query, so validation can detect phantoms.
func (s *simulation) rangeQuery(start, end string, limit int, bookmark string) (kvs []statedb.KV, next string) {
	from := start
	if bookmark != "" && bookmark > from {
		from = bookmark
	}
	all := s.db.Range(s.ns, from, end)
	if limit > 0 && len(all) > limit {
		next = all[limit].Key
		all = all[:limit]
	}
	info := &kvrwset.RangeQueryInfo{StartKey: from, EndKey: end, ItrExhausted: next == ""}
	var raw []*kvrwset.KVRead
	for _, kv := range all {
		s.recordRead(kv.Key, kv.Version, true)
		raw = append(raw, &kvrwset.KVRead{Key: kv.Key, Version: &kvrwset.Version{BlockNum: kv.Version.BlockNum, TxNum: kv.Version.TxNum}})
	}
	if next != "" {
		info.EndKey = next
	}
	info.ReadsInfo = &kvrwset.RangeQueryInfo_RawReads{RawReads: &kvrwset.QueryReads{KvReads: raw}}
	s.ranges = append(s.ranges, info)
	return all, next
}

// rwset returns the marshalled TxReadWriteSet, keys sorted as Fabric does.
func (s *simulation) rwset() ([]byte, error) {
	kv := &kvrwset.KVRWSet{RangeQueriesInfo: s.ranges}
	keys := append([]string(nil), s.order...)
	sort.Strings(keys)
	for _, k := range keys {
		kv.Reads = append(kv.Reads, &kvrwset.KVRead{Key: k, Version: s.reads[k]})
	}
	wkeys := make([]string, 0, len(s.writes))
	for k := range s.writes {
		wkeys = append(wkeys, k)
	}
	sort.Strings(wkeys)
	for _, k := range wkeys {
		kv.Writes = append(kv.Writes, s.writes[k])
	}
	mkeys := make([]string, 0, len(s.mdWrites))
	for k := range s.mdWrites {
		mkeys = append(mkeys, k)
	}
	sort.Strings(mkeys)
	for _, k := range mkeys {
		mw := &kvrwset.KVMetadataWrite{Key: k}
		names := make([]string, 0, len(s.mdWrites[k]))
		for n := range s.mdWrites[k] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			mw.Entries = append(mw.Entries, &kvrwset.KVMetadataEntry{Name: n, Value: s.mdWrites[k][n]})
		}
		kv.MetadataWrites = append(kv.MetadataWrites, mw)
	}
	b, err := proto.Marshal(kv)
	if err != nil {
		return nil, fmt.Errorf("marshal kv rwset: %w", err)
	}
	tx := &rwset.TxReadWriteSet{DataModel: rwset.TxReadWriteSet_KV, NsRwset: []*rwset.NsReadWriteSet{{Namespace: s.ns, Rwset: b}}}
	out, err := proto.Marshal(tx)
	if err != nil {
		return nil, fmt.Errorf("marshal tx rwset: %w", err)
	}
	return out, nil
}
