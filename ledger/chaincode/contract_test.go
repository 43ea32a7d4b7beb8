package chaincode_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
)

// testLog is an in-memory RFC 6962 tree with a note signer, to produce
// checkpoints and consistency proofs as the journal would.
type testLog struct {
	tb     testing.TB
	origin string
	signer note.Signer
	vkey   string
	hashes []tlog.Hash // stored hashes
	size   int64
	leaf   string // leaf data prefix; a different prefix is a different history
}

func newTestLog(tb testing.TB, origin string) *testLog {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatalf("signer: %v", err)
	}
	return &testLog{tb: tb, origin: origin, signer: s, vkey: vkey, leaf: "leaf"}
}

func (l *testLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = l.hashes[x]
	}
	return out, nil
}

// grow appends n leaves.
func (l *testLog) grow(n int) {
	l.tb.Helper()
	for range n {
		hs, err := tlog.StoredHashes(l.size, []byte(fmt.Sprintf("%s %d", l.leaf, l.size)), l)
		if err != nil {
			l.tb.Fatalf("stored hashes: %v", err)
		}
		l.hashes = append(l.hashes, hs...)
		l.size++
	}
}

func (l *testLog) root(size int64) tlog.Hash {
	l.tb.Helper()
	h, err := tlog.TreeHash(size, l)
	if err != nil {
		l.tb.Fatalf("tree hash: %v", err)
	}
	return h
}

// checkpoint signs the tree of the given size with signer.
func (l *testLog) checkpointWith(s note.Signer, size int64, root tlog.Hash) string {
	l.tb.Helper()
	text := log.Checkpoint{Origin: l.origin, Size: uint64(size), Hash: root[:]}.Marshal()
	n, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		l.tb.Fatalf("sign: %v", err)
	}
	return string(n)
}

func (l *testLog) checkpoint(size int64) string {
	return l.checkpointWith(l.signer, size, l.root(size))
}

// proof is the consistency proof from size m to n as chaincode arguments.
func (l *testLog) proof(m, n int64) []string {
	l.tb.Helper()
	if m == 0 {
		return []string{}
	}
	p, err := tlog.ProveTree(n, m, l)
	if err != nil {
		l.tb.Fatalf("prove tree %d→%d: %v", m, n, err)
	}
	out := make([]string, len(p))
	for i, h := range p {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

type fixture struct {
	net    *devnet.Network
	admin  *client.Contract
	client *client.Contract
	gw     *client.Gateway
}

func mustFixture(t *testing.T) *fixture {
	t.Helper()
	cc, err := chaincode.New()
	if err != nil {
		t.Fatal(err)
	}
	n := devnettest.MustStart(t, devnet.Chaincode{Name: "anchor", Policy: devnet.MajorityPolicy(devnet.DefaultOrgs), CC: cc})
	gw := devnettest.MustGateway(t, n, "TaniMSP")
	adm := mustAdminGateway(t, n, "BankMSP")
	return &fixture{
		net:    n,
		gw:     gw,
		client: gw.GetNetwork(n.Channel()).GetContract("anchor"),
		admin:  adm.GetNetwork(n.Channel()).GetContract("anchor"),
	}
}

func mustAdminGateway(t *testing.T, n *devnet.Network, org string) *client.Gateway {
	t.Helper()
	id, err := n.Identity(org, "admin")
	if err != nil {
		t.Fatal(err)
	}
	xid, err := identity.NewX509Identity(id.MSPID, id.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	sign, err := identity.NewPrivateKeySign(id.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	gw, err := client.Connect(xid, client.WithSign(sign), client.WithClientConnection(devnettest.MustConn(t, n)),
		client.WithEndorseTimeout(10*time.Second), client.WithSubmitTimeout(10*time.Second),
		client.WithEvaluateTimeout(10*time.Second), client.WithCommitStatusTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw
}

func (f *fixture) register(t *testing.T, l *testLog) {
	t.Helper()
	if _, err := f.admin.SubmitTransaction("RegisterLog", l.origin, l.vkey); err != nil {
		t.Fatalf("register %s: %v", l.origin, err)
	}
}

func (f *fixture) anchor(noteText string, proof []string) (*client.Status, error) {
	if proof == nil {
		proof = []string{}
	}
	p, err := json.Marshal(proof)
	if err != nil {
		return nil, err
	}
	_, commit, err := f.client.SubmitAsync("Anchor", client.WithArguments(noteText, string(p)))
	if err != nil {
		return nil, err
	}
	st, err := commit.Status()
	if err != nil {
		return nil, err
	}
	if !st.Successful {
		return st, fmt.Errorf("transaction %s invalid: %s", st.TransactionID, st.Code)
	}
	return st, nil
}

func (f *fixture) getAnchor(t *testing.T, origin string, size int64) *chaincode.Anchor {
	t.Helper()
	b, err := f.client.EvaluateTransaction("GetAnchor", origin, strconv.FormatInt(size, 10))
	if err != nil {
		t.Fatalf("GetAnchor: %v", err)
	}
	return decodeAnchor(t, b)
}

func decodeAnchor(t *testing.T, b []byte) *chaincode.Anchor {
	t.Helper()
	if len(b) == 0 {
		return nil
	}
	var a chaincode.Anchor
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("decode anchor %q: %v", b, err)
	}
	return &a
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %v, want one containing %q", err, want)
	}
}

func TestRegisterLog(t *testing.T) {
	f := mustFixture(t)
	t.Run("OK", func(t *testing.T) {
		l := newTestLog(t, "ok.example/log")
		f.register(t, l)
		b, err := f.client.EvaluateTransaction("GetLog", l.origin)
		if err != nil {
			t.Fatalf("GetLog: %v", err)
		}
		var got chaincode.Log
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.PublicKey != l.vkey || got.RegisteredBy != "BankMSP" {
			t.Errorf("got log %+v, want key %s registered by BankMSP", got, l.vkey)
		}
	})
	t.Run("ErrNotAdmin", func(t *testing.T) {
		l := newTestLog(t, "client.example/log")
		_, err := f.client.SubmitTransaction("RegisterLog", l.origin, l.vkey)
		wantErr(t, err, "only an organization admin may register a log")
	})
	t.Run("ErrEmptyOrigin", func(t *testing.T) {
		l := newTestLog(t, "x.example/log")
		_, err := f.admin.SubmitTransaction("RegisterLog", "", l.vkey)
		wantErr(t, err, "origin is empty")
	})
	t.Run("ErrInvalidKey", func(t *testing.T) {
		_, err := f.admin.SubmitTransaction("RegisterLog", "bad.example/log", "not a key")
		wantErr(t, err, "invalid public key")
	})
	t.Run("ErrKeyForOtherOrigin", func(t *testing.T) {
		l := newTestLog(t, "other.example/log")
		_, err := f.admin.SubmitTransaction("RegisterLog", "mine.example/log", l.vkey)
		wantErr(t, err, `public key is for origin "other.example/log"`)
	})
	t.Run("ErrAlreadyRegistered", func(t *testing.T) {
		l := newTestLog(t, "twice.example/log")
		f.register(t, l)
		l2 := newTestLog(t, "twice.example/log")
		_, err := f.admin.SubmitTransaction("RegisterLog", l2.origin, l2.vkey)
		wantErr(t, err, "already registered")
	})
}

func TestAnchor(t *testing.T) {
	f := mustFixture(t)
	t.Run("OK", func(t *testing.T) {
		l := newTestLog(t, "anchor-ok.example/log")
		f.register(t, l)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, err := f.gw.GetNetwork(f.net.Channel()).ChaincodeEvents(ctx, "anchor", client.WithStartBlock(0))
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		l.grow(3)
		st1, err := f.anchor(l.checkpoint(3), l.proof(0, 3))
		if err != nil {
			t.Fatalf("anchor size 3: %v", err)
		}
		l.grow(6)
		st2, err := f.anchor(l.checkpoint(9), l.proof(3, 9))
		if err != nil {
			t.Fatalf("anchor size 9: %v", err)
		}
		for _, want := range []struct {
			size int64
			st   *client.Status
			prev uint64
		}{{3, st1, 0}, {9, st2, 3}} {
			got := f.getAnchor(t, l.origin, want.size)
			root := l.root(want.size)
			if got == nil || got.TxID != want.st.TransactionID || got.Root != base64.StdEncoding.EncodeToString(root[:]) || got.PreviousSize != want.prev {
				t.Errorf("got anchor %+v at size %d, want tx %s, root %x, previous %d", got, want.size, want.st.TransactionID, root, want.prev)
			}
		}
		b, err := f.client.EvaluateTransaction("LatestAnchor", l.origin)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeAnchor(t, b); got == nil || got.Size != 9 {
			t.Errorf("got latest %+v, want size 9", got)
		}
		// The events carry the same transactions and blocks as the commits.
		seen := map[string]uint64{}
		for len(seen) < 2 {
			ev := <-events
			var a chaincode.Anchor
			if err := json.Unmarshal(ev.Payload, &a); err != nil {
				t.Fatal(err)
			}
			if ev.EventName == chaincode.AnchoredEvent && a.Origin == l.origin {
				if a.TxID != ev.TransactionID {
					t.Errorf("got event payload tx %s in transaction %s, want equal", a.TxID, ev.TransactionID)
				}
				seen[ev.TransactionID] = ev.BlockNumber
			}
		}
		if seen[st1.TransactionID] != st1.BlockNumber || seen[st2.TransactionID] != st2.BlockNumber {
			t.Errorf("got event blocks %v, want %s@%d and %s@%d", seen, st1.TransactionID, st1.BlockNumber, st2.TransactionID, st2.BlockNumber)
		}
	})
	t.Run("NoneAnchoredIsEmpty", func(t *testing.T) {
		l := newTestLog(t, "none.example/log")
		f.register(t, l)
		if got := f.getAnchor(t, l.origin, 1); got != nil {
			t.Errorf("got anchor %+v, want none", got)
		}
		b, err := f.client.EvaluateTransaction("LatestAnchor", l.origin)
		if err != nil || len(b) != 0 {
			t.Errorf("got latest %q, %v, want empty result", b, err)
		}
	})
	t.Run("ErrUnregistered", func(t *testing.T) {
		l := newTestLog(t, "unknown.example/log")
		l.grow(1)
		_, err := f.anchor(l.checkpoint(1), nil)
		wantErr(t, err, `log "unknown.example/log" is not registered`)
	})
	t.Run("ErrForgedSignature", func(t *testing.T) {
		l := newTestLog(t, "forged.example/log")
		f.register(t, l)
		l.grow(2)
		forger := newTestLog(t, l.origin) // same origin, other key
		_, err := f.anchor(l.checkpointWith(forger.signer, 2, l.root(2)), nil)
		wantErr(t, err, "rejected: checkpoint")
		if got := f.getAnchor(t, l.origin, 2); got != nil {
			t.Errorf("got anchor %+v after forged checkpoint, want none", got)
		}
	})
	t.Run("ErrTamperedNote", func(t *testing.T) {
		l := newTestLog(t, "tampered.example/log")
		f.register(t, l)
		l.grow(2)
		_, err := f.anchor(strings.Replace(l.checkpoint(2), "\n2\n", "\n3\n", 1), nil)
		wantErr(t, err, "rejected: checkpoint")
	})
	t.Run("ErrEmptyTree", func(t *testing.T) {
		l := newTestLog(t, "empty.example/log")
		f.register(t, l)
		_, err := f.anchor(l.checkpointWith(l.signer, 0, sha256.Sum256(nil)), nil)
		wantErr(t, err, "checkpoint of an empty tree")
	})
	t.Run("ErrProofNotBase64", func(t *testing.T) {
		l := newTestLog(t, "b64.example/log")
		f.register(t, l)
		l.grow(1)
		_, err := f.anchor(l.checkpoint(1), []string{"!!"})
		wantErr(t, err, "consistency proof hash 0 is not base64")
	})
	t.Run("ErrFirstWithProof", func(t *testing.T) {
		l := newTestLog(t, "first.example/log")
		f.register(t, l)
		l.grow(3)
		_, err := f.anchor(l.checkpoint(3), l.proof(1, 3))
		wantErr(t, err, "first checkpoint needs an empty consistency proof")
	})
	// The cases below start from an anchored tree of size 4.
	anchored := func(t *testing.T, origin string) *testLog {
		l := newTestLog(t, origin)
		f.register(t, l)
		l.grow(4)
		if _, err := f.anchor(l.checkpoint(4), nil); err != nil {
			t.Fatalf("anchor size 4: %v", err)
		}
		return l
	}
	t.Run("ErrAlreadyAnchored", func(t *testing.T) {
		l := anchored(t, "again.example/log")
		_, err := f.anchor(l.checkpoint(4), nil)
		wantErr(t, err, "checkpoint of size 4 is already anchored")
	})
	t.Run("ErrFork", func(t *testing.T) {
		l := anchored(t, "fork.example/log")
		_, err := f.anchor(l.checkpointWith(l.signer, 4, sha256.Sum256([]byte("other history"))), nil)
		wantErr(t, err, "fork: checkpoint of size 4 has a different root")
	})
	t.Run("ErrOlder", func(t *testing.T) {
		l := anchored(t, "older.example/log")
		_, err := f.anchor(l.checkpoint(2), nil)
		wantErr(t, err, "checkpoint of size 2 is older than the latest anchored size 4")
	})
	t.Run("ErrInconsistent", func(t *testing.T) {
		l := anchored(t, "rewrite.example/log")
		// A log that signs size 7 over a history whose first four leaves
		// differ: validly signed, but not an extension of the anchored tree.
		other := &testLog{tb: t, origin: l.origin, signer: l.signer, leaf: "rewritten"}
		other.grow(7)
		_, err := f.anchor(other.checkpoint(7), other.proof(4, 7))
		wantErr(t, err, "checkpoint of size 7 is not a consistent extension of anchored size 4")
	})
	t.Run("ErrWrongProof", func(t *testing.T) {
		l := anchored(t, "wrongproof.example/log")
		l.grow(4)
		p := l.proof(4, 8)
		p[len(p)-1] = base64.StdEncoding.EncodeToString(make([]byte, 32))
		_, err := f.anchor(l.checkpoint(8), p)
		wantErr(t, err, "is not a consistent extension of anchored size 4")
	})
}
