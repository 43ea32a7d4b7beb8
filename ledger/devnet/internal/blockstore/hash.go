package blockstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"math/big"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
)

// asn1Header mirrors the structure Fabric hashes for a block header.
type asn1Header struct {
	Number       *big.Int
	PreviousHash []byte
	DataHash     []byte
}

// HeaderHash is SHA-256 over HeaderBytes; it is the value the next block
// carries as previous_hash.
func HeaderHash(h *cb.BlockHeader) []byte {
	sum := sha256.Sum256(HeaderBytes(h))
	return sum[:]
}

// HeaderBytes is the DER encoding of the header's number, previous hash and
// data hash, which orderers sign and hash.
func HeaderBytes(h *cb.BlockHeader) []byte {
	der, err := asn1.Marshal(asn1Header{
		Number:       new(big.Int).SetUint64(h.GetNumber()),
		PreviousHash: h.GetPreviousHash(),
		DataHash:     h.GetDataHash(),
	})
	if err != nil {
		// Marshalling a big.Int and two byte slices cannot fail.
		panic(fmt.Sprintf("asn1 marshal block header: %v", err))
	}
	return der
}

// DataHash is SHA-256 over the concatenation of the block's envelopes.
func DataHash(d *cb.BlockData) []byte {
	sum := sha256.Sum256(bytes.Join(d.GetData(), nil))
	return sum[:]
}
