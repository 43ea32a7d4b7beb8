// Package devnettest starts devnets and official fabric-gateway clients for
// tests in other packages. Every helper registers its own cleanup.
//
// It must never be imported by non-test code.
package devnettest

import (
	"context"
	"crypto/x509"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// MustStart starts a TLS devnet in a temporary directory on a free loopback
// port, hosting chaincodes (the asset contract when none are given).
func MustStart(tb testing.TB, chaincodes ...devnet.Chaincode) *devnet.Network {
	tb.Helper()
	return MustStartConfig(tb, devnet.Config{Dir: tb.TempDir()}, chaincodes...)
}

// MustStartConfig starts a devnet with cfg; an empty Listen becomes a free
// loopback port and a zero BatchTimeout becomes 20ms to keep tests fast.
func MustStartConfig(tb testing.TB, cfg devnet.Config, chaincodes ...devnet.Chaincode) *devnet.Network {
	tb.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = 20 * time.Millisecond
	}
	if len(chaincodes) == 0 {
		chaincodes = devnet.DefaultChaincodes(cfg.Orgs)
	}
	n, err := devnet.New(cfg, chaincodes...)
	if err != nil {
		tb.Fatalf("devnet.New: %v", err)
	}
	if err := n.Start(context.Background()); err != nil {
		tb.Fatalf("devnet.Start: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			tb.Errorf("devnet.Stop: %v", err)
		}
	})
	return n
}

// MustConn dials the devnet with its TLS CA (or plaintext when insecure).
func MustConn(tb testing.TB, n *devnet.Network) *grpc.ClientConn {
	tb.Helper()
	ci := n.ConnectionInfo()
	creds := insecure.NewCredentials()
	if !ci.Insecure {
		pem, err := os.ReadFile(ci.TLSCACertPath)
		if err != nil {
			tb.Fatalf("read TLS CA: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			tb.Fatalf("no certificate in %s", ci.TLSCACertPath)
		}
		creds = credentials.NewClientTLSFromCert(pool, ci.ServerName)
	}
	conn, err := grpc.NewClient(ci.Endpoint, grpc.WithTransportCredentials(creds))
	if err != nil {
		tb.Fatalf("dial devnet: %v", err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// MustGateway connects an official fabric-gateway client as org's client
// identity. Extra options are applied after the identity's signer.
func MustGateway(tb testing.TB, n *devnet.Network, org string, opts ...client.ConnectOption) *client.Gateway {
	tb.Helper()
	id, err := n.Identity(org, "client")
	if err != nil {
		tb.Fatalf("devnet identity: %v", err)
	}
	xid, err := identity.NewX509Identity(id.MSPID, id.Certificate())
	if err != nil {
		tb.Fatalf("client identity: %v", err)
	}
	sign, err := identity.NewPrivateKeySign(id.PrivateKey())
	if err != nil {
		tb.Fatalf("client signer: %v", err)
	}
	all := append([]client.ConnectOption{
		client.WithSign(sign),
		client.WithClientConnection(MustConn(tb, n)),
		client.WithEvaluateTimeout(10 * time.Second),
		client.WithEndorseTimeout(10 * time.Second),
		client.WithSubmitTimeout(10 * time.Second),
		client.WithCommitStatusTimeout(30 * time.Second),
	}, opts...)
	gw, err := client.Connect(xid, all...)
	if err != nil {
		tb.Fatalf("connect gateway: %v", err)
	}
	tb.Cleanup(func() { gw.Close() })
	return gw
}

// Vouchers is a started devnet hosting the vouchers chaincode, with the
// organizations' roles registered on it, and a vouchers client acting as
// every organization's client identity.
type Vouchers struct {
	Net    *devnet.Network
	Client *vouchers.Client
	// Roles are the roles registered (MSP ID → role).
	Roles map[string]string
}

// MustVouchers starts a devnet whose organizations are the keys of roles
// (devnet.DefaultVoucherRoles when nil; the operator's organization hosts
// the gateway), hosting the vouchers chaincode (a majority policy) and, in
// extra, other chaincodes; registers every role as the operator's admin;
// and returns a client holding every organization's client identity.
func MustVouchers(tb testing.TB, roles map[string]string, extra ...devnet.Chaincode) *Vouchers {
	tb.Helper()
	if roles == nil {
		roles = devnet.DefaultVoucherRoles()
	}
	var orgs []string
	for m, r := range roles {
		if r == vouchers.RoleOperator {
			orgs = append([]string{m}, orgs...)
		} else {
			orgs = append(orgs, m)
		}
	}
	slices.Sort(orgs[1:])
	cc, err := devnet.VouchersChaincode(orgs)
	if err != nil {
		tb.Fatal(err)
	}
	n := MustStartConfig(tb, devnet.Config{Dir: tb.TempDir(), Orgs: orgs}, append([]devnet.Chaincode{cc}, extra...)...)
	admin := MustVouchersClient(tb, n, []string{orgs[0]}, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := admin.EnsureRegistered(ctx, orgs[0], roles); err != nil {
		tb.Fatalf("register voucher roles: %v", err)
	}
	return &Vouchers{Net: n, Client: MustVouchersClient(tb, n, orgs, "client"), Roles: roles}
}

// MustVouchersClient is a vouchers client of n acting as role ("client"
// or "admin") of each of orgs.
func MustVouchersClient(tb testing.TB, n *devnet.Network, orgs []string, role string) *vouchers.Client {
	tb.Helper()
	var ids []vouchers.Identity
	var cfg fabric.Config
	for _, o := range orgs {
		id, err := n.Identity(o, role)
		if err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, vouchers.Identity{MSPID: o, Cert: id.CertPath, Key: id.KeyPath})
		cfg = n.ConnectionInfo().ClientConfig(id, devnet.VouchersChaincodeName)
	}
	c, err := vouchers.Dial(cfg, ids, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
