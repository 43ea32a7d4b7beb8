package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// BundleFormat names the evidence bundle format. A later format gets a new
// name; this one never changes meaning.
const BundleFormat = "tani.evidence-bundle/v1"

// Bundle is many receipts in one checkpoint, in one file: every journal
// entry a decision rested on (a bank's evidence about a farmer), with the
// payload each entry commits to. One signature and one anchor cover them
// all, so a verifier checks the checkpoint once (and once on Fabric), then
// each entry's inclusion proof and payload hash.
type Bundle struct {
	Format string `json:"format"`
	// Subject says what the bundle is evidence of, e.g. "farmer <id> for
	// organization <id>". It is not covered by any signature: the entries
	// are.
	Subject  string    `json:"subject"`
	IssuedAt time.Time `json:"issued_at"`
	// Checkpoint is the signed note every item proves into; TreeSize is
	// its size.
	Checkpoint string `json:"checkpoint"`
	TreeSize   uint64 `json:"tree_size"`
	// Anchor is the Fabric transaction that anchored Checkpoint, or null
	// when the bundle was issued before it was anchored (a verifier then
	// looks the checkpoint up on the chain by its size).
	Anchor *Anchor       `json:"anchor"`
	Items  []BundleEntry `json:"items"`
}

// BundleEntry is one journal entry of a bundle with its proof.
type BundleEntry struct {
	RecordID string `json:"record_id"`
	Kind     string `json:"kind"`
	Revision int64  `json:"revision"`
	// Payload is the revision's payload, whose SHA-256 the entry commits
	// to; null when it was redacted (the entry still proves it existed).
	Payload   *Bytes  `json:"payload"`
	Entry     Bytes   `json:"entry"`
	LeafIndex uint64  `json:"leaf_index"`
	Inclusion []Bytes `json:"inclusion"`
}

// NewBundle assembles a bundle from receipts that all share one
// checkpoint, with the payloads of their entries (by leaf index; a missing
// payload is a redacted one).
func NewBundle(subject string, issued time.Time, receipts []*Receipt, payloads map[uint64][]byte) (*Bundle, error) {
	b := &Bundle{Format: BundleFormat, Subject: subject, IssuedAt: issued.UTC(), Items: []BundleEntry{}}
	for i, r := range receipts {
		if i == 0 {
			b.Checkpoint, b.TreeSize, b.Anchor = r.Checkpoint, r.TreeSize, r.Anchor
		} else if r.Checkpoint != b.Checkpoint {
			return nil, fmt.Errorf("bundle: receipt of leaf %d is in another checkpoint", r.LeafIndex)
		}
		e, err := ParseEntry(r.Entry)
		if err != nil {
			return nil, fmt.Errorf("bundle: leaf %d: %w", r.LeafIndex, err)
		}
		inclusion := r.Inclusion
		if inclusion == nil {
			inclusion = []Bytes{}
		}
		var payload *Bytes
		if p, ok := payloads[r.LeafIndex]; ok && p != nil {
			pb := Bytes(p)
			payload = &pb
		}
		b.Items = append(b.Items, BundleEntry{
			RecordID: e.RecordID, Kind: e.Kind, Revision: e.Revision, Payload: payload,
			Entry: r.Entry, LeafIndex: r.LeafIndex, Inclusion: inclusion,
		})
	}
	return b, nil
}

// bundleFields are the only keys a bundle may have.
var bundleFields = []string{"anchor", "checkpoint", "format", "issued_at", "items", "subject", "tree_size"}

// IsBundle reports whether data looks like a bundle (a JSON object with a
// format member) rather than a single receipt.
func IsBundle(data []byte) bool {
	var probe struct {
		Format *string `json:"format"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.Format != nil
}

// ParseBundle decodes a bundle as strictly as ParseReceipt decodes a
// receipt: exactly its members, exact key spelling, each key once,
// canonical base64, nothing after the object.
func ParseBundle(data []byte) (*Bundle, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("bundle is not a JSON object: %w", err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, bundleFields) {
		return nil, fmt.Errorf("bundle fields are %v, want exactly %v", keys, bundleFields)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Bundle
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("decode bundle: %w", err)
	}
	if dec.More() {
		return nil, errors.New("bundle has data after the JSON object")
	}
	if b.Format != BundleFormat {
		return nil, fmt.Errorf("bundle format is %q, want %q", b.Format, BundleFormat)
	}
	if b.Items == nil {
		return nil, errors.New("bundle items is null, want an array")
	}
	sent, err := jcs.Transform(data)
	if err != nil {
		return nil, fmt.Errorf("bundle is not canonicalizable JSON: %w", err)
	}
	again, err := json.Marshal(&b)
	if err != nil {
		return nil, fmt.Errorf("re-encode bundle: %w", err)
	}
	if want, err := jcs.Transform(again); err != nil || !bytes.Equal(sent, want) {
		return nil, errors.New("bundle has members or values that do not survive a round trip (duplicate or case-variant keys, missing fields)")
	}
	return &b, nil
}

// BundleResult is what a verified bundle proves.
type BundleResult struct {
	Origin   string
	TreeSize uint64
	Root     []byte
	// Entries are the items' decoded entries, in bundle order.
	Entries []Entry
	// Redacted lists the items without a payload (record id/revision).
	Redacted []string
}

// Verify checks every item of b against the log's verifier: the
// checkpoint's signature and size once, then for each item that its entry
// names the item's record, kind and revision, that the payload hashes to
// the entry's payload hash, and that the inclusion proof leads from the
// entry to the signed root. The first failure is returned, naming the item.
func (b *Bundle) Verify(v note.Verifier) (*BundleResult, error) {
	cp, err := VerifyCheckpoint([]byte(b.Checkpoint), v)
	if err != nil {
		return nil, err
	}
	if cp.Size != b.TreeSize {
		return nil, fmt.Errorf("checkpoint covers tree size %d, bundle claims %d", cp.Size, b.TreeSize)
	}
	res := &BundleResult{Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash}
	seen := map[uint64]bool{}
	for i, it := range b.Items {
		where := fmt.Sprintf("item %d (leaf %d)", i, it.LeafIndex)
		if seen[it.LeafIndex] {
			return nil, fmt.Errorf("%s: leaf appears twice", where)
		}
		seen[it.LeafIndex] = true
		if it.LeafIndex >= b.TreeSize {
			return nil, fmt.Errorf("%s: leaf index is outside tree size %d", where, b.TreeSize)
		}
		e, err := ParseEntry(it.Entry)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if e.Type != TypeRevision || e.RecordID != it.RecordID || e.Kind != it.Kind || e.Revision != it.Revision {
			return nil, fmt.Errorf("%s: the entry is %s %s %s revision %d, the item claims %s %s revision %d",
				where, e.Type, e.Kind, e.RecordID, e.Revision, it.Kind, it.RecordID, it.Revision)
		}
		if it.Payload == nil {
			res.Redacted = append(res.Redacted, fmt.Sprintf("%s/%d", it.RecordID, it.Revision))
		} else if sha256.Sum256(*it.Payload) != e.PayloadHash {
			return nil, fmt.Errorf("%s: the payload does not hash to the entry's payload-sha256: it was altered", where)
		}
		hashes := make([][]byte, len(it.Inclusion))
		for k, h := range it.Inclusion {
			hashes[k] = h
		}
		leaf := rfc6962.DefaultHasher.HashLeaf(it.Entry)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, it.LeafIndex, b.TreeSize, leaf, hashes, cp.Hash); err != nil {
			return nil, fmt.Errorf("%s: inclusion proof does not lead from the entry to the signed root: %w", where, err)
		}
		res.Entries = append(res.Entries, e)
	}
	return res, nil
}

// Receipt returns item i as a standalone receipt (same checkpoint and
// anchor), e.g. to check the bundle's checkpoint on the chain.
func (b *Bundle) Receipt(i int) *Receipt {
	it := b.Items[i]
	return &Receipt{Entry: it.Entry, LeafIndex: it.LeafIndex, TreeSize: b.TreeSize, Inclusion: it.Inclusion, Checkpoint: b.Checkpoint, Anchor: b.Anchor}
}
