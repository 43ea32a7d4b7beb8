package node

import (
	"errors"
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/devnet/internal/statedb"
)

// parsedTx is an endorser transaction taken apart for validation.
type parsedTx struct {
	env     *cb.Envelope
	payload *cb.Payload
	chdr    *cb.ChannelHeader
	shdr    *cb.SignatureHeader
	// The fields below are set for endorser transactions only.
	chaincode   string
	cap         *peer.ChaincodeActionPayload
	prp         *peer.ProposalResponsePayload
	action      *peer.ChaincodeAction
	actionBytes []byte
}

// parseEnvelope decodes an envelope down to its chaincode action.
func parseEnvelope(raw []byte) (*parsedTx, error) {
	t := &parsedTx{env: &cb.Envelope{}, payload: &cb.Payload{}, chdr: &cb.ChannelHeader{}, shdr: &cb.SignatureHeader{}}
	if err := proto.Unmarshal(raw, t.env); err != nil {
		return nil, fmt.Errorf("unmarshal envelope: %w", err)
	}
	if err := proto.Unmarshal(t.env.Payload, t.payload); err != nil {
		return nil, fmt.Errorf("unmarshal payload: %w", err)
	}
	if t.payload.Header == nil {
		return nil, errors.New("payload has no header")
	}
	if err := proto.Unmarshal(t.payload.Header.ChannelHeader, t.chdr); err != nil {
		return nil, fmt.Errorf("unmarshal channel header: %w", err)
	}
	if err := proto.Unmarshal(t.payload.Header.SignatureHeader, t.shdr); err != nil {
		return nil, fmt.Errorf("unmarshal signature header: %w", err)
	}
	if cb.HeaderType(t.chdr.Type) != cb.HeaderType_ENDORSER_TRANSACTION {
		return t, nil
	}
	ext := &peer.ChaincodeHeaderExtension{}
	if err := proto.Unmarshal(t.chdr.Extension, ext); err != nil {
		return nil, fmt.Errorf("unmarshal chaincode header extension: %w", err)
	}
	t.chaincode = ext.GetChaincodeId().GetName()
	tx := &peer.Transaction{}
	if err := proto.Unmarshal(t.payload.Data, tx); err != nil {
		return nil, fmt.Errorf("unmarshal transaction: %w", err)
	}
	if len(tx.Actions) != 1 {
		return nil, fmt.Errorf("transaction has %d actions, want 1", len(tx.Actions))
	}
	t.cap = &peer.ChaincodeActionPayload{}
	if err := proto.Unmarshal(tx.Actions[0].Payload, t.cap); err != nil {
		return nil, fmt.Errorf("unmarshal chaincode action payload: %w", err)
	}
	if t.cap.Action == nil {
		return nil, errors.New("chaincode action payload has no endorsed action")
	}
	t.prp = &peer.ProposalResponsePayload{}
	if err := proto.Unmarshal(t.cap.Action.ProposalResponsePayload, t.prp); err != nil {
		return nil, fmt.Errorf("unmarshal proposal response payload: %w", err)
	}
	t.action = &peer.ChaincodeAction{}
	if err := proto.Unmarshal(t.prp.Extension, t.action); err != nil {
		return nil, fmt.Errorf("unmarshal chaincode action: %w", err)
	}
	return t, nil
}

// kvsets returns the transaction's read/write sets by namespace.
func (t *parsedTx) kvsets() (map[string]*kvrwset.KVRWSet, error) {
	out := map[string]*kvrwset.KVRWSet{}
	if len(t.action.GetResults()) == 0 {
		return out, nil
	}
	txrw := &rwset.TxReadWriteSet{}
	if err := proto.Unmarshal(t.action.Results, txrw); err != nil {
		return nil, fmt.Errorf("unmarshal tx rwset: %w", err)
	}
	for _, ns := range txrw.NsRwset {
		if len(ns.CollectionHashedRwset) > 0 {
			return nil, errors.New("private data write sets are not supported by the devnet")
		}
		kv := &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(ns.Rwset, kv); err != nil {
			return nil, fmt.Errorf("unmarshal kv rwset of %s: %w", ns.Namespace, err)
		}
		out[ns.Namespace] = kv
	}
	return out, nil
}

// writes flattens the write sets for statedb.
func (t *parsedTx) writes() ([]statedb.Write, error) {
	sets, err := t.kvsets()
	if err != nil {
		return nil, err
	}
	var out []statedb.Write
	for ns, kv := range sets {
		out = append(out, kvWrites(ns, kv)...)
	}
	return out, nil
}

// kvWrites merges a namespace's value and metadata writes into one
// statedb.Write per key.
func kvWrites(ns string, kv *kvrwset.KVRWSet) []statedb.Write {
	var out []statedb.Write
	at := map[string]int{}
	for _, w := range kv.Writes {
		at[w.Key] = len(out)
		out = append(out, statedb.Write{Namespace: ns, Key: w.Key, Value: w.Value, Delete: w.IsDelete})
	}
	for _, mw := range kv.MetadataWrites {
		var md map[string][]byte
		if mw.Entries != nil {
			md = map[string][]byte{}
			for _, e := range mw.Entries {
				md[e.Name] = e.Value
			}
		}
		if i, ok := at[mw.Key]; ok {
			out[i].SetMetadata, out[i].Metadata = true, md
			continue
		}
		out = append(out, statedb.Write{Namespace: ns, Key: mw.Key, NoValue: true, SetMetadata: true, Metadata: md})
	}
	return out
}

// writtenKeys lists the keys a namespace's write set writes a value or
// metadata to, each once, values first.
func writtenKeys(kv *kvrwset.KVRWSet) []string {
	var keys []string
	seen := map[string]bool{}
	for _, w := range kv.GetWrites() {
		if !seen[w.Key] {
			seen[w.Key] = true
			keys = append(keys, w.Key)
		}
	}
	for _, mw := range kv.GetMetadataWrites() {
		if !seen[mw.Key] {
			seen[mw.Key] = true
			keys = append(keys, mw.Key)
		}
	}
	return keys
}

// event returns the chaincode event of the transaction, or nil.
func (t *parsedTx) event() *peer.ChaincodeEvent {
	if t.action == nil || len(t.action.Events) == 0 {
		return nil
	}
	ev := &peer.ChaincodeEvent{}
	if err := proto.Unmarshal(t.action.Events, ev); err != nil || ev.EventName == "" {
		return nil
	}
	return ev
}
