package localnet

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tani-platform/tani/ledger/consortium"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// ChaincodeVersion is the version of the chaincodes' definitions.
const ChaincodeVersion = "1.0"

// chaincodeDef is one of the chaincodes every organization runs as a
// service (tani-chaincode -chaincode <program>) and the channel defines.
type chaincodeDef struct {
	// name is the chaincode's name on the channel; program is what
	// tani-chaincode serves.
	name, program string
	policy        string
	sequence      int64
	// endpoint is where an organization's server for it listens.
	endpoint func(consortium.Org) string
	// proc names an organization's server process.
	proc func(mspID string) string
}

// chaincodes are the anchor and the vouchers chaincodes as the consortium
// defines them.
func (n *Network) chaincodes() []chaincodeDef {
	return []chaincodeDef{
		{name: n.C.Chaincode, program: "anchor", policy: n.C.EndorsementPolicy, sequence: n.C.ChaincodeSequence,
			endpoint: func(o consortium.Org) string { return o.ChaincodeEndpoint }, proc: chaincodeProc},
		{name: n.C.Vouchers.Chaincode, program: "vouchers", policy: n.C.Vouchers.EndorsementPolicy, sequence: n.C.Vouchers.ChaincodeSequence,
			endpoint: func(o consortium.Org) string { return o.VouchersChaincodeEndpoint }, proc: vouchersProc},
	}
}

// pkg is an organization's chaincode-as-a-service package: its file and
// its package ID (label and the file's SHA-256, as the peer computes it).
type pkg struct {
	path, id string
}

// writePackage writes o's CCaaS package of cc: metadata.json (type ccaas)
// and code.tar.gz holding connection.json, which points o's peer at o's
// own server of cc over TLS (verified against o's TLS CA). Each
// organization has its own package, hence its own package ID: an address
// that relies on a container network's DNS cannot be shared. The bytes
// are deterministic, so the package ID stays the same across runs.
func (n *Network) writePackage(o consortium.Org, cc chaincodeDef) (pkg, error) {
	root, err := os.ReadFile(n.C.TLSCAPath(o.MSPID))
	if err != nil {
		return pkg{}, fmt.Errorf("localnet: %w", err)
	}
	conn, err := json.Marshal(map[string]any{
		"address": cc.endpoint(o), "dial_timeout": "10s",
		"tls_required": true, "client_auth_required": false, "root_cert": string(root),
	})
	if err != nil {
		return pkg{}, err
	}
	label := cc.name + "_" + ChaincodeVersion
	meta, err := json.Marshal(map[string]string{"type": "ccaas", "label": label})
	if err != nil {
		return pkg{}, err
	}
	code, err := tarGz(map[string][]byte{"connection.json": conn})
	if err != nil {
		return pkg{}, err
	}
	whole, err := tarGz(map[string][]byte{"metadata.json": meta, "code.tar.gz": code})
	if err != nil {
		return pkg{}, err
	}
	path := filepath.Join(n.run, "chaincode", o.MSPID+".tar.gz")
	if cc.program != "anchor" {
		path = filepath.Join(n.run, "chaincode", cc.program+"-"+o.MSPID+".tar.gz")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return pkg{}, fmt.Errorf("localnet: %w", err)
	}
	if err := os.WriteFile(path, whole, 0o644); err != nil {
		return pkg{}, fmt.Errorf("localnet: %w", err)
	}
	sum := sha256.Sum256(whole)
	return pkg{path: path, id: label + ":" + hex.EncodeToString(sum[:])}, nil
}

// tarGz is a gzipped tar of files in name order, without times or owners.
func tarGz(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	// metadata.json first, as peer lifecycle package writes it.
	sortNames(names)
	for _, name := range names {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Format: tar.FormatPAX, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(files[name]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortNames(names []string) {
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && rank(names[j]) < rank(names[j-1]); j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}

func rank(name string) string {
	if name == "metadata.json" {
		return ""
	}
	return name
}

// waitLeader waits until an orderer of the channel leads its Raft cluster.
func (n *Network) waitLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		for _, node := range n.C.Orderer.Nodes {
			if v, err := metric(ctx, node.OperationsEndpoint, "consensus_etcdraft_is_leader", n.C.Channel); err == nil && v == 1 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localnet: no Raft leader for channel %s: %w", n.C.Channel, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// joinPeer joins o's peer to the channel with the genesis block unless it
// has joined (`peer channel join`).
func (n *Network) joinPeer(ctx context.Context, o consortium.Org) error {
	out, err := n.peerCLI(ctx, o, "channel", "list")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == n.C.Channel {
			return nil
		}
	}
	if _, err := n.peerCLI(ctx, o, "channel", "join", "-b", n.C.GenesisBlockPath()); err != nil {
		return err
	}
	n.log.DebugContext(ctx, "peer joined", "org", o.MSPID, "channel", n.C.Channel)
	return nil
}

// WaitSynced waits until every peer holds every block the ordering
// service has cut. A transaction committed on one peer (what the gateway
// reports) reaches the others a moment later; a test whose next
// transaction other organizations endorse waits for this first, or their
// chaincode may read the state before it.
func (n *Network) WaitSynced(ctx context.Context) error {
	return n.forEachOrg(ctx, n.C.Orgs, n.waitCaughtUp)
}

// waitCaughtUp waits until o's peer holds every block the ordering
// service has: a peer that joined late must have processed the
// configuration that admitted its organization before it acts in it.
func (n *Network) waitCaughtUp(ctx context.Context, o consortium.Org) error {
	st, err := n.C.OrdererChannel(ctx, n.C.Orderer.Nodes[0])
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("localnet: %s has not joined %s", n.C.Orderer.Nodes[0].Name, n.C.Channel)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		h, err := metric(ctx, o.OperationsEndpoint, "ledger_blockchain_height", n.C.Channel)
		if err == nil && uint64(h) >= st.Height {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localnet: %s's peer is at height %v of %d (%v): %w; see %s", o.MSPID, h, st.Height, err, ctx.Err(), n.LogFile(peerProc(o.MSPID)))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deployChaincode installs each organization's package of cc on its
// peer, has each organization approve the definition the consortium
// records (sequence, policy) with its own package ID, and commits it with
// every peer's endorsement. Each step is skipped when already done.
func (n *Network) deployChaincode(ctx context.Context, cc chaincodeDef, pkgs map[string]pkg) error {
	if err := n.forEachOrg(ctx, n.C.Orgs, func(ctx context.Context, o consortium.Org) error { return n.install(ctx, o, pkgs[o.MSPID]) }); err != nil {
		return err
	}
	committed, err := n.committedSequence(ctx, n.C.Orgs[0], cc.name)
	if err != nil {
		return err
	}
	target := cc.sequence
	if committed > target {
		return fmt.Errorf("localnet: the channel has the %s chaincode definition at sequence %d, the consortium records %d", cc.name, committed, target)
	}
	if err := n.forEachOrg(ctx, n.C.Orgs, func(ctx context.Context, o consortium.Org) error { return n.approve(ctx, o, cc, pkgs[o.MSPID], target) }); err != nil {
		return err
	}
	if committed == target {
		return nil
	}
	args := append([]string{"lifecycle", "chaincode", "commit"}, n.definitionArgs(cc, target)...)
	for _, o := range n.C.Orgs {
		args = append(args, "--peerAddresses", o.PeerEndpoint, "--tlsRootCertFiles", n.C.TLSCAPath(o.MSPID))
	}
	if _, err := n.peerCLI(ctx, n.C.Orgs[0], args...); err != nil {
		return err
	}
	n.log.InfoContext(ctx, "chaincode definition committed", "chaincode", cc.name, "sequence", target, "policy", cc.policy)
	return nil
}

func (n *Network) definitionArgs(cc chaincodeDef, sequence int64) []string {
	node := n.C.Orderer.Nodes[0]
	return []string{"-o", node.Endpoint, "--tls", "--cafile", n.C.TLSCAPath(n.C.Orderer.MSPID),
		"--channelID", n.C.Channel, "--name", cc.name, "--version", ChaincodeVersion,
		"--sequence", strconv.FormatInt(sequence, 10), "--signature-policy", cc.policy}
}

func (n *Network) install(ctx context.Context, o consortium.Org, p pkg) error {
	out, err := n.peerCLI(ctx, o, "lifecycle", "chaincode", "queryinstalled", "--output", "json")
	if err != nil {
		return err
	}
	var installed struct {
		InstalledChaincodes []struct {
			PackageID string `json:"package_id"`
		} `json:"installed_chaincodes"`
	}
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &installed); err != nil {
			return fmt.Errorf("localnet: decode queryinstalled of %s: %w", o.MSPID, err)
		}
	}
	for _, ic := range installed.InstalledChaincodes {
		if ic.PackageID == p.id {
			return nil
		}
	}
	if _, err := n.peerCLI(ctx, o, "lifecycle", "chaincode", "install", p.path); err != nil {
		return err
	}
	n.log.DebugContext(ctx, "chaincode installed", "org", o.MSPID, "package_id", p.id)
	return nil
}

// committedSequence is the sequence of the committed chaincode
// definition, 0 when there is none.
func (n *Network) committedSequence(ctx context.Context, o consortium.Org, name string) (int64, error) {
	out, err := n.peerCLI(ctx, o, "lifecycle", "chaincode", "querycommitted", "--channelID", n.C.Channel, "--name", name, "--output", "json")
	if err != nil {
		var ce *cliError
		if errors.As(err, &ce) && (strings.Contains(ce.stderr, "not defined") || strings.Contains(ce.stderr, "404")) {
			return 0, nil
		}
		return 0, err
	}
	var def struct {
		Sequence int64 `json:"sequence"`
	}
	if err := json.Unmarshal(out, &def); err != nil {
		return 0, fmt.Errorf("localnet: decode querycommitted: %w", err)
	}
	return def.Sequence, nil
}

// approve has o approve the definition at sequence with its package ID,
// unless it already has.
func (n *Network) approve(ctx context.Context, o consortium.Org, cc chaincodeDef, p pkg, sequence int64) error {
	out, err := n.peerCLI(ctx, o, "lifecycle", "chaincode", "queryapproved", "--channelID", n.C.Channel, "--name", cc.name,
		"--sequence", strconv.FormatInt(sequence, 10), "--output", "json")
	if err == nil {
		var def struct {
			Source struct {
				Type struct {
					LocalPackage struct {
						PackageID string `json:"package_id"`
					} `json:"LocalPackage"`
				} `json:"Type"`
			} `json:"source"`
		}
		if json.Unmarshal(out, &def) == nil && def.Source.Type.LocalPackage.PackageID == p.id {
			return nil
		}
	}
	args := append([]string{"lifecycle", "chaincode", "approveformyorg"}, n.definitionArgs(cc, sequence)...)
	args = append(args, "--package-id", p.id)
	if _, err := n.peerCLI(ctx, o, args...); err != nil {
		var ce *cliError
		if errors.As(err, &ce) && strings.Contains(ce.stderr, "unchanged content") {
			return nil
		}
		return err
	}
	n.log.DebugContext(ctx, "chaincode approved", "org", o.MSPID, "chaincode", cc.name, "sequence", sequence)
	return nil
}

// waitChaincode waits until o's gateway answers a query of the anchor
// chaincode and of the vouchers chaincode: o's peer reaches o's servers.
func (n *Network) waitChaincode(ctx context.Context, o consortium.Org) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cfg := n.ClientConfig(o.MSPID)
	fc, err := fabric.Dial(cfg, nil)
	if err != nil {
		return err
	}
	defer fc.Close()
	cfg.Chaincode = n.C.Vouchers.Chaincode
	vc, err := fabric.Dial(cfg, nil)
	if err != nil {
		return err
	}
	defer vc.Close()
	for _, probe := range []struct {
		name, proc string
		query      func() error
	}{
		{n.C.Chaincode, chaincodeProc(o.MSPID), func() error { _, err := fc.LatestAnchor(ctx, "localnet.probe/"+o.MSPID); return err }},
		{n.C.Vouchers.Chaincode, vouchersProc(o.MSPID), func() error { _, err := vc.Evaluate(ctx, "GetOrganization", o.MSPID); return err }},
	} {
		for {
			err := probe.query()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("localnet: the %s chaincode does not answer through %s's gateway: %w (last: %v); see %s", probe.name, o.MSPID, ctx.Err(), err, n.LogFile(probe.proc))
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// registerVoucherRoles registers on the chain the voucher roles the
// consortium records that the chain does not hold yet, as the first
// organization's admin whose material is here; the chaincode-level policy
// (a majority) endorses each registration.
func (n *Network) registerVoucherRoles(ctx context.Context) error {
	if len(n.C.Vouchers.Roles) == 0 {
		return nil
	}
	var admin string
	for _, o := range n.C.Orgs {
		if n.C.HasMaterial(o.MSPID) {
			admin = o.MSPID
			break
		}
	}
	if admin == "" {
		return errors.New("localnet: no organization's admin material to register voucher roles with")
	}
	gw := n.ClientConfig(admin)
	gw.Chaincode = n.C.Vouchers.Chaincode
	cert, key := n.C.AdminPaths(admin)
	vc, err := vouchers.Dial(gw, []vouchers.Identity{{MSPID: admin, Cert: cert, Key: key}}, n.log)
	if err != nil {
		return err
	}
	defer vc.Close()
	if err := vc.EnsureRegistered(ctx, admin, n.C.Vouchers.Roles); err != nil {
		return fmt.Errorf("localnet: register voucher roles: %w", err)
	}
	return nil
}

// waitGossip waits until o's peer knows every other organization's peer
// on the channel (its gossip_membership_total_peers_known metric): before
// that, the gateway cannot collect endorsements from other organizations.
func (n *Network) waitGossip(ctx context.Context, o consortium.Org) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	want := float64(len(n.C.Orgs) - 1)
	for {
		v, err := metric(ctx, o.OperationsEndpoint, "gossip_membership_total_peers_known", n.C.Channel)
		if err == nil && v >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localnet: %s's peer knows %v of the %v other peers on %s (%v): %w; see %s", o.MSPID, v, want, n.C.Channel, err, ctx.Err(), n.LogFile(peerProc(o.MSPID)))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// metric reads one Prometheus gauge for channel from an operations
// endpoint.
func metric(ctx context.Context, endpoint, name, channel string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+endpoint+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `channel="`+channel+`"`) {
			continue
		}
		f := strings.Fields(line)
		return strconv.ParseFloat(f[len(f)-1], 64)
	}
	return 0, fmt.Errorf("no %s for channel %s at %s", name, channel, endpoint)
}

// ClientConfig is how Tani reaches the anchor chaincode through mspID's
// peer, as mspID's admin (what tani-<MSPID>.env says).
func (n *Network) ClientConfig(mspID string) fabric.Config {
	o, _ := n.C.Org(mspID)
	cert, key := n.C.AdminPaths(mspID)
	return fabric.Config{
		Endpoint: o.PeerEndpoint, ServerName: o.PeerName(), TLSCACert: n.C.TLSCAPath(mspID),
		MSPID: mspID, Cert: cert, Key: key, Channel: n.C.Channel, Chaincode: n.C.Chaincode, Retries: fabric.DefaultRetries,
	}
}
