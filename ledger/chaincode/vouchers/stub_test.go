package vouchers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ledger is an in-memory world state for unit tests of the contract: each
// call runs as one transaction whose writes, key-level policies and event
// are kept only if the contract returns no error, as a committing peer
// keeps only a valid transaction's.
type ledger struct {
	tb       testing.TB
	state    map[string][]byte
	policies map[string][]byte
	events   []event
	txs      int
}

type event struct {
	name    string
	payload []byte
}

func newLedger(tb testing.TB) *ledger {
	return &ledger{tb: tb, state: map[string][]byte{}, policies: map[string][]byte{}}
}

// caller is an identity calling the contract: an MSP ID and a certificate
// whose OU is its NodeOU role.
type caller struct {
	mspID   string
	creator []byte
}

func mustCaller(tb testing.TB, mspID, role string) caller {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: role + "@" + mspID, OrganizationalUnit: []string{role}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	creator, err := proto.Marshal(&msp.SerializedIdentity{Mspid: mspID, IdBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})})
	if err != nil {
		tb.Fatal(err)
	}
	return caller{mspID: mspID, creator: creator}
}

// call runs fn as one transaction by who at time at.
func (l *ledger) call(who caller, at time.Time, fn func(contractapi.TransactionContextInterface) (string, error)) (string, error) {
	l.txs++
	st := &txStub{l: l, creator: who.creator, txID: fmt.Sprintf("tx%04d", l.txs), ts: at,
		writes: map[string][]byte{}, policies: map[string][]byte{}}
	ctx := &contractapi.TransactionContext{}
	ctx.SetStub(st)
	out, err := fn(ctx)
	if err != nil {
		return "", err
	}
	maps.Copy(l.state, st.writes)
	maps.Copy(l.policies, st.policies)
	if st.event != nil {
		l.events = append(l.events, *st.event)
	}
	return out, nil
}

// txStub is the part of the shim's stub the contract uses; any other call
// panics on the nil embedded interface, so a contract that starts using
// more of the stub fails these tests loudly.
type txStub struct {
	shim.ChaincodeStubInterface
	l        *ledger
	creator  []byte
	txID     string
	ts       time.Time
	writes   map[string][]byte
	policies map[string][]byte
	event    *event
}

// GetState reads committed state, as a simulation does (not its own
// writes).
func (s *txStub) GetState(key string) ([]byte, error) { return s.l.state[key], nil }

func (s *txStub) PutState(key string, value []byte) error {
	s.writes[key] = value
	return nil
}

func (s *txStub) SetStateValidationParameter(key string, ep []byte) error {
	s.policies[key] = ep
	return nil
}

func (s *txStub) CreateCompositeKey(objectType string, attributes []string) (string, error) {
	return shim.CreateCompositeKey(objectType, attributes)
}

func (s *txStub) GetCreator() ([]byte, error) { return s.creator, nil }
func (s *txStub) GetTxID() string             { return s.txID }
func (s *txStub) GetTxTimestamp() (*timestamppb.Timestamp, error) {
	return timestamppb.New(s.ts), nil
}

func (s *txStub) SetEvent(name string, payload []byte) error {
	s.event = &event{name: name, payload: payload}
	return nil
}
