package devnet_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/assetcc"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
)

func contract(tb testing.TB, gw *client.Gateway, n *devnet.Network) *client.Contract {
	return gw.GetNetwork(n.Channel()).GetContract(devnet.AssetChaincodeName)
}

func readAsset(t *testing.T, c *client.Contract, id string) assetcc.Asset {
	t.Helper()
	b, err := c.EvaluateTransaction("Read", id)
	if err != nil {
		t.Fatalf("evaluate Read(%s): %v", id, err)
	}
	var a assetcc.Asset
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("decode asset: %v", err)
	}
	return a
}

func TestSubmitAndEvaluate(t *testing.T) {
	n := devnettest.MustStart(t)
	c := contract(t, devnettest.MustGateway(t, n, "TaniMSP"), n)

	t.Run("OK", func(t *testing.T) {
		if _, err := c.SubmitTransaction("Create", "a1", "alice", "10"); err != nil {
			t.Fatalf("submit Create: %v", err)
		}
		got := readAsset(t, c, "a1")
		if want := (assetcc.Asset{ID: "a1", Owner: "alice", Value: 10}); got != want {
			t.Errorf("Read = %+v, want %+v", got, want)
		}
		res, err := c.SubmitTransaction("Add", "a1", "5")
		if err != nil {
			t.Fatalf("submit Add: %v", err)
		}
		var a assetcc.Asset
		if err := json.Unmarshal(res, &a); err != nil || a.Value != 15 {
			t.Errorf("Add result = %s (%v), want value 15", res, err)
		}
	})

	t.Run("ErrChaincodeEvaluate", func(t *testing.T) {
		_, err := c.EvaluateTransaction("Read", "missing")
		if status.Code(err) != codes.Unknown {
			t.Fatalf("got %v, want code Unknown with chaincode response", err)
		}
	})

	t.Run("OKAsyncStatusFromOtherOrg", func(t *testing.T) {
		bank := contract(t, devnettest.MustGateway(t, n, "BankMSP"), n)
		_, commit, err := bank.SubmitAsync("Create", client.WithArguments("a2", "bob", "1"))
		if err != nil {
			t.Fatalf("SubmitAsync: %v", err)
		}
		st, err := commit.Status()
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if !st.Successful || st.Code != peer.TxValidationCode_VALID {
			t.Errorf("status = %v, want VALID", st.Code)
		}
		if st.BlockNumber == 0 {
			t.Errorf("block number = 0, want a block after genesis")
		}
	})
}

func endorseErr(t *testing.T, err error, wantCode codes.Code, wantDetail string) {
	t.Helper()
	var ee *client.EndorseError
	if !errors.As(err, &ee) {
		t.Fatalf("got %v (%T), want *client.EndorseError", err, err)
	}
	if got := status.Code(err); got != wantCode {
		t.Errorf("got code %v, want %v (%v)", got, wantCode, err)
	}
	for _, d := range ee.Details() {
		if d.Message == wantDetail {
			return
		}
	}
	t.Errorf("details %v, want one with message %q", ee.Details(), wantDetail)
}

func TestProposalRejected(t *testing.T) {
	n := devnettest.MustStart(t)
	ch := n.Channel()

	t.Run("ErrTamperedSignature", func(t *testing.T) {
		id, _ := n.Identity("TaniMSP", "client")
		sign, _ := identity.NewPrivateKeySign(id.PrivateKey())
		tampered := func(digest []byte) ([]byte, error) {
			other := sha256.Sum256(append([]byte("tampered"), digest...))
			return sign(other[:])
		}
		c := contract(t, devnettest.MustGateway(t, n, "TaniMSP", client.WithSign(tampered)), n)
		_, err := c.SubmitTransaction("Create", "t1", "x", "1")
		endorseErr(t, err, codes.Aborted, fmt.Sprintf("access denied: channel [%s] creator org [TaniMSP]", ch))
	})

	t.Run("ErrUnsigned", func(t *testing.T) {
		unsigned := func([]byte) ([]byte, error) { return nil, nil }
		c := contract(t, devnettest.MustGateway(t, n, "TaniMSP", client.WithSign(unsigned)), n)
		_, err := c.SubmitTransaction("Create", "t2", "x", "1")
		endorseErr(t, err, codes.Aborted, "empty signature bytes")
	})

	t.Run("ErrUnknownMSP", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cert := selfSigned(t, key)
		gw := gatewayFor(t, n, "EvilMSP", cert, key)
		_, err := contract(t, gw, n).SubmitTransaction("Create", "t3", "x", "1")
		endorseErr(t, err, codes.Aborted, fmt.Sprintf("access denied: channel [%s] creator org unknown, creator is malformed", ch))
	})

	t.Run("ErrExpiredCertificate", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cert, err := n.IssueCertificate("TaniMSP", "expired@tani", "client", &key.PublicKey, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		gw := gatewayFor(t, n, "TaniMSP", cert, key)
		_, err = contract(t, gw, n).SubmitTransaction("Create", "t4", "x", "1")
		endorseErr(t, err, codes.Aborted, fmt.Sprintf("access denied: channel [%s] creator org [TaniMSP]", ch))
	})

	t.Run("ErrTxIDMismatch", func(t *testing.T) {
		gw := devnettest.MustGateway(t, n, "TaniMSP")
		prop, err := contract(t, gw, n).NewProposal("Create", client.WithArguments("t5", "x", "1"))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := prop.Bytes()
		// Rewrite the TxID inside the signed proposal and sign it properly.
		var pt gateway.ProposedTransaction
		var p peer.Proposal
		var hdr cb.Header
		var chdr cb.ChannelHeader
		must(t, proto.Unmarshal(raw, &pt))
		must(t, proto.Unmarshal(pt.Proposal.ProposalBytes, &p))
		must(t, proto.Unmarshal(p.Header, &hdr))
		must(t, proto.Unmarshal(hdr.ChannelHeader, &chdr))
		wrong := sha256.Sum256([]byte("not the txid"))
		chdr.TxId = fmt.Sprintf("%x", wrong)
		hdr.ChannelHeader = marshal(t, &chdr)
		p.Header = marshal(t, &hdr)
		proposalBytes := marshal(t, &p)
		pt.Proposal = &peer.SignedProposal{ProposalBytes: proposalBytes}
		id, _ := n.Identity("TaniMSP", "client")
		sign, _ := identity.NewPrivateKeySign(id.PrivateKey())
		digest := sha256.Sum256(proposalBytes)
		sig, err := sign(digest[:])
		if err != nil {
			t.Fatal(err)
		}
		signed, err := gw.NewSignedProposal(marshal(t, &pt), sig)
		if err != nil {
			t.Fatal(err)
		}
		_, err = signed.Endorse()
		var ee *client.EndorseError
		if !errors.As(err, &ee) || status.Code(err) != codes.Aborted || len(ee.Details()) != 1 {
			t.Fatalf("got %v, want EndorseError with one detail", err)
		}
		want := "incorrectly computed txid '" + chdr.TxId + "' -- expected '"
		if got := ee.Details()[0].Message; len(got) < len(want) || got[:len(want)] != want {
			t.Errorf("detail %q, want prefix %q", got, want)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	must(t, err)
	return b
}

func gatewayFor(t *testing.T, n *devnet.Network, mspID string, cert *x509Cert, key *ecdsa.PrivateKey) *client.Gateway {
	t.Helper()
	xid, err := identity.NewX509Identity(mspID, cert)
	must(t, err)
	sign, err := identity.NewPrivateKeySign(key)
	must(t, err)
	gw, err := client.Connect(xid, client.WithSign(sign), client.WithClientConnection(devnettest.MustConn(t, n)))
	must(t, err)
	t.Cleanup(func() { gw.Close() })
	return gw
}

func TestDuplicateTxIDInvalidated(t *testing.T) {
	n := devnettest.MustStart(t)
	gw := devnettest.MustGateway(t, n, "TaniMSP")
	c := contract(t, gw, n)
	prop, err := c.NewProposal("Create", client.WithArguments("d1", "x", "1"))
	must(t, err)
	tx, err := prop.Endorse()
	must(t, err)
	commit, err := tx.Submit()
	must(t, err)
	st, err := commit.Status()
	must(t, err)
	if st.Code != peer.TxValidationCode_VALID {
		t.Fatalf("first submit: got %v, want VALID", st.Code)
	}
	// Resubmit the identical signed transaction.
	raw, err := tx.Bytes()
	must(t, err)
	again, err := gw.NewTransaction(raw)
	must(t, err)
	height := n.Height()
	if _, err := again.Submit(); err != nil {
		t.Fatalf("resubmit: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events, err := gw.GetNetwork(n.Channel()).BlockEvents(ctx, client.WithStartBlock(height))
	must(t, err)
	b := <-events
	filter := b.GetMetadata().GetMetadata()[cb.BlockMetadataIndex_TRANSACTIONS_FILTER]
	if len(filter) != 1 || peer.TxValidationCode(filter[0]) != peer.TxValidationCode_DUPLICATE_TXID {
		t.Errorf("block %d filter = %v, want [DUPLICATE_TXID]", b.GetHeader().GetNumber(), filter)
	}
	if st, err := commit.Status(); err != nil || st.Code != peer.TxValidationCode_VALID {
		t.Errorf("status of first after duplicate = %v, %v; want VALID", st, err)
	}
}

func TestConcurrentReadModifyWrite(t *testing.T) {
	// A long batch timeout puts both transactions in one block.
	n := devnettest.MustStartConfig(t, devnet.Config{Dir: t.TempDir(), BatchTimeout: 500 * time.Millisecond})
	c := contract(t, devnettest.MustGateway(t, n, "TaniMSP"), n)
	if _, err := c.SubmitTransaction("Create", "k", "x", "0"); err != nil {
		t.Fatal(err)
	}
	var txs []*client.Transaction
	for i := 0; i < 2; i++ {
		tx, err := c.NewProposal("Add", client.WithArguments("k", "1"))
		must(t, err)
		endorsed, err := tx.Endorse()
		must(t, err)
		txs = append(txs, endorsed)
	}
	codesGot := make([]peer.TxValidationCode, 2)
	var wg sync.WaitGroup
	for i, tx := range txs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			commit, err := tx.Submit()
			if err != nil {
				t.Errorf("submit: %v", err)
				return
			}
			st, err := commit.Status()
			if err != nil {
				t.Errorf("status: %v", err)
				return
			}
			codesGot[i] = st.Code
		}()
	}
	wg.Wait()
	valid, conflict := 0, 0
	for _, c := range codesGot {
		switch c {
		case peer.TxValidationCode_VALID:
			valid++
		case peer.TxValidationCode_MVCC_READ_CONFLICT:
			conflict++
		}
	}
	if valid != 1 || conflict != 1 {
		t.Errorf("codes = %v, want one VALID and one MVCC_READ_CONFLICT", codesGot)
	}
	if got := readAsset(t, c, "k").Value; got != 1 {
		t.Errorf("value = %d, want 1 (only the valid transaction applied)", got)
	}
}

func TestEndorsementPolicyFailure(t *testing.T) {
	n := devnettest.MustStart(t)
	c := contract(t, devnettest.MustGateway(t, n, "TaniMSP"), n)
	_, commit, err := c.SubmitAsync("Create", client.WithArguments("p1", "x", "1"), client.WithEndorsingOrganizations("BankMSP"))
	if err != nil {
		t.Fatalf("SubmitAsync: %v", err)
	}
	st, err := commit.Status()
	must(t, err)
	if st.Code != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
		t.Errorf("got %v, want ENDORSEMENT_POLICY_FAILURE", st.Code)
	}
	if _, err := c.EvaluateTransaction("Read", "p1"); err == nil {
		t.Error("asset of invalid transaction is readable, want it not written")
	}
}

type asn1Header struct {
	Number       *big.Int
	PreviousHash []byte
	DataHash     []byte
}

func TestBlockHashes(t *testing.T) {
	n := devnettest.MustStart(t)
	gw := devnettest.MustGateway(t, n, "TaniMSP")
	c := contract(t, gw, n)
	for i := 0; i < 3; i++ {
		if _, err := c.SubmitTransaction("Create", fmt.Sprintf("h%d", i), "x", "1"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	height := n.Height()
	events, err := gw.GetNetwork(n.Channel()).BlockEvents(ctx, client.WithStartBlock(0))
	must(t, err)
	var prev []byte
	for i := uint64(0); i < height; i++ {
		b := <-events
		if b.GetHeader().GetNumber() != i {
			t.Fatalf("got block %d, want %d", b.GetHeader().GetNumber(), i)
		}
		var data []byte
		for _, d := range b.Data.Data {
			data = append(data, d...)
		}
		dh := sha256.Sum256(data)
		if string(dh[:]) != string(b.Header.DataHash) {
			t.Errorf("block %d data hash %x, want %x", i, b.Header.DataHash, dh)
		}
		if string(prev) != string(b.Header.PreviousHash) {
			t.Errorf("block %d previous hash %x, want %x", i, b.Header.PreviousHash, prev)
		}
		der, err := asn1.Marshal(asn1Header{Number: new(big.Int).SetUint64(i), PreviousHash: b.Header.PreviousHash, DataHash: b.Header.DataHash})
		must(t, err)
		h := sha256.Sum256(der)
		prev = h[:]
		if f := b.Metadata.Metadata[cb.BlockMetadataIndex_TRANSACTIONS_FILTER]; len(f) != len(b.Data.Data) {
			t.Errorf("block %d filter has %d entries, want %d", i, len(f), len(b.Data.Data))
		}
	}
	if i := height; i < 2 {
		t.Fatalf("height %d, want at least 2", i)
	}
}

func TestChaincodeEventsResumeAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := devnet.Config{Dir: dir, Listen: "127.0.0.1:0"}
	checkpointFile := filepath.Join(t.TempDir(), "checkpoint.json")
	const total = 10

	n1, err := devnet.New(cfg, devnet.DefaultChaincodes(nil)...)
	must(t, err)
	must(t, n1.Start(context.Background()))
	c1 := contract(t, devnettest.MustGateway(t, n1, "TaniMSP"), n1)
	for i := 0; i < total; i++ {
		if _, err := c1.SubmitTransaction("Create", fmt.Sprintf("e%02d", i), "x", "1"); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	// Read half the events, checkpointing each.
	func() {
		cp, err := client.NewFileCheckpointer(checkpointFile)
		must(t, err)
		defer cp.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		gw := devnettest.MustGateway(t, n1, "TaniMSP")
		events, err := gw.GetNetwork(n1.Channel()).ChaincodeEvents(ctx, devnet.AssetChaincodeName, client.WithStartBlock(0), client.WithCheckpoint(cp))
		must(t, err)
		for i := 0; i < total/2; i++ {
			ev := <-events
			seen[string(ev.Payload)]++
			must(t, cp.CheckpointChaincodeEvent(ev))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(t, n1.Stop(ctx))

	n2 := devnettest.MustStartConfig(t, cfg)
	cp, err := client.NewFileCheckpointer(checkpointFile)
	must(t, err)
	defer cp.Close()
	gw := devnettest.MustGateway(t, n2, "TaniMSP")
	c2 := contract(t, gw, n2)
	if _, err := c2.SubmitTransaction("Create", "after-restart", "x", "1"); err != nil {
		t.Fatalf("submit after restart: %v", err)
	}
	events, err := gw.GetNetwork(n2.Channel()).ChaincodeEvents(ctx, devnet.AssetChaincodeName, client.WithCheckpoint(cp))
	must(t, err)
	for i := 0; i < total/2+1; i++ {
		select {
		case ev := <-events:
			seen[string(ev.Payload)]++
			must(t, cp.CheckpointChaincodeEvent(ev))
		case <-ctx.Done():
			t.Fatalf("got %d events after restart, want %d", i, total/2+1)
		}
	}
	if len(seen) != total+1 {
		t.Errorf("saw %d distinct events, want %d", len(seen), total+1)
	}
	for p, k := range seen {
		if k != 1 {
			t.Errorf("event %s seen %d times, want once", p, k)
		}
	}
}
