package localnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tani-platform/tani/ledger/consortium"
	"github.com/tani-platform/tani/ledger/fabricca"
)

// Config says where the programs are.
type Config struct {
	// Bin is the directory of Fabric's binaries: peer, orderer and
	// fabric-ca-server, with the chaincode-as-a-service builder in
	// ccaas/ (a source build) or ../builders/ccaas/bin (the release
	// archive), and core.yaml and orderer.yaml in ../config or beside.
	Bin string
	// ChaincodeBin is the tani-chaincode program (cmd/tani-chaincode).
	ChaincodeBin string
	// Logger reports progress; nil discards it.
	Logger *slog.Logger
}

// Network is a consortium's processes on this machine.
type Network struct {
	C   *consortium.Consortium
	cfg Config
	run string
	log *slog.Logger

	mu     sync.Mutex
	exited map[int]chan struct{} // processes this process started and reaps
}

// Open returns the network of consortium c. It starts nothing.
func Open(c *consortium.Consortium, cfg Config) *Network {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Network{C: c, cfg: cfg, run: filepath.Join(c.Dir, "run"), log: log, exited: map[int]chan struct{}{}}
}

// RunDir is where the network's processes keep configuration, data, logs
// and pid files.
func (n *Network) RunDir() string { return n.run }

func peerProc(mspID string) string      { return "peer-" + mspID }
func caProc(mspID string) string        { return "ca-" + mspID }
func chaincodeProc(mspID string) string { return "chaincode-" + mspID }
func vouchersProc(mspID string) string  { return "chaincode-vouchers-" + mspID }

// program is one of the Fabric binaries.
func (n *Network) program(name string) string { return filepath.Join(n.cfg.Bin, name) }

// checkPrograms makes sure every program Up runs is there.
func (n *Network) checkPrograms() error {
	if n.cfg.Bin == "" {
		return errors.New("localnet: no Fabric binary directory given (FABRIC_BIN)")
	}
	var missing []string
	for _, p := range []string{"peer", "orderer", "fabric-ca-server"} {
		if !executable(n.program(p)) {
			missing = append(missing, n.program(p))
		}
	}
	if _, err := n.builderPrograms(); err != nil {
		missing = append(missing, err.Error())
	}
	if !executable(n.cfg.ChaincodeBin) {
		missing = append(missing, fmt.Sprintf("the tani-chaincode program (%q)", n.cfg.ChaincodeBin))
	}
	for _, f := range []string{"core.yaml", "orderer.yaml"} {
		if _, err := sampleConfig(n.cfg.Bin, f); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("localnet: missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// builderPrograms finds the CCaaS builder's detect, build and release.
func (n *Network) builderPrograms() (map[string]string, error) {
	for _, dir := range []string{filepath.Join(n.cfg.Bin, "ccaas"), filepath.Join(n.cfg.Bin, "..", "builders", "ccaas", "bin")} {
		out := map[string]string{}
		for _, p := range []string{"detect", "build", "release"} {
			if executable(filepath.Join(dir, p)) {
				abs, err := filepath.Abs(filepath.Join(dir, p))
				if err != nil {
					return nil, err
				}
				out[p] = abs
			}
		}
		if len(out) == 3 {
			return out, nil
		}
	}
	return nil, fmt.Errorf("the CCaaS builder (detect, build, release) in %s/ccaas or %s/../builders/ccaas/bin", n.cfg.Bin, n.cfg.Bin)
}

// builderDir is the external builder directory peers use: bin/ holds
// links to the CCaaS builder's programs.
func (n *Network) builderDir() string { return filepath.Join(n.run, "builders", "ccaas") }

func (n *Network) writeBuilder() error {
	progs, err := n.builderPrograms()
	if err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	bin := filepath.Join(n.builderDir(), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	for name, target := range progs {
		link := filepath.Join(bin, name)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("localnet: %w", err)
		}
	}
	return nil
}

// Up starts whatever of the network is not running, creates and joins the
// channel, deploys the anchor and vouchers chaincode definitions the
// consortium records, registers the organizations' voucher roles, and
// returns once every organization's peer answers through its gateway and
// knows every other organization's peer. It is idempotent.
func (n *Network) Up(ctx context.Context) error {
	began := time.Now()
	if err := n.checkPrograms(); err != nil {
		return err
	}
	if err := n.writeBuilder(); err != nil {
		return err
	}
	ccs := n.chaincodes()
	pkgs := make([]map[string]pkg, len(ccs)) // per chaincode, by organization
	for i, cc := range ccs {
		pkgs[i] = map[string]pkg{}
		for _, o := range n.C.Orgs {
			p, err := n.writePackage(o, cc)
			if err != nil {
				return err
			}
			pkgs[i][o.MSPID] = p
		}
	}
	var procs []proc
	for _, o := range n.C.Orgs {
		ca, err := n.caProc(o)
		if err != nil {
			return err
		}
		procs = append(procs, ca)
	}
	for _, node := range n.C.Orderer.Nodes {
		p, err := n.ordererProc(node)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	for _, o := range n.C.Orgs {
		for i, cc := range ccs {
			procs = append(procs, n.chaincodeProc(o, cc, pkgs[i][o.MSPID]))
		}
		p, err := n.peerProc(o)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	if err := n.startAll(ctx, procs); err != nil {
		return err
	}
	n.log.InfoContext(ctx, "processes ready", "count", len(procs), "elapsed", time.Since(began).Round(time.Millisecond))

	for _, node := range n.C.Orderer.Nodes {
		st, err := n.C.JoinOrderer(ctx, node)
		if err != nil {
			return err
		}
		n.log.DebugContext(ctx, "orderer in channel", "orderer", node.Name, "status", st.Status, "relation", st.ConsensusRelation)
	}
	if err := n.waitLeader(ctx); err != nil {
		return err
	}
	if err := n.forEachOrg(ctx, n.C.Orgs, n.joinPeer); err != nil {
		return err
	}
	if err := n.forEachOrg(ctx, n.C.Orgs, n.waitCaughtUp); err != nil {
		return err
	}
	for i, cc := range ccs {
		if err := n.deployChaincode(ctx, cc, pkgs[i]); err != nil {
			return err
		}
	}
	if err := n.forEachOrg(ctx, n.C.Orgs, n.waitChaincode); err != nil {
		return err
	}
	if err := n.forEachOrg(ctx, n.C.Orgs, n.waitGossip); err != nil {
		return err
	}
	if err := n.registerVoucherRoles(ctx); err != nil {
		return err
	}
	if err := n.writePeerEnv(); err != nil {
		return err
	}
	// Settings written by an older version lack what this one reads.
	if err := n.C.WriteProfiles(); err != nil {
		return err
	}
	n.log.InfoContext(ctx, "network up", "channel", n.C.Channel, "orgs", n.C.MSPIDs(), "elapsed", time.Since(began).Round(time.Millisecond))
	return nil
}

// startAll starts the processes not running and waits until all serve.
func (n *Network) startAll(ctx context.Context, procs []proc) error {
	for _, p := range procs {
		started, err := n.start(p)
		if err != nil {
			return err
		}
		if started {
			n.log.DebugContext(ctx, "started", "process", p.name)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = n.waitReady(ctx, p) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (n *Network) forEachOrg(ctx context.Context, orgs []consortium.Org, fn func(context.Context, consortium.Org) error) error {
	errs := make([]error, len(orgs))
	var wg sync.WaitGroup
	for i, o := range orgs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(ctx, o) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func httpOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func tcpOpen(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func (n *Network) ordererProc(node consortium.OrdererNode) (proc, error) {
	dir, err := n.ordererConfig(node)
	if err != nil {
		return proc{}, err
	}
	return proc{
		name: node.Name, program: n.program("orderer"), env: []string{"FABRIC_CFG_PATH=" + dir},
		// Like the peer, the orderer answers /healthz before it listens
		// for osnadmin and for peers and clients.
		ready: func(ctx context.Context) error {
			if err := httpOK(ctx, "http://"+node.OperationsEndpoint+"/healthz"); err != nil {
				return err
			}
			if err := tcpOpen(ctx, node.AdminEndpoint); err != nil {
				return err
			}
			return tcpOpen(ctx, node.Endpoint)
		},
	}, nil
}

func (n *Network) peerProc(o consortium.Org) (proc, error) {
	dir, err := n.peerConfig(o)
	if err != nil {
		return proc{}, err
	}
	return proc{
		name: peerProc(o.MSPID), program: n.program("peer"), args: []string{"node", "start"}, env: []string{"FABRIC_CFG_PATH=" + dir},
		// The peer serves /healthz from early in its start-up, before it
		// opens its ledgers and only then listens for gRPC: healthy is
		// not yet ready, so both are asked.
		ready: func(ctx context.Context) error {
			if err := httpOK(ctx, "http://"+o.OperationsEndpoint+"/healthz"); err != nil {
				return err
			}
			return tcpOpen(ctx, o.PeerEndpoint)
		},
	}, nil
}

func (n *Network) chaincodeProc(o consortium.Org, cc chaincodeDef, p pkg) proc {
	cert, key := n.C.ServiceTLSPaths(o.MSPID, "chaincode")
	ep := cc.endpoint(o)
	return proc{
		name: cc.proc(o.MSPID), program: n.cfg.ChaincodeBin, args: []string{"-chaincode", cc.program},
		env: []string{
			"CHAINCODE_SERVER_ADDRESS=" + listenAddr(ep), "CHAINCODE_ID=" + p.id,
			"CHAINCODE_TLS_CERT=" + cert, "CHAINCODE_TLS_KEY=" + key,
		},
		ready: func(ctx context.Context) error { return tcpOpen(ctx, ep) },
	}
}

// caProc is the organization's Fabric CA server. A CA the consortium
// created serves with the consortium's CA certificate and key (so what
// it enrolls is valid in the channel already) and a TLS certificate from
// the organization's TLS CA; a member that joined by proposal runs the CA
// it created at enrollment (its key never left its server's home).
func (n *Network) caProc(o consortium.Org) (proc, error) {
	dir := n.procDir(caProc(o.MSPID))
	secret, err := n.bootstrapSecret(o.MSPID)
	if err != nil {
		return proc{}, err
	}
	host, port := splitListen(o.CAEndpoint)
	args := []string{"start", "--home", dir, "-b", "admin:" + secret, "--address", host, "--port", fmt.Sprint(port),
		"--ca.name", o.CAName(), "--tls.enabled"}
	tlsCA := n.C.TLSCAPath(o.MSPID)
	if _, err := os.Stat(n.C.CAKeyPath(o.MSPID)); err == nil {
		cert, key := n.C.ServiceTLSPaths(o.MSPID, "ca")
		args = append(args, "--ca.certfile", n.C.CACertPath(o.MSPID), "--ca.keyfile", n.C.CAKeyPath(o.MSPID),
			"--tls.certfile", cert, "--tls.keyfile", key)
	} else {
		h, _, _ := net.SplitHostPort(o.CAEndpoint)
		args = append(args, "--csr.cn", "ca."+o.Domain, "--csr.hosts", strings.Join(uniq("ca."+o.Domain, "localhost", "127.0.0.1", h), ","))
		if _, err := os.Stat(tlsCA); err != nil {
			tlsCA = filepath.Join(dir, "ca-cert.pem") // before enrollment wrote the member's material
		}
	}
	return proc{
		name: caProc(o.MSPID), program: n.program("fabric-ca-server"), args: args,
		env: []string{"FABRIC_CA_SERVER_OPERATIONS_LISTENADDRESS=" + listenAddr(o.CAOperationsEndpoint)},
		ready: func(ctx context.Context) error {
			cl, err := fabricca.New("https://"+o.CAEndpoint, o.CAName(), tlsCA)
			if err != nil {
				return err
			}
			_, err = cl.Info(ctx)
			return err
		},
	}, nil
}

// uniq drops empty and repeated names, keeping the first occurrence.
func uniq(vs ...string) []string {
	var out []string
	for _, v := range vs {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// bootstrapSecret is the CA's registrar password, created once and kept
// beside the CA's data (0600).
func (n *Network) bootstrapSecret(mspID string) (string, error) {
	path := filepath.Join(n.procDir(caProc(mspID)), "bootstrap-secret")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("localnet: %w", err)
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("localnet: %w", err)
	}
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("localnet: %w", err)
	}
	return s, nil
}

// CAClient is a client of mspID's Fabric CA and its enrolled registrar.
func (n *Network) CAClient(ctx context.Context, o consortium.Org) (*fabricca.Client, *fabricca.Enrollment, error) {
	tlsCA := n.C.TLSCAPath(o.MSPID)
	if _, err := os.Stat(tlsCA); err != nil {
		tlsCA = filepath.Join(n.procDir(caProc(o.MSPID)), "ca-cert.pem")
	}
	cl, err := fabricca.New("https://"+o.CAEndpoint, o.CAName(), tlsCA)
	if err != nil {
		return nil, nil, err
	}
	secret, err := n.bootstrapSecret(o.MSPID)
	if err != nil {
		return nil, nil, err
	}
	reg, err := cl.Enroll(ctx, fabricca.EnrollRequest{Name: "admin", Secret: secret})
	if err != nil {
		return nil, nil, err
	}
	return cl, reg, nil
}

// peerEnv is the environment under which the peer CLI acts as o's admin
// against o's peer (the variables of peer-<MSPID>.env).
func (n *Network) peerEnv(o consortium.Org) []string {
	node := n.C.Orderer.Nodes[0]
	return []string{
		"FABRIC_CFG_PATH=" + n.procDir(peerProc(o.MSPID)),
		"CORE_PEER_LOCALMSPID=" + o.MSPID,
		"CORE_PEER_MSPCONFIGPATH=" + n.C.AdminMSPDir(o.MSPID),
		"CORE_PEER_ADDRESS=" + o.PeerEndpoint,
		"CORE_PEER_TLS_ENABLED=true",
		"CORE_PEER_TLS_ROOTCERT_FILE=" + n.C.TLSCAPath(o.MSPID),
		"ORDERER_ADDRESS=" + node.Endpoint,
		"ORDERER_CA=" + n.C.TLSCAPath(n.C.Orderer.MSPID),
	}
}

// writePeerEnv writes peer-<MSPID>.env: source it to run the peer CLI as
// the organization's admin.
func (n *Network) writePeerEnv() error {
	for _, o := range n.C.Orgs {
		var b strings.Builder
		fmt.Fprintf(&b, "# The peer CLI as %s's admin against its peer (source, then e.g. `peer channel list`).\n", o.MSPID)
		for _, kv := range n.peerEnv(o) {
			k, v, _ := strings.Cut(kv, "=")
			fmt.Fprintf(&b, "export %s=%s\n", k, v)
		}
		if err := os.WriteFile(filepath.Join(n.C.Dir, "peer-"+o.MSPID+".env"), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("localnet: %w", err)
		}
	}
	return nil
}

// peerCLI runs the peer CLI as o's admin.
func (n *Network) peerCLI(ctx context.Context, o consortium.Org, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.program("peer"), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "FABRIC_LOGGING_SPEC=warning"}, n.peerEnv(o)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return []byte(stdout.String()), &cliError{args: args, org: o.MSPID, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return []byte(stdout.String()), nil
}

// cliError is a failed peer CLI call with what it printed.
type cliError struct {
	args   []string
	org    string
	err    error
	stderr string
}

func (e *cliError) Error() string {
	return fmt.Sprintf("localnet: peer %s (as %s admin): %v: %s", strings.Join(e.args[:min(3, len(e.args))], " "), e.org, e.err, e.stderr)
}
