package consortium

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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
	"github.com/tani-platform/tani/ledger/fabric/msp"
)

// File names inside a consortium directory.
const (
	ManifestFile = "consortium.json"
	artifactsDir = "channel-artifacts"
	configFile   = "config.pb"
	updatesDir   = "updates"
)

// Org is one member organization.
type Org struct {
	MSPID string `json:"msp_id"`
	// Domain names the organization's nodes (peer0.<domain>).
	Domain string `json:"domain"`
	// PeerEndpoint is the peer's gateway host:port.
	PeerEndpoint string `json:"peer_endpoint"`
}

// Consortium is a consortium directory's manifest.
type Consortium struct {
	Dir               string `json:"-"`
	Channel           string `json:"channel"`
	Chaincode         string `json:"chaincode"`
	EndorsementPolicy string `json:"endorsement_policy"`
	Orgs              []Org  `json:"orgs"`
	Orderer           Org    `json:"orderer"`
}

// InitConfig says what consortium to create.
type InitConfig struct {
	Dir       string
	Channel   string
	Chaincode string
	// Orgs are the application MSP IDs; at least one.
	Orgs []string
	// Policy is the anchor chaincode's endorsement policy; empty means a
	// majority of Orgs' peers.
	Policy string
	// Hosts are extra DNS names or IPs for the nodes' TLS certificates.
	Hosts []string
}

// Init creates a consortium in cfg.Dir: crypto material, genesis block,
// current channel configuration, manifest and connection profiles.
func Init(cfg InitConfig) (*Consortium, error) {
	if cfg.Dir == "" || len(cfg.Orgs) == 0 {
		return nil, errors.New("consortium: a directory and at least one organization are required")
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, ManifestFile)); err == nil {
		return nil, fmt.Errorf("consortium: %s already holds a consortium", cfg.Dir)
	}
	seen := map[string]bool{msp.OrdererMSPID: true}
	for _, o := range cfg.Orgs {
		if o == "" || seen[o] {
			return nil, fmt.Errorf("consortium: organization %q is empty, repeated or reserved", o)
		}
		seen[o] = true
	}
	if cfg.Channel == "" {
		cfg.Channel = fabric.DefaultChannel
	}
	if cfg.Chaincode == "" {
		cfg.Chaincode = "anchor"
	}
	if cfg.Policy == "" {
		cfg.Policy = fabric.MajorityPolicy(cfg.Orgs)
	}
	if err := msp.GenerateMaterial(cfg.Dir, cfg.Orgs, cfg.Hosts); err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	c := &Consortium{Dir: cfg.Dir, Channel: cfg.Channel, Chaincode: cfg.Chaincode, EndorsementPolicy: cfg.Policy, Orderer: newOrg(msp.OrdererMSPID, 7050)}
	for _, id := range cfg.Orgs {
		c.Orgs = append(c.Orgs, newOrg(id, 7051))
	}
	ch, err := c.channelConfig()
	if err != nil {
		return nil, err
	}
	block, err := configtx.NewApplicationChannelGenesisBlock(ch, c.Channel)
	if err != nil {
		return nil, fmt.Errorf("consortium: genesis block: %w", err)
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
	if err := c.writeProfiles(); err != nil {
		return nil, err
	}
	return c, c.save()
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
	return &c, nil
}

func newOrg(mspID string, port int) Org {
	d := strings.ToLower(strings.TrimSuffix(mspID, "MSP")) + ".tani.local"
	node := "peer0."
	if mspID == msp.OrdererMSPID {
		node = "orderer0."
	}
	return Org{MSPID: mspID, Domain: d, PeerEndpoint: net.JoinHostPort(node+d, strconv.Itoa(port))}
}

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

// TLSCAPath is an organization's TLS CA certificate.
func (c *Consortium) TLSCAPath(mspID string) string {
	return filepath.Join(c.orgDir(mspID), "tlsca", "ca.crt")
}

// organization is the channel-configuration view of o, built from its CAs
// on disk, with NodeOUs so that admin, client, peer and orderer roles come
// from certificates.
func (c *Consortium) organization(o Org, application bool) (configtx.Organization, error) {
	ca, err := readCert(filepath.Join(c.orgDir(o.MSPID), "ca", "ca.crt"))
	if err != nil {
		return configtx.Organization{}, err
	}
	tlsca, err := readCert(c.TLSCAPath(o.MSPID))
	if err != nil {
		return configtx.Organization{}, err
	}
	ou := func(role string) membership.OUIdentifier {
		return membership.OUIdentifier{Certificate: ca, OrganizationalUnitIdentifier: role}
	}
	id := o.MSPID
	org := configtx.Organization{
		Name: id,
		MSP: configtx.MSP{
			Name: id, RootCerts: []*x509.Certificate{ca}, TLSRootCerts: []*x509.Certificate{tlsca},
			CryptoConfig: membership.CryptoConfig{SignatureHashFamily: "SHA2", IdentityIdentifierHashFunction: "SHA256"},
			NodeOUs: membership.NodeOUs{Enable: true, ClientOUIdentifier: ou("client"), PeerOUIdentifier: ou("peer"),
				AdminOUIdentifier: ou("admin"), OrdererOUIdentifier: ou("orderer")},
		},
	}
	if application {
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
	org.Policies = map[string]configtx.Policy{
		configtx.ReadersPolicyKey: sigPolicy(fmt.Sprintf("OR('%s.member')", id)),
		configtx.WritersPolicyKey: sigPolicy(fmt.Sprintf("OR('%s.member')", id)),
		configtx.AdminsPolicyKey:  sigPolicy(fmt.Sprintf("OR('%s.admin')", id)),
	}
	org.OrdererEndpoints = []string{o.PeerEndpoint}
	return org, nil
}

// channelConfig is the whole channel: a Raft orderer organization and the
// application organizations, Fabric 2.5 capabilities, MAJORITY Admins for
// configuration changes.
func (c *Consortium) channelConfig() (configtx.Channel, error) {
	var apps []configtx.Organization
	for _, o := range c.Orgs {
		org, err := c.organization(o, true)
		if err != nil {
			return configtx.Channel{}, err
		}
		apps = append(apps, org)
	}
	ord, err := c.organization(c.Orderer, false)
	if err != nil {
		return configtx.Channel{}, err
	}
	host, port, err := splitHostPort(c.Orderer.PeerEndpoint)
	if err != nil {
		return configtx.Channel{}, err
	}
	ordTLS, err := readCert(filepath.Join(c.orgDir(c.Orderer.MSPID), "orderers", "orderer0", "tls", "server.crt"))
	if err != nil {
		return configtx.Channel{}, err
	}
	return configtx.Channel{
		Orderer: configtx.Orderer{
			OrdererType:   ordconf.ConsensusTypeEtcdRaft,
			Organizations: []configtx.Organization{ord},
			EtcdRaft: ordconf.EtcdRaft{
				Consenters: []ordconf.Consenter{{Address: ordconf.EtcdAddress{Host: host, Port: port}, ClientTLSCert: ordTLS, ServerTLSCert: ordTLS}},
				Options:    ordconf.EtcdRaftOptions{TickInterval: "500ms", ElectionTick: 10, HeartbeatTick: 1, MaxInflightBlocks: 5, SnapshotIntervalSize: 16 * 1024 * 1024},
			},
			Policies: map[string]configtx.Policy{
				configtx.ReadersPolicyKey: metaPolicy("ANY Readers"), configtx.WritersPolicyKey: metaPolicy("ANY Writers"),
				configtx.AdminsPolicyKey: metaPolicy("MAJORITY Admins"), configtx.BlockValidationPolicyKey: metaPolicy("ANY Writers"),
			},
			Capabilities: []string{"V2_0"},
			BatchSize:    ordconf.BatchSize{MaxMessageCount: 500, AbsoluteMaxBytes: 10 << 20, PreferredMaxBytes: 2 << 20},
			BatchTimeout: 2 * time.Second,
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
