package chaincode

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/cid"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/tani-platform/tani/ledger/verify"
)

// AnchoredEvent is the name of the chaincode event every accepted checkpoint
// emits; its payload is the JSON Anchor.
const AnchoredEvent = "Anchored"

// Composite-key object types. The size attribute is zero-padded so that the
// keys of one origin sort by size.
const (
	logKey    = "tani.log"
	anchorKey = "tani.anchor"
	latestKey = "tani.latest"
)

// adminOU is the NodeOU that marks an organization administrator's
// certificate (Fabric's AdminOUIdentifier).
const adminOU = "admin"

// Log is a registered journal: the note origin its checkpoints carry and the
// note verifier key that must have signed them.
type Log struct {
	Origin    string `json:"origin"`
	PublicKey string `json:"public_key"`
	// RegisteredBy is the MSP ID of the administrator who registered it.
	RegisteredBy string `json:"registered_by"`
}

// Anchor is an accepted checkpoint as the chain keeps it.
type Anchor struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	// Root is the tree root, standard base64.
	Root string `json:"root"`
	// Checkpoint is the signed note exactly as submitted.
	Checkpoint string `json:"checkpoint"`
	// PreviousSize is the size of the anchor this one was proven to extend
	// (0 for the first).
	PreviousSize uint64 `json:"previous_size"`
	// TxID is the transaction that anchored it.
	TxID string `json:"tx_id"`
}

// Contract is the anchor contract.
type Contract struct {
	contractapi.Contract
}

// New returns the anchor chaincode, ready to host in the devnet or serve as
// chaincode-as-a-service.
func New() (*contractapi.ContractChaincode, error) {
	cc, err := contractapi.NewChaincode(&Contract{})
	if err != nil {
		return nil, fmt.Errorf("create anchor chaincode: %w", err)
	}
	cc.Info.Title = "tani-anchor"
	cc.Info.Version = "1.0"
	return cc, nil
}

// RegisterLog records the journal origin and its note verifier key
// ("origin+hash+base64"). Only an organization administrator may call it,
// and only once per origin: a key that could be replaced would let whoever
// replaces it sign a different history.
func (c *Contract) RegisterLog(ctx contractapi.TransactionContextInterface, origin, publicKey string) error {
	stub := ctx.GetStub()
	isAdmin, err := cid.HasOUValue(stub, adminOU)
	if err != nil {
		return fmt.Errorf("register log %s: read creator certificate: %w", origin, err)
	}
	if !isAdmin {
		return fmt.Errorf("register log %s: access denied: only an organization admin may register a log", origin)
	}
	if origin == "" {
		return errors.New("register log: origin is empty")
	}
	v, err := note.NewVerifier(publicKey)
	if err != nil {
		return fmt.Errorf("register log %s: invalid public key: %w", origin, err)
	}
	if v.Name() != origin {
		return fmt.Errorf("register log %s: public key is for origin %q", origin, v.Name())
	}
	key, err := stub.CreateCompositeKey(logKey, []string{origin})
	if err != nil {
		return fmt.Errorf("register log %s: %w", origin, err)
	}
	existing, err := stub.GetState(key)
	if err != nil {
		return fmt.Errorf("register log %s: read: %w", origin, err)
	}
	if existing != nil {
		return fmt.Errorf("register log %s: already registered; a log's key cannot be replaced", origin)
	}
	msp, err := cid.GetMSPID(stub)
	if err != nil {
		return fmt.Errorf("register log %s: creator MSP ID: %w", origin, err)
	}
	return putJSON(stub.PutState, key, Log{Origin: origin, PublicKey: publicKey, RegisteredBy: msp})
}

// Anchor accepts checkpointNote, a C2SP tlog-checkpoint signed note, if it
// is signed by its origin's registered key and consistencyProof (standard
// base64 hashes) proves the tree it commits to extends the last anchored
// one. It stores the checkpoint under its origin and size, makes it the
// latest, and emits an Anchored event.
func (c *Contract) Anchor(ctx contractapi.TransactionContextInterface, checkpointNote string, consistencyProof []string) (*Anchor, error) {
	stub := ctx.GetStub()
	origin, _, _ := strings.Cut(checkpointNote, "\n")
	lg, err := c.GetLog(ctx, origin)
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	v, err := note.NewVerifier(lg.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("anchor: registered key of %s: %w", origin, err)
	}
	cp, err := verify.VerifyCheckpoint([]byte(checkpointNote), v)
	if err != nil {
		return nil, fmt.Errorf("anchor %s: rejected: %w", origin, err)
	}
	if cp.Size == 0 {
		return nil, fmt.Errorf("anchor %s: rejected: checkpoint of an empty tree", origin)
	}
	hashes := make([][]byte, len(consistencyProof))
	for i, h := range consistencyProof {
		if hashes[i], err = base64.StdEncoding.Strict().DecodeString(h); err != nil {
			return nil, fmt.Errorf("anchor %s: rejected: consistency proof hash %d is not base64: %w", origin, i, err)
		}
	}
	prev, err := c.LatestAnchor(ctx, origin)
	if err != nil {
		return nil, err
	}
	var prevSize uint64
	if prev != nil {
		prevSize = prev.Size
		prevRoot, err := base64.StdEncoding.DecodeString(prev.Root)
		if err != nil {
			return nil, fmt.Errorf("anchor %s: stored root at size %d: %w", origin, prev.Size, err)
		}
		switch {
		case cp.Size == prev.Size && bytes.Equal(cp.Hash, prevRoot):
			return nil, fmt.Errorf("anchor %s: rejected: checkpoint of size %d is already anchored (tx %s)", origin, cp.Size, prev.TxID)
		case cp.Size == prev.Size:
			return nil, fmt.Errorf("anchor %s: rejected: fork: checkpoint of size %d has a different root than the one anchored in tx %s", origin, cp.Size, prev.TxID)
		case cp.Size < prev.Size:
			return nil, fmt.Errorf("anchor %s: rejected: checkpoint of size %d is older than the latest anchored size %d", origin, cp.Size, prev.Size)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prev.Size, cp.Size, hashes, prevRoot, cp.Hash); err != nil {
			return nil, fmt.Errorf("anchor %s: rejected: checkpoint of size %d is not a consistent extension of anchored size %d: %w", origin, cp.Size, prev.Size, err)
		}
	} else if len(hashes) != 0 {
		return nil, fmt.Errorf("anchor %s: rejected: first checkpoint needs an empty consistency proof, got %d hashes", origin, len(hashes))
	}
	a := &Anchor{
		Origin: origin, Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Hash),
		Checkpoint: checkpointNote, PreviousSize: prevSize, TxID: stub.GetTxID(),
	}
	key, err := stub.CreateCompositeKey(anchorKey, []string{origin, sizeAttr(cp.Size)})
	if err != nil {
		return nil, fmt.Errorf("anchor %s: %w", origin, err)
	}
	if err := putJSON(stub.PutState, key, a); err != nil {
		return nil, err
	}
	latest, err := stub.CreateCompositeKey(latestKey, []string{origin})
	if err != nil {
		return nil, fmt.Errorf("anchor %s: %w", origin, err)
	}
	if err := stub.PutState(latest, []byte(strconv.FormatUint(cp.Size, 10))); err != nil {
		return nil, fmt.Errorf("anchor %s: write latest: %w", origin, err)
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("anchor %s: encode event: %w", origin, err)
	}
	if err := stub.SetEvent(AnchoredEvent, payload); err != nil {
		return nil, fmt.Errorf("anchor %s: set event: %w", origin, err)
	}
	return a, nil
}

// GetLog returns a registered log, or an error naming the unknown origin.
func (c *Contract) GetLog(ctx contractapi.TransactionContextInterface, origin string) (*Log, error) {
	stub := ctx.GetStub()
	key, err := stub.CreateCompositeKey(logKey, []string{origin})
	if err != nil {
		return nil, fmt.Errorf("log %q: %w", origin, err)
	}
	var lg Log
	found, err := getJSON(stub.GetState, key, &lg)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", origin, err)
	}
	if !found {
		return nil, fmt.Errorf("log %q is not registered", origin)
	}
	return &lg, nil
}

// GetAnchor returns the checkpoint of origin anchored at size, or nil (an
// empty result) if none is.
func (c *Contract) GetAnchor(ctx contractapi.TransactionContextInterface, origin string, size uint64) (*Anchor, error) {
	stub := ctx.GetStub()
	key, err := stub.CreateCompositeKey(anchorKey, []string{origin, sizeAttr(size)})
	if err != nil {
		return nil, fmt.Errorf("get anchor %s/%d: %w", origin, size, err)
	}
	var a Anchor
	found, err := getJSON(stub.GetState, key, &a)
	if err != nil || !found {
		return nil, err
	}
	return &a, nil
}

// LatestAnchor returns origin's most recently anchored checkpoint, or nil
// (an empty result) if none is.
func (c *Contract) LatestAnchor(ctx contractapi.TransactionContextInterface, origin string) (*Anchor, error) {
	stub := ctx.GetStub()
	key, err := stub.CreateCompositeKey(latestKey, []string{origin})
	if err != nil {
		return nil, fmt.Errorf("latest anchor %s: %w", origin, err)
	}
	b, err := stub.GetState(key)
	if err != nil {
		return nil, fmt.Errorf("latest anchor %s: read: %w", origin, err)
	}
	if b == nil {
		return nil, nil
	}
	size, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("latest anchor %s: stored size %q: %w", origin, b, err)
	}
	a, err := c.GetAnchor(ctx, origin, size)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, fmt.Errorf("latest anchor %s: size %d has no anchor record", origin, size)
	}
	return a, nil
}

func sizeAttr(size uint64) string { return fmt.Sprintf("%020d", size) }

func putJSON(put func(string, []byte) error, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", printable(key), err)
	}
	if err := put(key, b); err != nil {
		return fmt.Errorf("write %s: %w", printable(key), err)
	}
	return nil
}

func getJSON(get func(string) ([]byte, error), key string, v any) (bool, error) {
	b, err := get(key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", printable(key), err)
	}
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", printable(key), err)
	}
	return true, nil
}

// printable shows a composite key without its NUL separators.
func printable(key string) string {
	return strings.Join(slices.DeleteFunc(strings.Split(key, "\x00"), func(s string) bool { return s == "" }), "/")
}
