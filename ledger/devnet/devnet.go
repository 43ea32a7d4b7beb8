package devnet

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"github.com/tani-platform/tani/ledger/fabric"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tani-platform/tani/ledger/devnet/internal/blockstore"
	"github.com/tani-platform/tani/ledger/devnet/internal/node"
	"github.com/tani-platform/tani/ledger/devnet/internal/policy"
	"github.com/tani-platform/tani/ledger/fabric/msp"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultListen              = "127.0.0.1:7051"
	DefaultChannel             = fabric.DefaultChannel
	DefaultBatchTimeout        = 100 * time.Millisecond
	DefaultBatchMaxCount       = 500
	DefaultBatchPreferredBytes = 2 << 20
)

// DefaultOrgs are the organizations of a devnet unless Config.Orgs says otherwise.
var DefaultOrgs = []string{"TaniMSP", "BankMSP", "DistributorMSP"}

// Config configures a devnet.
type Config struct {
	// Dir holds crypto material and blocks; it is created if missing.
	Dir string
	// Listen is the gRPC address; "127.0.0.1:0" picks a free port.
	Listen string
	// Insecure serves plaintext gRPC instead of TLS.
	Insecure bool
	// Channel is the single channel's name.
	Channel string
	// Orgs are the application MSP IDs; the first hosts the gateway peer.
	Orgs []string
	// BatchTimeout, BatchMaxCount and BatchPreferredBytes control block cutting.
	BatchTimeout        time.Duration
	BatchMaxCount       int
	BatchPreferredBytes int
	// Logger receives the devnet's logs; nil discards them.
	Logger *slog.Logger
}

// RegisterFlags registers the devnet flags on fs, each name prefixed with
// prefix (for example "devnet.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&c.Dir, prefix+"dir", "devnet-data", "directory for crypto material and blocks")
	fs.StringVar(&c.Listen, prefix+"listen", DefaultListen, "gRPC listen address")
	fs.BoolVar(&c.Insecure, prefix+"insecure", false, "serve plaintext gRPC instead of TLS")
	fs.StringVar(&c.Channel, prefix+"channel", DefaultChannel, "channel name")
	fs.DurationVar(&c.BatchTimeout, prefix+"batch-timeout", DefaultBatchTimeout, "time to wait before cutting a non-full block")
	fs.IntVar(&c.BatchMaxCount, prefix+"batch-max-count", DefaultBatchMaxCount, "maximum transactions per block")
	fs.IntVar(&c.BatchPreferredBytes, prefix+"batch-preferred-bytes", DefaultBatchPreferredBytes, "preferred maximum block size in bytes")
}

// Chaincode is a contract to host on every peer: its name, its endorsement
// policy in Fabric's signature-policy syntax, and the chaincode (for example
// a *contractapi.ContractChaincode).
type Chaincode struct {
	Name   string
	Policy string
	CC     shim.Chaincode
}

// Network is a devnet.
type Network struct {
	cfg        Config
	chaincodes []node.Chaincode
	log        *slog.Logger

	mu      sync.Mutex
	orgs    map[string]*msp.Org
	orderer *msp.Org
	store   *blockstore.Store
	node    *node.Node
	srv     *grpc.Server
	lis     net.Listener
	served  chan struct{}
}

// New validates cfg and the chaincodes. It does no I/O.
func New(cfg Config, chaincodes ...Chaincode) (*Network, error) {
	if cfg.Dir == "" {
		return nil, errors.New("devnet: Dir is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if len(cfg.Orgs) == 0 {
		cfg.Orgs = DefaultOrgs
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = DefaultBatchTimeout
	}
	if cfg.BatchMaxCount <= 0 {
		cfg.BatchMaxCount = DefaultBatchMaxCount
	}
	if cfg.BatchPreferredBytes <= 0 {
		cfg.BatchPreferredBytes = DefaultBatchPreferredBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seen := map[string]bool{msp.OrdererMSPID: true}
	for _, o := range cfg.Orgs {
		if o == "" || seen[o] {
			return nil, fmt.Errorf("devnet: organization %q is empty or repeated", o)
		}
		seen[o] = true
	}
	n := &Network{cfg: cfg, log: log.With("module", "devnet")}
	names := map[string]bool{}
	for _, c := range chaincodes {
		if c.Name == "" || c.CC == nil || names[c.Name] {
			return nil, fmt.Errorf("devnet: chaincode %q needs a unique name and an implementation", c.Name)
		}
		names[c.Name] = true
		p, err := policy.Parse(c.Policy)
		if err != nil {
			return nil, fmt.Errorf("devnet: chaincode %s: %w", c.Name, err)
		}
		for _, m := range p.MSPIDs() {
			if !seen[m] || m == msp.OrdererMSPID {
				return nil, fmt.Errorf("devnet: chaincode %s policy names unknown organization %s", c.Name, m)
			}
		}
		n.chaincodes = append(n.chaincodes, node.Chaincode{Name: c.Name, Policy: p, CC: c.CC})
	}
	return n, nil
}

// Start loads or creates crypto material, opens the block store (replaying
// it into state), starts the chaincodes and serves gRPC.
func (n *Network) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.node != nil {
		return errors.New("devnet already started")
	}
	host, _, err := net.SplitHostPort(n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("parse listen address: %w", err)
	}
	cryptoDir := filepath.Join(n.cfg.Dir, "crypto")
	n.orgs = map[string]*msp.Org{}
	var orgs []*msp.Org
	for _, id := range n.cfg.Orgs {
		o, err := msp.LoadOrCreateOrg(cryptoDir, id, msp.RolePeer, []string{host})
		if err != nil {
			return err
		}
		n.orgs[id] = o
		orgs = append(orgs, o)
	}
	if n.orderer, err = msp.LoadOrCreateOrg(cryptoDir, msp.OrdererMSPID, msp.RoleOrderer, []string{host}); err != nil {
		return err
	}
	store, err := blockstore.Open(filepath.Join(n.cfg.Dir, "blocks", n.cfg.Channel+".blocks"), n.log)
	if err != nil {
		return err
	}
	nd, err := node.New(ctx, node.Config{
		Channel: n.cfg.Channel, Orgs: orgs, Orderer: n.orderer, Chaincodes: n.chaincodes,
		BatchTimeout: n.cfg.BatchTimeout, BatchMaxCount: n.cfg.BatchMaxCount, BatchPreferredBytes: n.cfg.BatchPreferredBytes,
	}, store, n.log)
	if err != nil {
		store.Close()
		return err
	}
	var opts []grpc.ServerOption
	if !n.cfg.Insecure {
		certPath, keyPath := orgs[0].ServerTLSPaths()
		cert, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			nd.Close(ctx)
			store.Close()
			return fmt.Errorf("load server TLS key pair: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	}
	lis, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		nd.Close(ctx)
		store.Close()
		return fmt.Errorf("listen on %s: %w", n.cfg.Listen, err)
	}
	srv := grpc.NewServer(opts...)
	nd.Register(srv)
	n.node, n.store, n.srv, n.lis, n.served = nd, store, srv, lis, make(chan struct{})
	go func() {
		defer close(n.served)
		if err := srv.Serve(lis); err != nil {
			n.log.Error("grpc server stopped", "error", err)
		}
	}()
	n.log.InfoContext(ctx, "devnet started", "addr", lis.Addr().String(), "channel", n.cfg.Channel, "height", nd.Height())
	return nil
}

// Addr is the address the devnet listens on.
func (n *Network) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lis == nil {
		return ""
	}
	return n.lis.Addr().String()
}

// Stop stops accepting requests, commits pending transactions, stops the
// chaincodes and closes the block store.
func (n *Network) Stop(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.node == nil {
		return nil
	}
	// Streams (events, deliver) never end on their own, so do not wait
	// for them longer than the caller allows.
	stopped := make(chan struct{})
	go func() { n.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		n.srv.Stop()
	case <-time.After(2 * time.Second):
		n.srv.Stop()
	}
	<-n.served
	errs := []error{n.node.Close(ctx), n.store.Close()}
	n.node, n.store, n.srv, n.lis = nil, nil, nil, nil
	return errors.Join(errs...)
}

// Identity is a client-usable identity: its MSP ID, certificate and key paths
// and the loaded material.
type Identity struct {
	MSPID    string
	Role     string
	MSPDir   string
	CertPath string
	KeyPath  string
	signing  *msp.SigningIdentity
}

// Certificate returns the identity's PEM-decoded certificate.
func (id *Identity) Certificate() *x509.Certificate { return id.signing.Cert }

// PrivateKey returns the identity's ECDSA private key.
func (id *Identity) PrivateKey() *ecdsa.PrivateKey { return id.signing.Key }

// Identity returns org's identity for role "client", "admin" or "peer".
// It is valid only after Start.
func (n *Network) Identity(org, role string) (*Identity, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	o, ok := n.orgs[org]
	if !ok {
		return nil, fmt.Errorf("unknown organization %q", org)
	}
	s, err := o.Signing(role)
	if err != nil {
		return nil, err
	}
	return &Identity{MSPID: org, Role: role, MSPDir: o.MSPDir(role), CertPath: o.CertPath(role), KeyPath: o.KeyPath(role), signing: s}, nil
}

// ConnectionInfo is what a client needs to reach the devnet.
type ConnectionInfo struct {
	Endpoint string
	// ServerName is the TLS server name to verify (empty when Insecure).
	ServerName string
	Channel    string
	Insecure   bool
	// TLSCACertPath is the CA that issued the gateway's TLS certificate.
	TLSCACertPath string
	// Orgs maps MSP ID to the client identity's MSP directory, certificate and key.
	Orgs map[string]Identity
}

// ConnectionInfo describes how to connect. It is valid only after Start.
func (n *Network) ConnectionInfo() ConnectionInfo {
	n.mu.Lock()
	first := n.orgs[n.cfg.Orgs[0]]
	n.mu.Unlock()
	ci := ConnectionInfo{Endpoint: n.Addr(), Channel: n.cfg.Channel, Insecure: n.cfg.Insecure, Orgs: map[string]Identity{}}
	if !n.cfg.Insecure && first != nil {
		ci.ServerName = "localhost"
		ci.TLSCACertPath = first.TLSCAPath()
	}
	for _, o := range n.cfg.Orgs {
		if id, err := n.Identity(o, msp.RoleClient); err == nil {
			ci.Orgs[o] = *id
		}
	}
	return ci
}

// Orgs returns the application organizations in configuration order.
func (n *Network) Orgs() []string { return append([]string(nil), n.cfg.Orgs...) }

// Channel is the devnet's channel name.
func (n *Network) Channel() string { return n.cfg.Channel }

// IssueCertificate has org's CA sign a certificate for pub. Tests use it to
// create identities with chosen validity windows.
func (n *Network) IssueCertificate(org, cn, role string, pub *ecdsa.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	n.mu.Lock()
	o, ok := n.orgs[org]
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown organization %q", org)
	}
	return o.IssueCertificate(cn, role, pub, notBefore, notAfter)
}

// Height returns the number of committed blocks, or 0 when stopped.
func (n *Network) Height() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.node == nil {
		return 0
	}
	return n.node.Height()
}

// RunCommand is `tani devnet`: it starts a devnet from command-line flags,
// prints how to connect, and runs until ctx is cancelled.
func RunCommand(ctx context.Context, args []string, stdout, stderr io.Writer, chaincodes ...Chaincode) error {
	fs := flag.NewFlagSet("devnet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	cfg.RegisterFlags(fs, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return Serve(ctx, cfg, stdout, stderr, chaincodes...)
}

// Serve runs a devnet with an already-parsed configuration until ctx is
// cancelled, after printing how to connect. With no chaincodes it hosts
// DefaultChaincodes.
func Serve(ctx context.Context, cfg Config, stdout, stderr io.Writer, chaincodes ...Chaincode) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if len(chaincodes) == 0 {
		chaincodes = DefaultChaincodes(cfg.Orgs)
	}
	n, err := New(cfg, chaincodes...)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		return err
	}
	ci := n.ConnectionInfo()
	fmt.Fprintf(stdout, "devnet listening on %s (channel %q)\n", ci.Endpoint, ci.Channel)
	if ci.Insecure {
		fmt.Fprintln(stdout, "  transport:  plaintext (-insecure)")
	} else {
		fmt.Fprintf(stdout, "  TLS CA:     %s (server name %s)\n", ci.TLSCACertPath, ci.ServerName)
	}
	for _, o := range n.Orgs() {
		id := ci.Orgs[o]
		fmt.Fprintf(stdout, "  %s client:\n    MSP dir:  %s\n    cert:     %s\n    key:      %s\n", o, id.MSPDir, id.CertPath, id.KeyPath)
	}
	for _, c := range chaincodes {
		fmt.Fprintf(stdout, "  chaincode %s, endorsement policy %s\n", c.Name, c.Policy)
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.Stop(stopCtx)
}

// ClientConfig is the Fabric client configuration for this started devnet,
// acting as id (one of the devnet's identities). Only the values differ from
// a real network's configuration, never the code path: the devnet depends on
// the client's configuration, never the reverse.
func (ci ConnectionInfo) ClientConfig(id *Identity, chaincodeName string) fabric.Config {
	return fabric.Config{
		Endpoint: ci.Endpoint, ServerName: ci.ServerName, TLSCACert: ci.TLSCACertPath, Insecure: ci.Insecure,
		MSPID: id.MSPID, Cert: id.CertPath, Key: id.KeyPath,
		Channel: ci.Channel, Chaincode: chaincodeName, Retries: fabric.DefaultRetries,
	}
}
