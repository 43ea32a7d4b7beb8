package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/gowebpki/jcs"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Receipt is an offline proof that Entry is leaf LeafIndex of the tree of
// size TreeSize that the log signed in Checkpoint. Its JSON form has exactly
// the fields below; any RFC 6962 verifier can check it, because the leaf hash
// is SHA-256(0x00 ‖ entry).
type Receipt struct {
	Entry      Bytes   `json:"entry"`
	LeafIndex  uint64  `json:"leaf_index"`
	TreeSize   uint64  `json:"tree_size"`
	Inclusion  []Bytes `json:"inclusion"`
	Checkpoint string  `json:"checkpoint"`
	// Anchor is null until the checkpoint is anchored on Fabric.
	Anchor *Anchor `json:"anchor"`
}

// Anchor names the Fabric transaction that recorded a checkpoint, so that a
// verifier can check it against the ledger of the verifying organizations.
// This package only carries it: checking it needs the chain (ledger/anchor).
type Anchor struct {
	Channel     string `json:"channel"`
	Chaincode   string `json:"chaincode"`
	TxID        string `json:"tx_id"`
	BlockNumber uint64 `json:"block_number"`
}

// Bytes is binary data that encodes as standard base64 in JSON and, unlike
// []byte, rejects non-canonical base64 when decoding, so that no two texts of
// a receipt carry the same bytes.
type Bytes []byte

// MarshalJSON encodes b as a standard base64 string.
func (b Bytes) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.StdEncoding.EncodeToString(b))
}

// UnmarshalJSON decodes a strict standard base64 string.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	d, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return fmt.Errorf("invalid base64: %w", err)
	}
	*b = d
	return nil
}

// receiptFields are the only keys a receipt may have, spelled exactly so
// (encoding/json alone would accept "Entry" for "entry").
var receiptFields = []string{"anchor", "checkpoint", "entry", "inclusion", "leaf_index", "tree_size"}

// ParseReceipt decodes a receipt strictly: exactly the six fields, exact key
// spelling at every depth, each key once, canonical base64, valid text,
// nothing after the object.
func ParseReceipt(data []byte) (*Receipt, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("receipt is not a JSON object: %w", err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, receiptFields) {
		return nil, fmt.Errorf("receipt fields are %v, want exactly %v", keys, receiptFields)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Receipt
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decode receipt: %w", err)
	}
	if dec.More() {
		return nil, errors.New("receipt has data after the JSON object")
	}
	if string(raw["inclusion"]) == "null" {
		return nil, errors.New("receipt inclusion is null, want an array")
	}
	// Exactly what it re-serializes to, up to whitespace and member order:
	// no duplicate or case-variant keys at any depth (encoding/json keeps
	// the last), no missing anchor fields, no text encoding/json repaired
	// (invalid UTF-8, lone surrogates), so two readers cannot disagree.
	sent, err := jcs.Transform(data)
	if err != nil {
		return nil, fmt.Errorf("receipt is not canonicalizable JSON: %w", err)
	}
	again, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("re-encode receipt: %w", err)
	}
	if want, err := jcs.Transform(again); err != nil || !bytes.Equal(sent, want) {
		return nil, errors.New("receipt has members or values that do not survive a round trip (duplicate or case-variant keys, missing anchor fields)")
	}
	return &r, nil
}

// Result is what a verified receipt proves.
type Result struct {
	Entry      Entry
	LeafIndex  uint64
	TreeSize   uint64
	Root       []byte
	Origin     string
	Checkpoint *log.Checkpoint
}

// VerifyReceipt checks a receipt's JSON against the log's verifier key (a
// note verifier key, "origin+hash+base64"). It returns what the receipt
// proves, or an error that says which check failed.
func VerifyReceipt(data []byte, verifierKey string) (*Result, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, fmt.Errorf("log public key: %w", err)
	}
	r, err := ParseReceipt(data)
	if err != nil {
		return nil, err
	}
	return r.Verify(v)
}

// Verify checks r with the log's note verifier. The checkpoint's origin must
// be the verifier's name, its signature valid, its size the receipt's tree
// size, and the inclusion proof must lead from the entry's leaf hash to the
// signed root.
func (r *Receipt) Verify(v note.Verifier) (*Result, error) {
	cp, err := VerifyCheckpoint([]byte(r.Checkpoint), v)
	if err != nil {
		return nil, err
	}
	if cp.Size != r.TreeSize {
		return nil, fmt.Errorf("checkpoint covers tree size %d, receipt claims %d", cp.Size, r.TreeSize)
	}
	if r.LeafIndex >= r.TreeSize {
		return nil, fmt.Errorf("leaf index %d is outside tree size %d", r.LeafIndex, r.TreeSize)
	}
	e, err := ParseEntry(r.Entry)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(r.Inclusion))
	for i, h := range r.Inclusion {
		hashes[i] = h
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(r.Entry)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, r.LeafIndex, r.TreeSize, leaf, hashes, cp.Hash); err != nil {
		return nil, fmt.Errorf("inclusion proof does not lead from the entry to the signed root: %w", err)
	}
	return &Result{Entry: e, LeafIndex: r.LeafIndex, TreeSize: r.TreeSize, Root: cp.Hash, Origin: cp.Origin, Checkpoint: cp}, nil
}

// VerifyCheckpoint checks a signed checkpoint note against the log's
// verifier: origin, signature, and canonical base64 in every signature line
// (note.Open tolerates non-zero padding bits, which would let two texts carry
// one signature).
func VerifyCheckpoint(text []byte, v note.Verifier) (*log.Checkpoint, error) {
	cp, _, n, err := log.ParseCheckpoint(text, v.Name(), v)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	for _, sig := range slices.Concat(n.Sigs, n.UnverifiedSigs) {
		if _, err := base64.StdEncoding.Strict().DecodeString(sig.Base64); err != nil {
			return nil, fmt.Errorf("checkpoint: signature by %s is not canonical base64", sig.Name)
		}
	}
	return cp, nil
}
