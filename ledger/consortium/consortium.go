package consortium

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hyperledger/fabric-config/configtx"
	"github.com/hyperledger/fabric-config/configtx/membership"
	ordconf "github.com/hyperledger/fabric-config/configtx/orderer"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/fabric"
	fabricmsp "github.com/tani-platform/tani/ledger/fabric/msp"
)

// File names inside a consortium directory.
const (
	ManifestFile = "consortium.json"
	artifactsDir = "channel-artifacts"
	configFile   = "config.pb"
	updatesDir   = "updates"
)

// Org is one member organization and where its nodes listen.
type Org struct {
	MSPID string `json:"msp_id"`
	// Domain names the organization's nodes (peer0.<domain>).
	Domain string `json:"domain"`
	// PeerEndpoint is the peer's host:port as every other node and client
	// reaches it: gateway, gossip, and the anchor peer in the channel
	// configuration.
	PeerEndpoint string `json:"peer_endpoint"`
	// PeerChaincodeEndpoint is the peer's chaincode listener.
	PeerChaincodeEndpoint string `json:"peer_chaincode_endpoint,omitempty"`
	// OperationsEndpoint serves the peer's /healthz and /metrics.
	OperationsEndpoint string `json:"operations_endpoint,omitempty"`
	// CAEndpoint is the organization's Fabric CA server (HTTPS, REST).
	CAEndpoint string `json:"ca_endpoint,omitempty"`
	// CAOperationsEndpoint serves the CA server's /healthz and /metrics.
	CAOperationsEndpoint string `json:"ca_operations_endpoint,omitempty"`
	// ChaincodeEndpoint is where the organization's anchor chaincode
	// server listens; only its own peer dials it (chaincode as a service).
	ChaincodeEndpoint string `json:"chaincode_endpoint,omitempty"`
	// VouchersChaincodeEndpoint is where its vouchers chaincode server
	// listens.
	VouchersChaincodeEndpoint string `json:"vouchers_chaincode_endpoint,omitempty"`
}

// OrdererNode is one node of the ordering service.
type OrdererNode struct {
	// Name is the node's directory under crypto/OrdererMSP/orderers.
	Name string `json:"name"`
	// Endpoint serves peers and clients (Broadcast, Deliver) and the other
	// Raft nodes.
	Endpoint string `json:"endpoint"`
	// AdminEndpoint is the channel participation API (osnadmin); it
	// requires a TLS client certificate from the orderer organization.
	AdminEndpoint string `json:"admin_endpoint,omitempty"`
	// OperationsEndpoint serves the orderer's /healthz and /metrics.
	OperationsEndpoint string `json:"operations_endpoint,omitempty"`
}

// OrdererOrg is the ordering service's organization and its Raft nodes.
type OrdererOrg struct {
	MSPID  string        `json:"msp_id"`
	Domain string        `json:"domain"`
	Nodes  []OrdererNode `json:"nodes"`
	// Endpoint is the single orderer of manifests written before Nodes.
	Endpoint string `json:"peer_endpoint,omitempty"`
}

// Consortium is a consortium directory's manifest.
type Consortium struct {
	Dir               string `json:"-"`
	Channel           string `json:"channel"`
	Chaincode         string `json:"chaincode"`
	EndorsementPolicy string `json:"endorsement_policy"`
	// ChaincodeSequence is the anchor chaincode definition's sequence the
	// endorsement policy belongs to (1 at creation, one more per policy
	// change after a membership change).
	ChaincodeSequence int64 `json:"chaincode_sequence,omitempty"`
	// BatchTimeout is the ordering service's batch timeout.
	BatchTimeout string `json:"batch_timeout,omitempty"`
	// Host and BasePort are where new members' nodes are placed when their
	// endpoints are not given (zero BasePort: they must be given).
	Host     string     `json:"host,omitempty"`
	BasePort int        `json:"base_port,omitempty"`
	Orgs     []Org      `json:"orgs"`
	Orderer  OrdererOrg `json:"orderer"`
	// Vouchers is the vouchers chaincode's definition.
	Vouchers VouchersDef `json:"vouchers"`
}

// VouchersDef is the vouchers chaincode's definition on the channel and
// the role each organization plays for it.
type VouchersDef struct {
	Chaincode string `json:"chaincode"`
	// EndorsementPolicy is the chaincode-level policy: what creating a
	// voucher or a registry entry needs (key-level policies govern the
	// rest; see ledger/chaincode/vouchers).
	EndorsementPolicy string `json:"endorsement_policy"`
	ChaincodeSequence int64  `json:"chaincode_sequence"`
	// Roles maps MSP IDs to operator, bank or distributor; `tani network
	// up` registers them on the chain.
	Roles map[string]string `json:"roles,omitempty"`
}

// DefaultVouchersChaincode is the vouchers chaincode's name unless the
// manifest says otherwise.
const DefaultVouchersChaincode = "vouchers"

// VouchersChaincode is the vouchers chaincode's name.
func (c *Consortium) VouchersChaincode() string { return c.Vouchers.Chaincode }

// DefaultVoucherRoles gives organizations their roles by name, as the
// devnet's default organizations are named: TaniMSP is the operator, an
// MSP ID containing "Bank" a bank, one containing "Distributor" a
// distributor. Others get none (set roles in the manifest, or -voucher-roles).
func DefaultVoucherRoles(mspIDs []string) map[string]string {
	roles := map[string]string{}
	for _, m := range mspIDs {
		switch {
		case m == "TaniMSP":
			roles[m] = "operator"
		case strings.Contains(m, "Bank"):
			roles[m] = "bank"
		case strings.Contains(m, "Distributor"):
			roles[m] = "distributor"
		}
	}
	return roles
}

// fillVouchers gives a manifest written before the vouchers chaincode its
// definition: the default name, a majority of the members, sequence 1,
// roles by name.
func (c *Consortium) fillVouchers() {
	v := &c.Vouchers
	if v.Chaincode == "" {
		v.Chaincode = DefaultVouchersChaincode
	}
	if v.EndorsementPolicy == "" {
		v.EndorsementPolicy = fabric.MajorityPolicy(c.MSPIDs())
	}
	if v.ChaincodeSequence == 0 {
		v.ChaincodeSequence = 1
	}
	if v.Roles == nil {
		v.Roles = DefaultVoucherRoles(c.MSPIDs())
	}
}

// Port layout. Each node owns a block of portBlock ports starting at its
// main endpoint's port; the other listeners sit at fixed offsets in it.
const (
	// DefaultBasePort keeps a network away from Tani's own defaults
	// (HTTP 8080, devnet 7051) and from Fabric's usual 7050-9051.
	DefaultBasePort = 17050
	// DefaultHost is where nodes listen and are reached by default.
	DefaultHost = "127.0.0.1"
	portBlock   = 10

	offPeerChaincode = 1
	offOperations    = 2
	offCA            = 3
	offCAOperations  = 4
	offChaincode     = 5
	// offVouchersChaincode is the vouchers chaincode server.
	offVouchersChaincode = 6
	offOrdererAdmin      = 1
)

// InitConfig says what consortium to create.
type InitConfig struct {
	Dir       string
	Channel   string
	Chaincode string
	// Orgs are the application MSP IDs; at least one (unless Layout names
	// them).
	Orgs []string
	// Policy is the anchor chaincode's endorsement policy; empty means a
	// majority of Orgs' peers.
	Policy string
	// Hosts are extra DNS names or IPs for the nodes' TLS certificates;
	// every endpoint's host is added by itself.
	Hosts []string
	// Host and BasePort place every node when Layout does not: the
	// orderers from BasePort in blocks of ten ports, then each
	// organization's block (peer, peer chaincode, operations, CA, CA
	// operations, chaincode server). Zero values mean DefaultHost and
	// DefaultBasePort.
	Host     string
	BasePort int
	// Orderers is the number of Raft orderers, 1 (default) or 3.
	Orderers int
	// BatchTimeout is the ordering service's batch timeout (default 2s).
	BatchTimeout time.Duration
	// Layout, when set, gives the nodes and their endpoints (from a
	// network file): its Orgs replace Orgs; endpoints it leaves empty are
	// derived from each node's main endpoint.
	Layout *Layout
	// VoucherRoles maps MSP IDs to their voucher roles (operator, bank,
	// distributor); nil means DefaultVoucherRoles.
	VoucherRoles map[string]string
}

// Layout is the part of a manifest a network file gives: which nodes
// exist and where they listen.
type Layout struct {
	Orderers []OrdererNode `json:"orderers"`
	Orgs     []Org         `json:"orgs"`
}

// ReadLayout reads a network file (JSON, the manifest's node fields):
//
//	{"orderers": [{"endpoint": "orderer0.example.net:7050"}],
//	 "orgs": [{"msp_id": "TaniMSP", "peer_endpoint": "peer0.tani.example.net:7051"}, ...]}
func ReadLayout(path string) (*Layout, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("consortium: network file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l Layout
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("consortium: network file %s: %w", path, err)
	}
	return &l, nil
}

// Init creates a consortium in cfg.Dir: crypto material, genesis block
// (with every organization's anchor peer), current channel configuration,
// manifest, connection profiles and client settings.
func Init(cfg InitConfig) (*Consortium, error) {
	if cfg.Dir == "" {
		return nil, errors.New("consortium: a directory is required")
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, ManifestFile)); err == nil {
		return nil, fmt.Errorf("consortium: %s already holds a consortium", cfg.Dir)
	}
	if cfg.Channel == "" {
		cfg.Channel = fabric.DefaultChannel
	}
	if cfg.Chaincode == "" {
		cfg.Chaincode = "anchor"
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 2 * time.Second
	}
	c := &Consortium{Dir: cfg.Dir, Channel: cfg.Channel, Chaincode: cfg.Chaincode, ChaincodeSequence: 1,
		BatchTimeout: cfg.BatchTimeout.String(), Orderer: OrdererOrg{MSPID: fabricmsp.OrdererMSPID, Domain: domainOf(fabricmsp.OrdererMSPID)}}
	if err := c.layOut(cfg); err != nil {
		return nil, err
	}
	var ids []string
	for _, o := range c.Orgs {
		ids = append(ids, o.MSPID)
	}
	c.EndorsementPolicy = cfg.Policy
	if c.EndorsementPolicy == "" {
		c.EndorsementPolicy = fabric.MajorityPolicy(ids)
	}
	for m, r := range cfg.VoucherRoles {
		if !slices.Contains(ids, m) {
			return nil, fmt.Errorf("consortium: voucher role for %s, which is not a member", m)
		}
		switch r {
		case "operator", "bank", "distributor":
		default:
			return nil, fmt.Errorf("consortium: voucher role %q of %s is not operator, bank or distributor", r, m)
		}
	}
	c.Vouchers.Roles = cfg.VoucherRoles
	c.fillVouchers()
	hosts := c.certHosts(cfg.Hosts)
	if err := fabricmsp.GenerateMaterial(cfg.Dir, ids, hosts); err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	for _, n := range c.Orderer.Nodes[1:] {
		if err := fabricmsp.GenerateNode(cfg.Dir, c.Orderer.MSPID, n.Name, hosts); err != nil {
			return nil, fmt.Errorf("consortium: %w", err)
		}
	}
	for _, id := range ids {
		if err := c.generateServiceTLS(id, hosts); err != nil {
			return nil, err
		}
	}
	ch, err := c.channelConfig()
	if err != nil {
		return nil, err
	}
	block, err := c.genesisBlock(ch)
	if err != nil {
		return nil, err
	}
	config, err := configFromBlock(block)
	if err != nil {
		return nil, err
	}
	if err := writeProto(filepath.Join(cfg.Dir, artifactsDir, c.Channel+".block"), block); err != nil {
		return nil, err
	}
	if err := writeProto(filepath.Join(cfg.Dir, artifactsDir, configFile), config); err != nil {
		return nil, err
	}
	if err := c.WriteProfiles(); err != nil {
		return nil, err
	}
	return c, c.save()
}

// layOut fills c's orderer nodes and organizations from cfg: the network
// file's layout, or Host and BasePort.
func (c *Consortium) layOut(cfg InitConfig) error {
	if cfg.Layout != nil {
		if len(cfg.Orgs) > 0 && len(cfg.Layout.Orgs) > 0 {
			return errors.New("consortium: give the organizations either as a list or in the network file, not both")
		}
		for i, n := range cfg.Layout.Orderers {
			if n.Name == "" {
				n.Name = fmt.Sprintf("orderer%d", i)
			}
			c.Orderer.Nodes = append(c.Orderer.Nodes, n)
		}
		if len(cfg.Layout.Orgs) > 0 {
			c.Orgs = slices.Clone(cfg.Layout.Orgs)
		}
	}
	host := cfg.Host
	if host == "" {
		host = DefaultHost
	}
	base := cfg.BasePort
	if base == 0 {
		base = DefaultBasePort
	}
	if base < 1024 || base > 65535-portBlock*8 {
		return fmt.Errorf("consortium: base port %d is outside 1024-%d", base, 65535-portBlock*8)
	}
	if len(c.Orderer.Nodes) == 0 {
		n := cfg.Orderers
		if n == 0 {
			n = 1
		}
		if n != 1 && n != 3 {
			return fmt.Errorf("consortium: %d orderers: a Raft ordering service here has 1 or 3", n)
		}
		for i := range n {
			c.Orderer.Nodes = append(c.Orderer.Nodes, OrdererNode{Name: fmt.Sprintf("orderer%d", i), Endpoint: hostPort(host, base+portBlock*i)})
		}
		c.Host, c.BasePort = host, base
	}
	if len(c.Orgs) == 0 {
		for _, id := range cfg.Orgs {
			c.Orgs = append(c.Orgs, Org{MSPID: id})
		}
	}
	if len(c.Orgs) == 0 {
		return errors.New("consortium: at least one organization is required")
	}
	seen := map[string]bool{fabricmsp.OrdererMSPID: true}
	for i := range c.Orgs {
		o := &c.Orgs[i]
		if o.MSPID == "" || seen[o.MSPID] {
			return fmt.Errorf("consortium: organization %q is empty, repeated or reserved", o.MSPID)
		}
		seen[o.MSPID] = true
		if o.PeerEndpoint == "" {
			if c.BasePort == 0 {
				return fmt.Errorf("consortium: %s has no peer_endpoint in the network file", o.MSPID)
			}
			o.PeerEndpoint = hostPort(host, base+portBlock*(len(c.Orderer.Nodes)+i))
		}
	}
	return c.fillEndpoints()
}

// fillEndpoints derives every endpoint not given from its node's main
// endpoint (same host, fixed offsets in the node's block of ports) and
// checks that no two listeners share an address.
func (c *Consortium) fillEndpoints() error {
	if len(c.Orderer.Nodes) == 0 && c.Orderer.Endpoint != "" {
		c.Orderer.Nodes = []OrdererNode{{Name: "orderer0", Endpoint: c.Orderer.Endpoint}}
	}
	c.Orderer.Endpoint = ""
	if c.Orderer.Domain == "" {
		c.Orderer.Domain = domainOf(c.Orderer.MSPID)
	}
	if len(c.Orderer.Nodes) == 0 {
		return errors.New("consortium: no orderer")
	}
	used := map[string]string{}
	claim := func(owner string, eps ...*string) error {
		for _, ep := range eps {
			if _, _, err := splitHostPort(*ep); err != nil {
				return err
			}
			if prev, ok := used[*ep]; ok {
				return fmt.Errorf("consortium: %s and %s both listen on %s", prev, owner, *ep)
			}
			used[*ep] = owner
		}
		return nil
	}
	for i := range c.Orderer.Nodes {
		n := &c.Orderer.Nodes[i]
		if n.Name == "" {
			n.Name = fmt.Sprintf("orderer%d", i)
		}
		derive(&n.AdminEndpoint, n.Endpoint, offOrdererAdmin)
		derive(&n.OperationsEndpoint, n.Endpoint, offOperations)
		if err := claim(n.Name, &n.Endpoint, &n.AdminEndpoint, &n.OperationsEndpoint); err != nil {
			return err
		}
	}
	for i := range c.Orgs {
		o := &c.Orgs[i]
		if err := c.fillOrg(o); err != nil {
			return err
		}
		if err := claim(o.MSPID, &o.PeerEndpoint, &o.PeerChaincodeEndpoint, &o.OperationsEndpoint, &o.CAEndpoint, &o.CAOperationsEndpoint, &o.ChaincodeEndpoint, &o.VouchersChaincodeEndpoint); err != nil {
			return err
		}
	}
	return nil
}

func (c *Consortium) fillOrg(o *Org) error {
	if o.Domain == "" {
		o.Domain = domainOf(o.MSPID)
	}
	if _, _, err := splitHostPort(o.PeerEndpoint); err != nil {
		return err
	}
	derive(&o.PeerChaincodeEndpoint, o.PeerEndpoint, offPeerChaincode)
	derive(&o.OperationsEndpoint, o.PeerEndpoint, offOperations)
	derive(&o.CAEndpoint, o.PeerEndpoint, offCA)
	derive(&o.CAOperationsEndpoint, o.PeerEndpoint, offCAOperations)
	derive(&o.ChaincodeEndpoint, o.PeerEndpoint, offChaincode)
	derive(&o.VouchersChaincodeEndpoint, o.PeerEndpoint, offVouchersChaincode)
	return nil
}

// derive sets *ep, when empty, to main's host at main's port plus off.
func derive(ep *string, main string, off int) {
	if *ep != "" {
		return
	}
	h, p, err := splitHostPort(main)
	if err != nil {
		return // reported by the caller's check of main
	}
	*ep = hostPort(h, p+off)
}

// nextPeerEndpoint places a new member's peer in the first free block
// after every node, or fails when the consortium was laid out by a
// network file (the member's endpoints must then be given).
func (c *Consortium) nextPeerEndpoint() (string, error) {
	if c.BasePort == 0 || c.Host == "" {
		return "", errors.New("consortium: this consortium's nodes were placed by a network file; give the new member's peer endpoint")
	}
	top := c.BasePort
	for _, n := range c.Orderer.Nodes {
		if _, p, err := splitHostPort(n.Endpoint); err == nil && p > top {
			top = p
		}
	}
	for _, o := range c.Orgs {
		if _, p, err := splitHostPort(o.PeerEndpoint); err == nil && p > top {
			top = p
		}
	}
	return hostPort(c.Host, top+portBlock), nil
}

// certHosts are the names and addresses the nodes' TLS certificates carry
// besides their own names: extra plus every endpoint's host.
func (c *Consortium) certHosts(extra []string) []string {
	hosts := slices.Clone(extra)
	add := func(ep string) {
		if h, _, err := net.SplitHostPort(ep); err == nil && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	for _, n := range c.Orderer.Nodes {
		add(n.Endpoint)
	}
	for _, o := range c.Orgs {
		add(o.PeerEndpoint)
		add(o.CAEndpoint)
		add(o.ChaincodeEndpoint)
		add(o.VouchersChaincodeEndpoint)
	}
	return hosts
}

// generateServiceTLS issues the TLS certificates of the organization's CA
// server and chaincode server.
func (c *Consortium) generateServiceTLS(mspID string, hosts []string) error {
	for _, svc := range []string{"ca", "chaincode"} {
		if err := fabricmsp.GenerateServiceTLS(c.Dir, mspID, svc, hosts); err != nil {
			return fmt.Errorf("consortium: %w", err)
		}
	}
	return nil
}

// Load reads the consortium in dir.
func Load(dir string) (*Consortium, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("consortium: no consortium in %s (run `tani network init` first)", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	var c Consortium
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("consortium: decode %s: %w", ManifestFile, err)
	}
	c.Dir = dir
	if c.ChaincodeSequence == 0 {
		c.ChaincodeSequence = 1
	}
	if err := c.fillEndpoints(); err != nil {
		return nil, err
	}
	c.fillVouchers()
	return &c, nil
}

// Org returns the member organization mspID.
func (c *Consortium) Org(mspID string) (Org, bool) {
	i := slices.IndexFunc(c.Orgs, func(o Org) bool { return o.MSPID == mspID })
	if i < 0 {
		return Org{}, false
	}
	return c.Orgs[i], true
}

// MSPIDs lists the member organizations in manifest order.
func (c *Consortium) MSPIDs() []string {
	ids := make([]string, len(c.Orgs))
	for i, o := range c.Orgs {
		ids[i] = o.MSPID
	}
	return ids
}

func domainOf(mspID string) string {
	return strings.ToLower(strings.TrimSuffix(mspID, "MSP")) + ".tani.local"
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// artifact is a file of the channel-artifacts directory.
func (c *Consortium) artifact(name string) string { return filepath.Join(c.Dir, artifactsDir, name) }

// orgDir is where an organization's material lives (cryptogen layout).
func (c *Consortium) orgDir(mspID string) string { return filepath.Join(c.Dir, "crypto", mspID) }

// AdminPaths are an organization admin's certificate and key files.
func (c *Consortium) AdminPaths(mspID string) (cert, key string) {
	msp := filepath.Join(c.orgDir(mspID), "users", "Admin", "msp")
	return filepath.Join(msp, "signcerts", "cert.pem"), filepath.Join(msp, "keystore", "priv_sk")
}

// ClientPaths are an organization client's certificate and key files.
func (c *Consortium) ClientPaths(mspID string) (cert, key string) {
	msp := filepath.Join(c.orgDir(mspID), "users", "User1", "msp")
	return filepath.Join(msp, "signcerts", "cert.pem"), filepath.Join(msp, "keystore", "priv_sk")
}

// ClientMSPDir is an organization client's (User1's) MSP directory.
func (c *Consortium) ClientMSPDir(mspID string) string {
	return filepath.Join(c.orgDir(mspID), "users", "User1", "msp")
}

// AdminTLSPaths are an organization admin's TLS client certificate and
// key (the orderer's channel participation API requires one).
func (c *Consortium) AdminTLSPaths(mspID string) (cert, key string) {
	tls := filepath.Join(c.orgDir(mspID), "users", "Admin", "tls")
	return filepath.Join(tls, "client.crt"), filepath.Join(tls, "client.key")
}

// AdminMSPDir is an organization admin's MSP directory (for the peer CLI).
func (c *Consortium) AdminMSPDir(mspID string) string {
	return filepath.Join(c.orgDir(mspID), "users", "Admin", "msp")
}

// TLSCAPath is an organization's TLS CA certificate.
func (c *Consortium) TLSCAPath(mspID string) string {
	return filepath.Join(c.orgDir(mspID), "tlsca", "ca.crt")
}

// CACertPath is an organization's (signing) CA certificate.
func (c *Consortium) CACertPath(mspID string) string {
	return filepath.Join(c.orgDir(mspID), "ca", "ca.crt")
}

// CAKeyPath is an organization's CA private key, when the consortium
// created the CA (members that joined by proposal keep theirs in their
// Fabric CA server).
func (c *Consortium) CAKeyPath(mspID string) string {
	return filepath.Join(c.orgDir(mspID), "ca", "priv_sk")
}

// NodeDir is the directory of an organization's node (peers/peer0, or
// orderers/<name> of the orderer organization): msp/ and tls/.
func (c *Consortium) NodeDir(mspID, name string) string {
	kind := "peers"
	if mspID == c.Orderer.MSPID {
		kind = "orderers"
	}
	return filepath.Join(c.orgDir(mspID), kind, name)
}

// ServiceTLSPaths are the TLS server certificate and key of a service an
// organization runs beside its peer ("ca", "chaincode").
func (c *Consortium) ServiceTLSPaths(mspID, service string) (cert, key string) {
	d := filepath.Join(c.orgDir(mspID), "services", service, "tls")
	return filepath.Join(d, "server.crt"), filepath.Join(d, "server.key")
}

// organization is the channel-configuration view of an application
// organization, built from its CAs on disk, with NodeOUs so that admin,
// client, peer and orderer roles come from certificates.
func (c *Consortium) organization(o Org) (configtx.Organization, error) {
	org, err := c.mspOrganization(o.MSPID)
	if err != nil {
		return org, err
	}
	id := o.MSPID
	host, port, err := splitHostPort(o.PeerEndpoint)
	if err != nil {
		return org, err
	}
	org.Policies = map[string]configtx.Policy{
		configtx.ReadersPolicyKey:     sigPolicy(fmt.Sprintf("OR('%s.admin', '%s.peer', '%s.client')", id, id, id)),
		configtx.WritersPolicyKey:     sigPolicy(fmt.Sprintf("OR('%s.admin', '%s.client')", id, id)),
		configtx.AdminsPolicyKey:      sigPolicy(fmt.Sprintf("OR('%s.admin')", id)),
		configtx.EndorsementPolicyKey: sigPolicy(fmt.Sprintf("OR('%s.peer')", id)),
	}
	org.AnchorPeers = []configtx.Address{{Host: host, Port: port}}
	return org, nil
}

func (c *Consortium) mspOrganization(mspID string) (configtx.Organization, error) {
	ca, err := readCert(c.CACertPath(mspID))
	if err != nil {
		return configtx.Organization{}, err
	}
	tlsca, err := readCert(c.TLSCAPath(mspID))
	if err != nil {
		return configtx.Organization{}, err
	}
	ou := func(role string) membership.OUIdentifier {
		return membership.OUIdentifier{Certificate: ca, OrganizationalUnitIdentifier: role}
	}
	return configtx.Organization{
		Name: mspID,
		MSP: configtx.MSP{
			Name: mspID, RootCerts: []*x509.Certificate{ca}, TLSRootCerts: []*x509.Certificate{tlsca},
			CryptoConfig: membership.CryptoConfig{SignatureHashFamily: "SHA2", IdentityIdentifierHashFunction: "SHA256"},
			NodeOUs: membership.NodeOUs{Enable: true, ClientOUIdentifier: ou("client"), PeerOUIdentifier: ou("peer"),
				AdminOUIdentifier: ou("admin"), OrdererOUIdentifier: ou("orderer")},
		},
	}, nil
}

// channelConfig is the whole channel: a Raft ordering service and the
// application organizations, Fabric 2.x capabilities (which Fabric 3
// nodes run), MAJORITY Admins for configuration changes.
func (c *Consortium) channelConfig() (configtx.Channel, error) {
	var apps []configtx.Organization
	for _, o := range c.Orgs {
		org, err := c.organization(o)
		if err != nil {
			return configtx.Channel{}, err
		}
		apps = append(apps, org)
	}
	id := c.Orderer.MSPID
	ord, err := c.mspOrganization(id)
	if err != nil {
		return configtx.Channel{}, err
	}
	ord.Policies = map[string]configtx.Policy{
		configtx.ReadersPolicyKey: sigPolicy(fmt.Sprintf("OR('%s.member')", id)),
		configtx.WritersPolicyKey: sigPolicy(fmt.Sprintf("OR('%s.member')", id)),
		configtx.AdminsPolicyKey:  sigPolicy(fmt.Sprintf("OR('%s.admin')", id)),
	}
	var consenters []ordconf.Consenter
	for _, n := range c.Orderer.Nodes {
		host, port, err := splitHostPort(n.Endpoint)
		if err != nil {
			return configtx.Channel{}, err
		}
		tlsCert, err := readCert(filepath.Join(c.NodeDir(id, n.Name), "tls", "server.crt"))
		if err != nil {
			return configtx.Channel{}, err
		}
		consenters = append(consenters, ordconf.Consenter{Address: ordconf.EtcdAddress{Host: host, Port: port}, ClientTLSCert: tlsCert, ServerTLSCert: tlsCert})
		ord.OrdererEndpoints = append(ord.OrdererEndpoints, n.Endpoint)
	}
	batchTimeout, err := time.ParseDuration(c.BatchTimeout)
	if err != nil || batchTimeout <= 0 {
		return configtx.Channel{}, fmt.Errorf("consortium: batch timeout %q: want a positive duration", c.BatchTimeout)
	}
	return configtx.Channel{
		Orderer: configtx.Orderer{
			OrdererType:   ordconf.ConsensusTypeEtcdRaft,
			Organizations: []configtx.Organization{ord},
			EtcdRaft: ordconf.EtcdRaft{
				Consenters: consenters,
				Options:    ordconf.EtcdRaftOptions{TickInterval: "500ms", ElectionTick: 10, HeartbeatTick: 1, MaxInflightBlocks: 5, SnapshotIntervalSize: 16 * 1024 * 1024},
			},
			Policies: map[string]configtx.Policy{
				configtx.ReadersPolicyKey: metaPolicy("ANY Readers"), configtx.WritersPolicyKey: metaPolicy("ANY Writers"),
				configtx.AdminsPolicyKey: metaPolicy("MAJORITY Admins"), configtx.BlockValidationPolicyKey: metaPolicy("ANY Writers"),
			},
			Capabilities: []string{"V2_0"},
			BatchSize:    ordconf.BatchSize{MaxMessageCount: 500, AbsoluteMaxBytes: 10 << 20, PreferredMaxBytes: 2 << 20},
			BatchTimeout: batchTimeout,
			State:        ordconf.ConsensusStateNormal,
		},
		Application: configtx.Application{
			Organizations: apps,
			Capabilities:  []string{"V2_5"},
			Policies: map[string]configtx.Policy{
				configtx.ReadersPolicyKey: metaPolicy("ANY Readers"), configtx.WritersPolicyKey: metaPolicy("ANY Writers"),
				configtx.AdminsPolicyKey: metaPolicy("MAJORITY Admins"), configtx.EndorsementPolicyKey: metaPolicy("MAJORITY Endorsement"),
				configtx.LifecycleEndorsementPolicyKey: metaPolicy("MAJORITY Endorsement"),
			},
		},
		Capabilities: []string{"V2_0"},
		Policies: map[string]configtx.Policy{
			configtx.ReadersPolicyKey: metaPolicy("ANY Readers"), configtx.WritersPolicyKey: metaPolicy("ANY Writers"),
			configtx.AdminsPolicyKey: metaPolicy("MAJORITY Admins"),
		},
	}, nil
}

// genesisBlock is the channel's block 0. fabric-config v0.3.0's
// NewApplicationChannelGenesisBlock leaves the organizations' anchor peers
// out of the block it builds (they are set only through a later update),
// and without anchor peers gossip never links the organizations: the
// gateway then finds no set of peers for a policy naming several of them.
// So the anchor peers are added to the generated configuration and the
// block is re-sealed around it (same envelope header, new data hash).
func (c *Consortium) genesisBlock(ch configtx.Channel) (*cb.Block, error) {
	block, err := configtx.NewApplicationChannelGenesisBlock(ch, c.Channel)
	if err != nil {
		return nil, fmt.Errorf("consortium: genesis block: %w", err)
	}
	config, err := configFromBlock(block)
	if err != nil {
		return nil, err
	}
	tx := configtx.New(config)
	for _, o := range ch.Application.Organizations {
		org := tx.Application().Organization(o.Name)
		if org == nil {
			return nil, fmt.Errorf("consortium: genesis block lacks %s", o.Name)
		}
		have, err := org.AnchorPeers()
		if err != nil {
			return nil, fmt.Errorf("consortium: %s anchor peers: %w", o.Name, err)
		}
		for _, a := range o.AnchorPeers {
			if slices.Contains(have, a) {
				continue
			}
			if err := org.AddAnchorPeer(a); err != nil {
				return nil, fmt.Errorf("consortium: %s anchor peer: %w", o.Name, err)
			}
		}
	}
	return replaceBlockConfig(block, tx.UpdatedConfig())
}

// replaceBlockConfig puts config into a configuration block's envelope in
// place of the one it holds and recomputes the block's data hash.
func replaceBlockConfig(block *cb.Block, config *cb.Config) (*cb.Block, error) {
	var env cb.Envelope
	if err := proto.Unmarshal(block.Data.Data[0], &env); err != nil {
		return nil, fmt.Errorf("consortium: decode envelope: %w", err)
	}
	var payload cb.Payload
	if err := proto.Unmarshal(env.Payload, &payload); err != nil {
		return nil, fmt.Errorf("consortium: decode payload: %w", err)
	}
	var ce cb.ConfigEnvelope
	if err := proto.Unmarshal(payload.Data, &ce); err != nil {
		return nil, fmt.Errorf("consortium: decode config envelope: %w", err)
	}
	ce.Config = config
	var err error
	if payload.Data, err = proto.Marshal(&ce); err != nil {
		return nil, fmt.Errorf("consortium: encode config envelope: %w", err)
	}
	if env.Payload, err = proto.Marshal(&payload); err != nil {
		return nil, fmt.Errorf("consortium: encode payload: %w", err)
	}
	data, err := proto.Marshal(&env)
	if err != nil {
		return nil, fmt.Errorf("consortium: encode envelope: %w", err)
	}
	out := proto.Clone(block).(*cb.Block)
	out.Data.Data[0] = data
	sum := sha256.Sum256(bytes.Join(out.Data.Data, nil))
	out.Header.DataHash = sum[:]
	return out, nil
}

func sigPolicy(rule string) configtx.Policy {
	return configtx.Policy{Type: configtx.SignaturePolicyType, Rule: rule}
}

func metaPolicy(rule string) configtx.Policy {
	return configtx.Policy{Type: configtx.ImplicitMetaPolicyType, Rule: rule}
}

// Config returns the channel's current configuration.
func (c *Consortium) Config() (*cb.Config, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, artifactsDir, configFile))
	if err != nil {
		return nil, fmt.Errorf("consortium: read channel configuration: %w", err)
	}
	var config cb.Config
	if err := proto.Unmarshal(b, &config); err != nil {
		return nil, fmt.Errorf("consortium: decode channel configuration: %w", err)
	}
	return &config, nil
}

// Member is an application organization as the channel configuration has it.
type Member struct {
	MSPID       string
	RootCA      string // subject of the organization's CA
	AnchorPeers []string
	// AdminsPolicy is the organization's Admins rule.
	AdminsPolicy string
}

// Members lists the channel's application organizations from its current
// configuration, sorted by MSP ID.
func (c *Consortium) Members() ([]Member, error) {
	config, err := c.Config()
	if err != nil {
		return nil, err
	}
	ctx := configtx.New(config)
	app, err := ctx.Application().Configuration()
	if err != nil {
		return nil, fmt.Errorf("consortium: application configuration: %w", err)
	}
	var out []Member
	for _, o := range app.Organizations {
		m := Member{MSPID: o.MSP.Name, AdminsPolicy: o.Policies[configtx.AdminsPolicyKey].Rule}
		if len(o.MSP.RootCerts) > 0 {
			m.RootCA = o.MSP.RootCerts[0].Subject.String()
		}
		for _, p := range o.AnchorPeers {
			m.AnchorPeers = append(m.AnchorPeers, net.JoinHostPort(p.Host, strconv.Itoa(p.Port)))
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.MSPID, b.MSPID) })
	return out, nil
}

func (c *Consortium) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("consortium: encode manifest: %w", err)
	}
	return writeFile(filepath.Join(c.Dir, ManifestFile), append(b, '\n'), 0o644)
}

func configFromBlock(block *cb.Block) (*cb.Config, error) {
	if len(block.GetData().GetData()) != 1 {
		return nil, errors.New("consortium: configuration block must hold one envelope")
	}
	var env cb.Envelope
	if err := proto.Unmarshal(block.Data.Data[0], &env); err != nil {
		return nil, fmt.Errorf("consortium: decode envelope: %w", err)
	}
	var payload cb.Payload
	if err := proto.Unmarshal(env.Payload, &payload); err != nil {
		return nil, fmt.Errorf("consortium: decode payload: %w", err)
	}
	var ce cb.ConfigEnvelope
	if err := proto.Unmarshal(payload.Data, &ce); err != nil {
		return nil, fmt.Errorf("consortium: decode config envelope: %w", err)
	}
	return ce.Config, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	cert, err := parseCertPEM(b)
	if err != nil {
		return nil, fmt.Errorf("consortium: %s: %w", path, err)
	}
	return cert, nil
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("consortium: endpoint %q: %w", hp, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("consortium: endpoint %q: %w", hp, err)
	}
	return h, port, nil
}

func writeProto(path string, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("consortium: encode %s: %w", filepath.Base(path), err)
	}
	return writeFile(path, b, 0o644)
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("consortium: %w", err)
	}
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("consortium: %w", err)
	}
	return nil
}

// FreeBasePort picks a base port at which blocks blocks of ports are free
// on host right now, between 20000 and 32000 (below Linux's ephemeral
// range), so that test networks started side by side do not collide.
func FreeBasePort(host string, blocks int) (int, error) {
	for range 200 {
		n, err := rand.Int(rand.Reader, big.NewInt((32000-20000)/portBlock-int64(blocks)))
		if err != nil {
			return 0, fmt.Errorf("consortium: %w", err)
		}
		base := 20000 + int(n.Int64())*portBlock
		if portsFree(host, base, blocks*portBlock) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("consortium: no %d free ports in a row on %s", blocks*portBlock, host)
}

func portsFree(host string, base, n int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		l, err := net.Listen("tcp", hostPort(host, p))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}
