// Package devnettest starts devnets and official fabric-gateway clients for
// tests in other packages. Every helper registers its own cleanup.
//
// It must never be imported by non-test code.
package devnettest

import (
	"context"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tani-platform/tani/ledger/devnet"
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
