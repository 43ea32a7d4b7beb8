package nodeclient_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
)

// minNode is the oldest Node.js the pinned @hyperledger/fabric-gateway
// supports (its "engines" field); Debian 12 ships 18.20.
var minNode = [3]int{18, 12, 0}

// anchorOutput is what gateway.mjs prints in "anchor" mode.
type anchorOutput struct {
	Node         string           `json:"node"`
	OpenSSL      string           `json:"openssl"`
	LatestBefore string           `json:"latestBefore"`
	Register     commitStatus     `json:"register"`
	AnchorResult chaincode.Anchor `json:"anchorResult"`
	Anchor       commitStatus     `json:"anchor"`
	Event        chaincodeEvent   `json:"event"`
	LatestAfter  chaincode.Anchor `json:"latestAfter"`
	Again        againOutput      `json:"again"`
}

// againOutput is the answer to anchoring the same checkpoint a second time.
type againOutput struct {
	Accepted bool       `json:"accepted"`
	Error    *nodeError `json:"error"`
}

// probeOutput is what gateway.mjs prints in "probe" mode.
type probeOutput struct {
	LatestBefore *string    `json:"latestBefore"`
	Error        *nodeError `json:"error"`
}

type commitStatus struct {
	TransactionID string `json:"transactionId"`
	Code          int    `json:"code"`
	Successful    bool   `json:"successful"`
	BlockNumber   string `json:"blockNumber"`
}

type chaincodeEvent struct {
	ChaincodeName string           `json:"chaincodeName"`
	EventName     string           `json:"eventName"`
	TransactionID string           `json:"transactionId"`
	BlockNumber   string           `json:"blockNumber"`
	Payload       chaincode.Anchor `json:"payload"`
}

type nodeError struct {
	Name    string `json:"name"`
	Message string `json:"message"`
	Code    *int   `json:"code"`
	Details []struct {
		MSPID   string `json:"mspId"`
		Message string `json:"message"`
	} `json:"details"`
}

// TestNodeGatewayClient runs the official Node gateway client against a TLS
// devnet hosting the anchor chaincode, trusting only the devnet's TLS CA and
// dialing 127.0.0.1 without a server-name override, as TaniMSP's admin.
func TestNodeGatewayClient(t *testing.T) {
	script := mustInstall(t)
	cc, err := chaincode.New()
	if err != nil {
		t.Fatal(err)
	}
	n := devnettest.MustStart(t, devnet.Chaincode{Name: "anchor", Policy: devnet.MajorityPolicy(devnet.DefaultOrgs), CC: cc})
	ci := n.ConnectionInfo()
	if !strings.HasPrefix(ci.Endpoint, "127.0.0.1:") {
		t.Fatalf("devnet listens on %s, want 127.0.0.1 (the SAN this test relies on)", ci.Endpoint)
	}
	admin, err := n.Identity("TaniMSP", "admin")
	if err != nil {
		t.Fatal(err)
	}
	tl := newTestLog(t, "nodeclient.example/log", 3)
	in := map[string]any{
		"endpoint": ci.Endpoint, "channel": n.Channel(), "chaincode": "anchor", "tlsCACert": ci.TLSCACertPath,
		"mspId": admin.MSPID, "cert": admin.CertPath, "key": admin.KeyPath,
		"origin": tl.origin, "publicKey": tl.vkey, "checkpoint": tl.checkpoint,
	}
	gw := devnettest.MustGateway(t, n, "BankMSP")
	runNodeScenarios(t, script, in, tl, func(*testing.T) {}, func(t *testing.T) []byte {
		b, err := gw.GetNetwork(n.Channel()).GetContract("anchor").EvaluateTransaction("LatestAnchor", tl.origin)
		if err != nil {
			t.Fatalf("Go client LatestAnchor: %v", err)
		}
		return b
	})
}

// TestNodeGatewayClientRealPeer runs the same scenarios against a real
// Fabric peer of the suite's network (TaniMSP's), reached as TaniMSP's
// connection profile from `tani network init` says (URL and TLS CA), with
// the Go cross-check through BankMSP's peer.
func TestNodeGatewayClientRealPeer(t *testing.T) {
	net := localnettest.Shared(t)
	script := mustInstall(t)
	endpoint, tlsCA := fromProfile(t, filepath.Join(net.C.Dir, "connection-TaniMSP.json"))
	cert, key := net.C.AdminPaths("TaniMSP")
	tl := newTestLog(t, fmt.Sprintf("nodeclient-%d.example/log", time.Now().UnixNano()), 3)
	in := map[string]any{
		"endpoint": endpoint, "channel": net.C.Channel, "chaincode": net.C.Chaincode, "tlsCACert": tlsCA,
		"mspId": "TaniMSP", "cert": cert, "key": key,
		"origin": tl.origin, "publicKey": tl.vkey, "checkpoint": tl.checkpoint,
	}
	fc, err := fabric.Dial(net.ClientConfig("BankMSP"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	sync := func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := net.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
	}
	runNodeScenarios(t, script, in, tl, sync, func(t *testing.T) []byte {
		a, err := fc.LatestAnchor(context.Background(), tl.origin)
		if err != nil {
			t.Fatalf("Go client LatestAnchor through BankMSP's peer: %v", err)
		}
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// fromProfile reads the organization's peer from a common connection
// profile: its host:port and its TLS CA, written to a file.
func fromProfile(t *testing.T, path string) (endpoint, tlsCAFile string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Organizations map[string]struct {
			Peers []string `json:"peers"`
		} `json:"organizations"`
		Client struct {
			Organization string `json:"organization"`
		} `json:"client"`
		Peers map[string]struct {
			URL        string `json:"url"`
			TLSCACerts struct {
				PEM string `json:"pem"`
			} `json:"tlsCACerts"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	peers := p.Organizations[p.Client.Organization].Peers
	if len(peers) == 0 {
		t.Fatalf("%s names no peer of %s", path, p.Client.Organization)
	}
	peer := p.Peers[peers[0]]
	endpoint, ok := strings.CutPrefix(peer.URL, "grpcs://")
	if !ok || peer.TLSCACerts.PEM == "" {
		t.Fatalf("%s: peer %s has URL %q and TLS CA %q, want grpcs:// and a PEM", path, peers[0], peer.URL, peer.TLSCACerts.PEM)
	}
	tlsCAFile = filepath.Join(t.TempDir(), "tlsca.pem")
	if err := os.WriteFile(tlsCAFile, []byte(peer.TLSCACerts.PEM), 0o644); err != nil {
		t.Fatal(err)
	}
	return endpoint, tlsCAFile
}

// runNodeScenarios probes, checks that a foreign TLS CA is refused, and
// registers and anchors with the Node client, calling sync after each
// committed step (a real network's peers then all have it); latestFromGo
// reads the latest anchor of the log through the Go client.
func runNodeScenarios(t *testing.T, script string, in map[string]any, tl testLog, sync func(*testing.T), latestFromGo func(t *testing.T) []byte) {
	t.Run("OKProbe", func(t *testing.T) {
		var got probeOutput
		runNode(t, script, with(in, "mode", "probe"), &got)
		if got.Error != nil || got.LatestBefore == nil || *got.LatestBefore != "" {
			t.Fatalf("got latest %v, error %+v, want an empty LatestAnchor over verified TLS", got.LatestBefore, got.Error)
		}
	})

	t.Run("ErrUntrustedCA", func(t *testing.T) {
		// The same call trusting another CA must fail: the client really
		// verifies the peer's certificate, so the OK cases mean something.
		var got probeOutput
		runNode(t, script, with(in, "mode", "probe", "tlsCACert", mustForeignCA(t)), &got)
		if got.Error == nil {
			t.Fatalf("got LatestAnchor %v trusting a foreign CA, want a TLS failure", got.LatestBefore)
		}
		if got.Error.Code == nil || *got.Error.Code != 14 || !strings.Contains(got.Error.Message, "certificate") {
			t.Errorf("got error %s (code %v), want gRPC UNAVAILABLE (14) naming the certificate", got.Error.Message, got.Error.Code)
		}
		t.Logf("refused as it should be: %s", got.Error.Message)
	})

	t.Run("OKAnchor", func(t *testing.T) {
		var got anchorOutput
		runNode(t, script, with(in, "mode", "register"), &got)
		if got.LatestBefore != "" || got.Register.Code != 0 {
			t.Fatalf("register: got latest %q before, status %+v, want none and VALID", got.LatestBefore, got.Register)
		}
		sync(t)
		runNode(t, script, with(in, "mode", "anchor"), &got)
		sync(t)
		runNode(t, script, with(in, "mode", "again"), &got)
		want := chaincode.Anchor{
			Origin: tl.origin, Size: 3, Root: tl.root, Checkpoint: tl.checkpoint, TxID: got.Anchor.TransactionID,
		}
		if diff := cmp.Diff(want, got.AnchorResult); diff != "" {
			t.Errorf("Anchor result (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, got.LatestAfter); diff != "" {
			t.Errorf("LatestAnchor after anchoring (-want +got):\n%s", diff)
		}
		wantEvent := chaincodeEvent{
			ChaincodeName: in["chaincode"].(string), EventName: chaincode.AnchoredEvent, TransactionID: got.Anchor.TransactionID,
			BlockNumber: got.Anchor.BlockNumber, Payload: want,
		}
		if diff := cmp.Diff(wantEvent, got.Event); diff != "" {
			t.Errorf("Anchored event (-want +got):\n%s", diff)
		}
		if got.Again.Accepted || got.Again.Error == nil || !anyDetail(got.Again.Error, "already anchored") {
			t.Errorf("second Anchor of the same checkpoint: got %+v, want the endorsers' \"already anchored\" refusal", got.Again)
		}

		// What the Node client wrote, the Go client reads: same chain.
		b := latestFromGo(t)
		var fromGo chaincode.Anchor
		if err := json.Unmarshal(b, &fromGo); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if diff := cmp.Diff(want, fromGo); diff != "" {
			t.Errorf("LatestAnchor through the Go client (-want +got):\n%s", diff)
		}
	})
}

func anyDetail(e *nodeError, substr string) bool {
	for _, d := range e.Details {
		if strings.Contains(d.Message, substr) {
			return true
		}
	}
	return false
}

// with returns a copy of in with key/value pairs set.
func with(in map[string]any, kv ...string) map[string]any {
	out := make(map[string]any, len(in)+len(kv)/2)
	for k, v := range in {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// testLog is a journal of size leaves: its origin, note verifier key, the
// signed checkpoint of the whole tree and its root (standard base64).
type testLog struct {
	origin, vkey, checkpoint, root string
}

type hashes []tlog.Hash

func (h hashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = h[x]
	}
	return out, nil
}

func newTestLog(t *testing.T, origin string, size int64) testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	var hs hashes
	for i := range size {
		add, err := tlog.StoredHashes(i, []byte(fmt.Sprintf("record %d", i)), hs)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, add...)
	}
	root, err := tlog.TreeHash(size, hs)
	if err != nil {
		t.Fatal(err)
	}
	text := log.Checkpoint{Origin: origin, Size: uint64(size), Hash: root[:]}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return testLog{origin: origin, vkey: vkey, checkpoint: string(signed), root: base64.StdEncoding.EncodeToString(root[:])}
}

// mustForeignCA writes a CA certificate, with the usages a TLS CA needs,
// that did not issue the devnet's certificate.
func mustForeignCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tlsca.elsewhere.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IsCA:        true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "foreign-ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runNode runs gateway.mjs with in as its input file and decodes the JSON
// it prints into out.
func runNode(t *testing.T, script string, in map[string]any, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	inPath := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(inPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, inPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(script), err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("decode node output: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
}

// mustInstall makes sure node and npm are there (skipping outside CI when
// they are not), installs the pinned dependencies with `npm ci` once per
// lock file into the user cache directory, and returns the path of
// gateway.mjs beside them (ES modules resolve packages from the script's
// own directory).
func mustInstall(t *testing.T) string {
	t.Helper()
	requireNode(t)
	src, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pkg, lock, script := read("package.json"), read("package-lock.json"), read("gateway.mjs")
	sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
	key := hex.EncodeToString(sum[:8])

	root, err := os.UserCacheDir()
	if err != nil {
		root = t.TempDir()
	}
	parent := filepath.Join(root, "tani", "nodeclient")
	dir := filepath.Join(parent, key)
	if _, err := os.Stat(filepath.Join(dir, "installed")); errors.Is(err, os.ErrNotExist) {
		installInto(t, parent, dir, pkg, lock)
	} else if err != nil {
		t.Fatal(err)
	}

	ssum := sha256.Sum256(script)
	path := filepath.Join(dir, "gateway-"+hex.EncodeToString(ssum[:8])+".mjs")
	if _, err := os.Stat(path); err != nil {
		writeAtomically(t, path, script)
	}
	return path
}

// installInto runs `npm ci` in a fresh directory and renames it to dir, so
// a concurrent or interrupted run never sees a half-installed one.
func installInto(t *testing.T, parent, dir string, pkg, lock []byte) {
	t.Helper()
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(parent, "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// No install scripts and no optional packages: the client needs neither
	// (pkcs11js, for HSMs, would want a C++ tool chain).
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--omit=optional", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "installed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "installed")); serr != nil {
			t.Fatalf("install node modules into %s: %v", dir, err)
		}
		// Another run installed the same lock file first; use that one.
	}
}

func writeAtomically(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".script-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// requireNode skips the test when node or npm is missing or too old, unless
// CI is set: there a missing client is a broken machine, not a reason to
// pass.
func requireNode(t *testing.T) {
	t.Helper()
	missing := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...) + " (scripts/setup.sh installs Node.js and npm)"
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatalf("CI=%s: %s", ci, msg)
		}
		t.Skip(msg)
	}
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing("%s is not installed", bin)
		}
	}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		missing("node --version: %v", err)
	}
	v := strings.TrimSpace(string(out))
	if !atLeast(v, minNode) {
		missing("node %s is older than %d.%d.%d", v, minNode[0], minNode[1], minNode[2])
	}
}

// atLeast reports whether a "vMAJOR.MINOR.PATCH" version is at least min.
func atLeast(v string, min [3]int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(strings.SplitN(p, "-", 2)[0])
		if err != nil {
			return false
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}
