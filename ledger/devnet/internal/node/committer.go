package node

import (
	"bytes"
	"runtime"
	"strings"
	"sync"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/devnet/internal/policy"
	"github.com/tani-platform/tani/ledger/devnet/internal/statedb"
)

// checked is a transaction after the checks that do not depend on other
// transactions of the block.
type checked struct {
	tx   *parsedTx
	sets map[string]*kvrwset.KVRWSet
	code peer.TxValidationCode
	// signers are the verified, distinct endorsers, for the policy checks.
	signers []policy.Signer
}

// commitBlock validates every transaction of b, records the result in the
// TRANSACTIONS_FILTER metadata, appends the block and applies valid writes.
func (n *Node) commitBlock(b *cb.Block) error {
	data := b.Data.Data
	results := make([]checked, len(data))
	// Signature and policy checks are independent per transaction and are
	// where the CPU goes, so they run in parallel.
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(data); i += workers {
				results[i] = n.checkTx(data[i])
			}
		}(w)
	}
	wg.Wait()

	filter := make([]byte, len(data))
	seen := map[string]bool{}
	updated := map[string]map[string]bool{}   // namespace -> keys written earlier in this block
	mdUpdated := map[string]map[string]bool{} // namespace -> keys whose policy an earlier transaction that passed endorsement validation wrote
	n.db.Lock()
	defer n.db.Unlock()
	for i := range results {
		r := &results[i]
		if r.code == peer.TxValidationCode_VALID {
			if _, dup := n.txStatus(r.tx.chdr.TxId); dup {
				r.code = peer.TxValidationCode_DUPLICATE_TXID
			}
		}
		if r.code == peer.TxValidationCode_VALID {
			r.code = n.endorsement(r, mdUpdated, num(b), i)
			if r.code == peer.TxValidationCode_VALID {
				mark(mdUpdated, r.sets, func(kv *kvrwset.KVRWSet) []string {
					var keys []string
					for _, mw := range kv.MetadataWrites {
						keys = append(keys, mw.Key)
					}
					return keys
				})
			}
		}
		if r.code == peer.TxValidationCode_VALID && seen[r.tx.chdr.TxId] {
			r.code = peer.TxValidationCode_DUPLICATE_TXID
		}
		if r.tx != nil && r.tx.chdr.TxId != "" {
			seen[r.tx.chdr.TxId] = true
		}
		if r.code == peer.TxValidationCode_VALID {
			r.code = n.mvcc(r.sets, updated)
		}
		if r.code == peer.TxValidationCode_VALID {
			// A value write, or a metadata write to a key that exists,
			// gives the key a new version.
			for ns, kv := range r.sets {
				mark(updated, map[string]*kvrwset.KVRWSet{ns: kv}, func(kv *kvrwset.KVRWSet) []string {
					var keys []string
					for _, w := range kv.Writes {
						keys = append(keys, w.Key)
					}
					for _, mw := range kv.MetadataWrites {
						if updated[ns][mw.Key] || n.db.Exists(ns, mw.Key) {
							keys = append(keys, mw.Key)
						}
					}
					return keys
				})
			}
		}
		filter[i] = byte(r.code)
	}
	b.Metadata.Metadata[cb.BlockMetadataIndex_TRANSACTIONS_FILTER] = filter
	if err := n.store.Append(b); err != nil {
		return err
	}
	num := b.Header.Number
	for i, r := range results {
		if r.code != peer.TxValidationCode_VALID {
			continue
		}
		var writes []statedb.Write
		for ns, kv := range r.sets {
			writes = append(writes, kvWrites(ns, kv)...)
		}
		n.db.Apply(writes, statedb.Version{BlockNum: num, TxNum: uint64(i)})
	}
	n.mu.Lock()
	for _, r := range results {
		if r.tx == nil || r.tx.chdr.TxId == "" {
			continue
		}
		if _, ok := n.txs[r.tx.chdr.TxId]; !ok {
			n.txs[r.tx.chdr.TxId] = txInfo{block: num, code: r.code}
		}
	}
	n.height = num + 1
	close(n.newBlk)
	n.newBlk = make(chan struct{})
	n.mu.Unlock()
	n.log.Debug("committed block", "block", num, "transactions", len(data))
	return nil
}

// checkTx performs the per-transaction checks of Fabric's validator:
// structure, creator signature, TxID, chaincode and endorsement policy.
func (n *Node) checkTx(raw []byte) checked {
	tx, err := parseEnvelope(raw)
	if err != nil {
		return checked{code: peer.TxValidationCode_BAD_PAYLOAD}
	}
	c := checked{tx: tx}
	if cb.HeaderType(tx.chdr.Type) != cb.HeaderType_ENDORSER_TRANSACTION {
		c.code = peer.TxValidationCode_UNKNOWN_TX_TYPE
		return c
	}
	if tx.chdr.ChannelId != n.cfg.Channel {
		c.code = peer.TxValidationCode_TARGET_CHAIN_NOT_FOUND
		return c
	}
	creator, err := n.msps.DeserializeValid(tx.shdr.Creator)
	if err != nil || creator.Verify(tx.env.Payload, tx.env.Signature) != nil {
		c.code = peer.TxValidationCode_BAD_CREATOR_SIGNATURE
		return c
	}
	if tx.chdr.TxId != computeTxID(tx.shdr.Nonce, tx.shdr.Creator) {
		c.code = peer.TxValidationCode_BAD_PROPOSAL_TXID
		return c
	}
	_, ok := n.chaincodes[tx.chaincode]
	if !ok || tx.action.GetChaincodeId().GetName() != tx.chaincode {
		c.code = peer.TxValidationCode_INVALID_CHAINCODE
		return c
	}
	cpp := &peer.ChaincodeProposalPayload{}
	if err := proto.Unmarshal(tx.cap.ChaincodeProposalPayload, cpp); err != nil {
		c.code = peer.TxValidationCode_BAD_PAYLOAD
		return c
	}
	hash, err := proposalHash(tx.payload.Header.ChannelHeader, tx.payload.Header.SignatureHeader, cpp.Input)
	if err != nil || !bytes.Equal(hash, tx.prp.ProposalHash) {
		c.code = peer.TxValidationCode_BAD_RESPONSE_PAYLOAD
		return c
	}
	if c.sets, err = tx.kvsets(); err != nil {
		c.code = peer.TxValidationCode_BAD_RWSET
		return c
	}
	for ns := range c.sets {
		if ns != tx.chaincode {
			c.code = peer.TxValidationCode_ILLEGAL_WRITESET
			return c
		}
	}
	c.signers = n.endorsingSigners(tx)
	c.code = peer.TxValidationCode_VALID
	return c
}

// mark adds to m, per namespace, the keys keysOf picks from each write set.
func mark(m map[string]map[string]bool, sets map[string]*kvrwset.KVRWSet, keysOf func(*kvrwset.KVRWSet) []string) {
	for ns, kv := range sets {
		for _, k := range keysOf(kv) {
			if m[ns] == nil {
				m[ns] = map[string]bool{}
			}
			m[ns][k] = true
		}
	}
}

// endorsement is Fabric's endorsement-policy validation with state-based
// endorsement (the v2.0 validator): every key the transaction writes a
// value or metadata to is checked against the key-level policy it had
// before the block (its VALIDATION_PARAMETER metadata), or, if it has
// none, against the chaincode's policy, which is also checked when no key
// carried a policy. A key whose policy an earlier transaction of the block
// changed (and that passed this validation) invalidates the transaction,
// as Fabric's ValidationParameterUpdatedError does.
func (n *Node) endorsement(r *checked, mdUpdated map[string]map[string]bool, block uint64, txNum int) peer.TxValidationCode {
	cc := n.chaincodes[r.tx.chaincode]
	ns := r.tx.chaincode
	ccChecked, someChecked := false, false
	for _, key := range writtenKeys(r.sets[ns]) {
		if mdUpdated[ns][key] {
			n.log.Debug("endorsement policy failure: key-level policy changed earlier in the block", "block", block, "tx", txNum, "key", printable(key))
			return peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE
		}
		vp := n.db.Metadata(ns, key)[peer.MetaDataKeys_VALIDATION_PARAMETER.String()]
		if len(vp) == 0 {
			if !ccChecked {
				if !cc.Policy.Satisfied(r.signers) {
					n.log.Debug("endorsement policy failure", "block", block, "tx", txNum, "policy", cc.Policy.String(), "endorsers", r.signers)
					return peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE
				}
				ccChecked, someChecked = true, true
			}
			continue
		}
		p, err := policy.FromEnvelope(vp)
		if err != nil || !p.Satisfied(r.signers) {
			n.log.Debug("endorsement policy failure: key-level policy", "block", block, "tx", txNum, "key", printable(key), "policy", p, "err", err, "endorsers", r.signers)
			return peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE
		}
		someChecked = true
	}
	if !someChecked && !cc.Policy.Satisfied(r.signers) {
		return peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE
	}
	return peer.TxValidationCode_VALID
}

// printable shows a composite key without its NUL separators.
func printable(key string) string { return strings.ReplaceAll(strings.Trim(key, "\x00"), "\x00", "/") }

func num(b *cb.Block) uint64 { return b.GetHeader().GetNumber() }

// endorsingSigners verifies each endorsement over (proposal response payload ||
// endorser) and returns the valid, distinct endorsers in endorsement order.
func (n *Node) endorsingSigners(tx *parsedTx) []policy.Signer {
	prp := tx.cap.Action.ProposalResponsePayload
	var signers []policy.Signer
	seen := map[string]bool{}
	for _, e := range tx.cap.Action.Endorsements {
		if seen[string(e.Endorser)] {
			continue
		}
		id, err := n.msps.DeserializeValid(e.Endorser)
		if err != nil {
			continue
		}
		msg := make([]byte, 0, len(prp)+len(e.Endorser))
		msg = append(append(msg, prp...), e.Endorser...)
		if id.Verify(msg, e.Signature) != nil {
			continue
		}
		seen[string(e.Endorser)] = true
		signers = append(signers, policy.Signer{MSPID: id.MSPID, Role: id.Role})
	}
	return signers
}

// mvcc checks that every key read still has the version read, that no
// earlier transaction of the block wrote it, and that range queries would
// return the same keys (no phantoms).
func (n *Node) mvcc(sets map[string]*kvrwset.KVRWSet, updated map[string]map[string]bool) peer.TxValidationCode {
	for ns, kv := range sets {
		for _, r := range kv.Reads {
			if updated[ns][r.Key] {
				return peer.TxValidationCode_MVCC_READ_CONFLICT
			}
			_, ver, ok := n.db.Get(ns, r.Key)
			switch {
			case r.Version == nil && ok, r.Version != nil && !ok:
				return peer.TxValidationCode_MVCC_READ_CONFLICT
			case ok && (ver.BlockNum != r.Version.BlockNum || ver.TxNum != r.Version.TxNum):
				return peer.TxValidationCode_MVCC_READ_CONFLICT
			}
		}
		for _, rq := range kv.RangeQueriesInfo {
			if phantom(n.db, ns, rq, updated[ns]) {
				return peer.TxValidationCode_PHANTOM_READ_CONFLICT
			}
		}
	}
	return peer.TxValidationCode_VALID
}

func phantom(db *statedb.DB, ns string, rq *kvrwset.RangeQueryInfo, updated map[string]bool) bool {
	for k := range updated {
		if k >= rq.StartKey && (rq.EndKey == "" || k < rq.EndKey) {
			return true
		}
	}
	raw := rq.GetRawReads().GetKvReads()
	now := db.Range(ns, rq.StartKey, rq.EndKey)
	if len(now) != len(raw) {
		return true
	}
	for i, kv := range now {
		r := raw[i]
		if kv.Key != r.Key || kv.Version.BlockNum != r.GetVersion().GetBlockNum() || kv.Version.TxNum != r.GetVersion().GetTxNum() {
			return true
		}
	}
	return false
}
