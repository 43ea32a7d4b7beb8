package node

import (
	"crypto/x509"
	"fmt"
	"net"
	"strconv"

	"github.com/hyperledger/fabric-config/configtx"
	"github.com/hyperledger/fabric-config/configtx/membership"
	ordconf "github.com/hyperledger/fabric-config/configtx/orderer"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/tani-platform/tani/ledger/fabric/msp"
)

// genesisBlock builds block 0, the channel configuration, with
// fabric-config, and marks its config transaction valid as a peer does when
// it commits the block.
func genesisBlock(cfg Config) (*cb.Block, error) {
	sig := func(rule string) configtx.Policy {
		return configtx.Policy{Type: configtx.SignaturePolicyType, Rule: rule}
	}
	meta := func(rule string) configtx.Policy {
		return configtx.Policy{Type: configtx.ImplicitMetaPolicyType, Rule: rule}
	}
	mspOf := func(o *msp.Org) configtx.MSP {
		ou := func(role string) membership.OUIdentifier {
			return membership.OUIdentifier{Certificate: o.CACert, OrganizationalUnitIdentifier: role}
		}
		return configtx.MSP{
			Name:         o.MSPID,
			RootCerts:    []*x509.Certificate{o.CACert},
			TLSRootCerts: []*x509.Certificate{o.TLSCACert},
			CryptoConfig: membership.CryptoConfig{SignatureHashFamily: "SHA2", IdentityIdentifierHashFunction: "SHA256"},
			NodeOUs: membership.NodeOUs{
				Enable: true, ClientOUIdentifier: ou(msp.RoleClient), PeerOUIdentifier: ou(msp.RolePeer),
				AdminOUIdentifier: ou(msp.RoleAdmin), OrdererOUIdentifier: ou(msp.RoleOrderer),
			},
		}
	}
	var apps []configtx.Organization
	for _, o := range cfg.Orgs {
		id := o.MSPID
		apps = append(apps, configtx.Organization{
			Name: id,
			Policies: map[string]configtx.Policy{
				configtx.ReadersPolicyKey:     sig(fmt.Sprintf("OR('%s.admin', '%s.peer', '%s.client')", id, id, id)),
				configtx.WritersPolicyKey:     sig(fmt.Sprintf("OR('%s.admin', '%s.client')", id, id)),
				configtx.AdminsPolicyKey:      sig(fmt.Sprintf("OR('%s.admin')", id)),
				configtx.EndorsementPolicyKey: sig(fmt.Sprintf("OR('%s.peer')", id)),
			},
			MSP:         mspOf(o),
			AnchorPeers: []configtx.Address{{Host: "peer0." + o.Domain(), Port: 7051}},
		})
	}
	oid := cfg.Orderer.MSPID
	ordererHost := "orderer0." + cfg.Orderer.Domain()
	channel := configtx.Channel{
		Orderer: configtx.Orderer{
			OrdererType: ordconf.ConsensusTypeEtcdRaft,
			Organizations: []configtx.Organization{{
				Name: oid,
				Policies: map[string]configtx.Policy{
					configtx.ReadersPolicyKey: sig(fmt.Sprintf("OR('%s.member')", oid)),
					configtx.WritersPolicyKey: sig(fmt.Sprintf("OR('%s.member')", oid)),
					configtx.AdminsPolicyKey:  sig(fmt.Sprintf("OR('%s.admin')", oid)),
				},
				OrdererEndpoints: []string{net.JoinHostPort(ordererHost, strconv.Itoa(7050))},
				MSP:              mspOf(cfg.Orderer),
			}},
			EtcdRaft: ordconf.EtcdRaft{
				Consenters: []ordconf.Consenter{{
					Address:       ordconf.EtcdAddress{Host: ordererHost, Port: 7050},
					ClientTLSCert: cfg.Orderer.TLSCACert,
					ServerTLSCert: cfg.Orderer.TLSCACert,
				}},
				Options: ordconf.EtcdRaftOptions{TickInterval: "500ms", ElectionTick: 10, HeartbeatTick: 1, MaxInflightBlocks: 5, SnapshotIntervalSize: 16 * 1024 * 1024},
			},
			Policies: map[string]configtx.Policy{
				configtx.ReadersPolicyKey:         meta("ANY Readers"),
				configtx.WritersPolicyKey:         meta("ANY Writers"),
				configtx.AdminsPolicyKey:          meta("MAJORITY Admins"),
				configtx.BlockValidationPolicyKey: meta("ANY Writers"),
			},
			Capabilities: []string{"V2_0"},
			BatchSize: ordconf.BatchSize{
				MaxMessageCount:   uint32(cfg.BatchMaxCount),
				AbsoluteMaxBytes:  uint32(10 * 1024 * 1024),
				PreferredMaxBytes: uint32(cfg.BatchPreferredBytes),
			},
			BatchTimeout: cfg.BatchTimeout,
			State:        ordconf.ConsensusStateNormal,
		},
		Application: configtx.Application{
			Organizations: apps,
			Capabilities:  []string{"V2_5"},
			Policies: map[string]configtx.Policy{
				configtx.ReadersPolicyKey:              meta("ANY Readers"),
				configtx.WritersPolicyKey:              meta("ANY Writers"),
				configtx.AdminsPolicyKey:               meta("MAJORITY Admins"),
				configtx.EndorsementPolicyKey:          meta("MAJORITY Endorsement"),
				configtx.LifecycleEndorsementPolicyKey: meta("MAJORITY Endorsement"),
			},
		},
		Capabilities: []string{"V2_0"},
		Policies: map[string]configtx.Policy{
			configtx.ReadersPolicyKey: meta("ANY Readers"),
			configtx.WritersPolicyKey: meta("ANY Writers"),
			configtx.AdminsPolicyKey:  meta("MAJORITY Admins"),
		},
	}
	b, err := configtx.NewApplicationChannelGenesisBlock(channel, cfg.Channel)
	if err != nil {
		return nil, fmt.Errorf("build genesis block: %w", err)
	}
	b.Metadata.Metadata[cb.BlockMetadataIndex_TRANSACTIONS_FILTER] = []byte{byte(peer.TxValidationCode_VALID)}
	return b, nil
}
