package localnet

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tani-platform/tani/ledger/consortium"
)

// sampleConfig finds Fabric's own core.yaml or orderer.yaml for the
// binaries in bin: config/ beside bin/ in the release archive, or beside
// bin/ itself (a source build). They carry every default the nodes need;
// writeNodeConfig changes only what a local network must.
func sampleConfig(bin, name string) (string, error) {
	for _, p := range []string{
		filepath.Join(bin, "..", "config", name),
		filepath.Join(bin, "..", name),
		filepath.Join(bin, "config", name),
	} {
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p), nil
		}
	}
	return "", fmt.Errorf("no %s beside the Fabric binaries in %s (the release archive has it in config/)", name, bin)
}

// writeNodeConfig reads a sample configuration, sets the given keys
// (dotted paths, matched case-insensitively as Fabric's viper does) and
// writes the result to dst.
func writeNodeConfig(sample, dst string, set map[string]any) error {
	b, err := os.ReadFile(sample)
	if err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("localnet: parse %s: %w", sample, err)
	}
	for path, v := range set {
		setKey(doc, strings.Split(path, "."), v)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("localnet: encode %s: %w", dst, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	return nil
}

func setKey(m map[string]any, path []string, v any) {
	key := path[0]
	for k := range m {
		if strings.EqualFold(k, key) {
			key = k
			break
		}
	}
	if len(path) == 1 {
		m[key] = v
		return
	}
	next, ok := m[key].(map[string]any)
	if !ok {
		next = map[string]any{}
		m[key] = next
	}
	setKey(next, path[1:], v)
}

// listenAddr is where a node listening for endpoint binds: the endpoint's
// own address when it is an IP, every interface when it is a DNS name.
func listenAddr(endpoint string) string {
	h, p, err := net.SplitHostPort(endpoint)
	if err != nil {
		return endpoint
	}
	if net.ParseIP(h) == nil {
		h = "0.0.0.0"
	}
	return net.JoinHostPort(h, p)
}

func splitListen(endpoint string) (string, int) {
	h, p, _ := net.SplitHostPort(listenAddr(endpoint))
	port, _ := strconv.Atoi(p)
	return h, port
}

// peerConfig is the peer's core.yaml: TLS everywhere, the gateway on,
// gossip announced on its endpoint with a 5 s reconnect interval (the
// default 25 s leaves organizations apart for half a minute after the
// channel is joined), no Docker (vm.endpoint empty) and the CCaaS
// external builder.
func (n *Network) peerConfig(o consortium.Org) (string, error) {
	sample, err := sampleConfig(n.cfg.Bin, "core.yaml")
	if err != nil {
		return "", fmt.Errorf("localnet: %w", err)
	}
	dir := n.procDir(peerProc(o.MSPID))
	node := n.C.NodeDir(o.MSPID, "peer0")
	data := filepath.Join(dir, "data")
	err = writeNodeConfig(sample, filepath.Join(dir, "core.yaml"), map[string]any{
		"peer.id":                       o.PeerName(),
		"peer.networkId":                "tani-" + n.C.Channel,
		"peer.listenAddress":            listenAddr(o.PeerEndpoint),
		"peer.address":                  o.PeerEndpoint,
		"peer.chaincodeListenAddress":   listenAddr(o.PeerChaincodeEndpoint),
		"peer.chaincodeAddress":         o.PeerChaincodeEndpoint,
		"peer.gossip.bootstrap":         o.PeerEndpoint,
		"peer.gossip.endpoint":          o.PeerEndpoint,
		"peer.gossip.externalEndpoint":  o.PeerEndpoint,
		"peer.gossip.useLeaderElection": true,
		"peer.gossip.orgLeader":         false,
		"peer.gossip.reconnectInterval": "5s",
		"peer.tls.enabled":              true,
		"peer.tls.clientAuthRequired":   false,
		"peer.tls.cert.file":            filepath.Join(node, "tls", "server.crt"),
		"peer.tls.key.file":             filepath.Join(node, "tls", "server.key"),
		"peer.tls.rootcert.file":        n.C.TLSCAPath(o.MSPID),
		"peer.fileSystemPath":           data,
		"peer.mspConfigPath":            filepath.Join(node, "msp"),
		"peer.localMspId":               o.MSPID,
		"peer.gateway.enabled":          true,
		"vm.endpoint":                   "",
		"chaincode.externalBuilders":    []map[string]any{{"name": "ccaas", "path": n.builderDir()}},
		"ledger.snapshots.rootDir":      filepath.Join(data, "snapshots"),
		"ledger.state.stateDatabase":    "goleveldb",
		"operations.listenAddress":      listenAddr(o.OperationsEndpoint),
		"operations.tls.enabled":        false,
		"metrics.provider":              "prometheus",
	})
	return dir, err
}

// ordererConfig is an orderer's orderer.yaml: channel participation (no
// system channel), TLS on the client and admin endpoints (the admin one
// requires an orderer-organization client certificate), Raft over the
// client listener.
func (n *Network) ordererConfig(node consortium.OrdererNode) (string, error) {
	sample, err := sampleConfig(n.cfg.Bin, "orderer.yaml")
	if err != nil {
		return "", fmt.Errorf("localnet: %w", err)
	}
	id := n.C.Orderer.MSPID
	dir := n.procDir(node.Name)
	nd := n.C.NodeDir(id, node.Name)
	cert, key := filepath.Join(nd, "tls", "server.crt"), filepath.Join(nd, "tls", "server.key")
	tlsca := n.C.TLSCAPath(id)
	host, port := splitListen(node.Endpoint)
	err = writeNodeConfig(sample, filepath.Join(dir, "orderer.yaml"), map[string]any{
		"General.ListenAddress":             host,
		"General.ListenPort":                port,
		"General.TLS.Enabled":               true,
		"General.TLS.PrivateKey":            key,
		"General.TLS.Certificate":           cert,
		"General.TLS.RootCAs":               []string{tlsca},
		"General.TLS.ClientAuthRequired":    false,
		"General.Cluster.ClientCertificate": cert,
		"General.Cluster.ClientPrivateKey":  key,
		"General.Cluster.RootCAs":           []string{tlsca},
		"General.BootstrapMethod":           "none",
		"General.LocalMSPDir":               filepath.Join(nd, "msp"),
		"General.LocalMSPID":                id,
		"FileLedger.Location":               filepath.Join(dir, "data"),
		"Consensus.WALDir":                  filepath.Join(dir, "data", "etcdraft", "wal"),
		"Consensus.SnapDir":                 filepath.Join(dir, "data", "etcdraft", "snapshot"),
		"Admin.ListenAddress":               listenAddr(node.AdminEndpoint),
		"Admin.TLS.Enabled":                 true,
		"Admin.TLS.PrivateKey":              key,
		"Admin.TLS.Certificate":             cert,
		"Admin.TLS.RootCAs":                 []string{tlsca},
		"Admin.TLS.ClientAuthRequired":      true,
		"Admin.TLS.ClientRootCAs":           []string{tlsca},
		"Operations.ListenAddress":          listenAddr(node.OperationsEndpoint),
		"Operations.TLS.Enabled":            false,
		"Metrics.Provider":                  "prometheus",
		"ChannelParticipation.Enabled":      true,
	})
	return dir, err
}
