package record

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/oasisprotocol/curve25519-voi/curve"
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"

	"github.com/tani-platform/tani/internal/parallel"
)

// Every device signature Tani checks is checked by one rule, whoever
// checks it (mobile-api at /sync, ingest, attest) and however (alone or in
// a batch): Ed25519 as RFC 8032 §5.1.7 states it, with the cofactored
// equation, the key and R canonically encoded and the key not of small
// order (curve25519-voi's VerifyOptionsDefault). Batch verification is
// only sound with the cofactored equation; Go's crypto/ed25519 uses the
// cofactorless one. The two agree on every signature an RFC 8032 signer
// makes; they differ only on signatures a key holder deliberately built
// with a small-order component, which prove the same thing (the key's
// holder signed) and which one rule everywhere keeps from being accepted
// at one stage and refused at the next. Keys of small order, which would
// verify forged signatures, are refused (the standard library accepts
// them).
var verifyOptions = &voi.Options{Verify: voi.VerifyOptionsDefault}

// CheckDeviceKey reports why pub cannot be enrolled as a device key, or
// nil. A key must be 32 bytes that canonically encode a point of the curve
// that is not of small order. The verification rule above refuses
// signatures under such keys anyway; refusing them at enrollment tells the
// device at once, instead of refusing every record it signs, and leaves no
// key in the registry on which two verifiers could ever disagree (with a
// small-order key the cofactored and cofactorless equations, and batch and
// single verification in libraries that mix them, give different answers).
func CheckDeviceKey(pub []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("must be %d bytes", ed25519.PublicKeySize)
	}
	var compressed curve.CompressedEdwardsY
	if _, err := compressed.SetBytes(pub); err != nil {
		return fmt.Errorf("must be %d bytes", ed25519.PublicKeySize)
	}
	if !compressed.IsCanonicalVartime() {
		return errors.New("is not a canonical encoding of a curve point")
	}
	var point curve.EdwardsPoint
	if _, err := point.SetCompressedY(&compressed); err != nil {
		return errors.New("is not a point of the Ed25519 curve")
	}
	if point.IsSmallOrder() {
		return errors.New("is a point of small order, under which signatures prove nothing")
	}
	return nil
}

// decodeSignature reads a record's base64 signature.
func decodeSignature(signature string) ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signature must be %d bytes of base64", ed25519.SignatureSize)
	}
	return sig, nil
}

// verifySignature checks one signature by the rule above.
func verifySignature(pub ed25519.PublicKey, msg []byte, signature string) error {
	sig, err := decodeSignature(signature)
	if err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize || !voi.VerifyWithOptions(voi.PublicKey(pub), msg, sig, verifyOptions) {
		return ErrBadSignature
	}
	return nil
}

// maxCachedKeys bounds a Keys cache: a few KiB per key.
const maxCachedKeys = 4096

// batchChunk is how many signatures are checked in one batch equation.
// Batches under curve25519-voi's Pippenger threshold (94) use the keys'
// precomputed tables, which is what makes them cheap; chunks also let a
// batch use every core.
const batchChunk = 64

// Keys verifies device signatures with each key's precomputed form, kept
// across calls (a device signs many records), one signature at a time or
// many at once. It is safe for concurrent use.
type Keys struct {
	mu sync.Mutex
	m  map[string]*voi.ExpandedPublicKey
}

// NewKeys returns an empty cache.
func NewKeys() *Keys { return &Keys{m: map[string]*voi.ExpandedPublicKey{}} }

// expanded returns pub's precomputed form, nil for bytes that are not a
// point (such a key verifies nothing).
func (k *Keys) expanded(pub ed25519.PublicKey) *voi.ExpandedPublicKey {
	if len(pub) != ed25519.PublicKeySize {
		return nil
	}
	k.mu.Lock()
	e, ok := k.m[string(pub)]
	k.mu.Unlock()
	if ok {
		return e
	}
	e, err := voi.NewExpandedPublicKey(voi.PublicKey(pub))
	if err != nil {
		e = nil
	}
	k.mu.Lock()
	if len(k.m) >= maxCachedKeys {
		clear(k.m)
	}
	k.m[string(pub)] = e
	k.mu.Unlock()
	return e
}

// VerifyCanonical is the package's VerifyCanonical with the cached key.
func (k *Keys) VerifyCanonical(pub ed25519.PublicKey, canonical []byte, signature string) error {
	sig, err := decodeSignature(signature)
	if err != nil {
		return err
	}
	msg, err := SigningInputOf(canonical)
	if err != nil {
		return err
	}
	e := k.expanded(pub)
	if e == nil || !voi.VerifyExpandedWithOptions(e, msg, sig, verifyOptions) {
		return ErrBadSignature
	}
	return nil
}

// Signed is one signature to check: by Key, over Message (the signing
// input), the record's base64 Signature.
type Signed struct {
	Key       ed25519.PublicKey
	Message   []byte
	Signature string
}

// Verify checks each record's device signature under pubs[i] and returns
// one error per record, as VerifyAll does.
func (k *Keys) Verify(recs []*Record, pubs []ed25519.PublicKey) []error {
	items := make([]Signed, len(recs))
	for i, r := range recs {
		items[i] = Signed{Key: pubs[i], Message: r.SigningInput(), Signature: r.Env.Signature}
	}
	return k.VerifyAll(items)
}

// VerifyAll checks signatures and returns one error per item: nil when it
// verifies, ErrBadSignature when it does not, or what is wrong with the
// signature's encoding. The signatures are checked together, a chunk of
// them per batch equation, which costs about a third of checking them one
// by one when all are good; a chunk with a bad one is checked again one by
// one to name it, so a bad signature costs what it always did.
func (k *Keys) VerifyAll(items []Signed) []error {
	errs := make([]error, len(items))
	type entry struct {
		i   int
		key *voi.ExpandedPublicKey
		msg []byte
		sig []byte
	}
	entries := make([]entry, 0, len(items))
	for i, it := range items {
		sig, err := decodeSignature(it.Signature)
		if err != nil {
			errs[i] = err
			continue
		}
		e := k.expanded(it.Key)
		if e == nil {
			errs[i] = ErrBadSignature
			continue
		}
		entries = append(entries, entry{i: i, key: e, msg: it.Message, sig: sig})
	}
	chunks := (len(entries) + batchChunk - 1) / batchChunk
	parallel.For(chunks, func(c int) {
		chunk := entries[c*batchChunk : min((c+1)*batchChunk, len(entries))]
		if len(chunk) == 1 {
			e := chunk[0]
			if !voi.VerifyExpandedWithOptions(e.key, e.msg, e.sig, verifyOptions) {
				errs[e.i] = ErrBadSignature
			}
			return
		}
		v := voi.NewBatchVerifierWithCapacity(len(chunk))
		for _, e := range chunk {
			v.AddExpandedWithOptions(e.key, e.msg, e.sig, verifyOptions)
		}
		// nil: crypto/rand draws the batch's random coefficients.
		if ok, valid := v.Verify(nil); !ok {
			for j, e := range chunk {
				if !valid[j] {
					errs[e.i] = ErrBadSignature
				}
			}
		}
	})
	return errs
}
