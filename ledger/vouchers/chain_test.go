package vouchers_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/localnet/localnettest"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// chain is one Fabric network as the voucher scenarios see it: the
// vouchers client acting as the bank, the distributor and Tani, and the
// official gateway client's contract as each organization's client
// identity, for transactions the vouchers client would never send (too
// few endorsements).
type chain struct {
	name                 string
	client               *vouchers.Client
	raw                  map[string]*client.Contract
	operator, bank, dist string
	// sync waits until every peer has what the gateway's peer committed
	// (nil for the devnet, whose peers share one state).
	sync func(t *testing.T)
	// lagging: peers may lag and cannot be waited for (a network given
	// only by a gateway); endorsements naming other organizations are
	// tried again for a while.
	lagging bool
}

func (c chain) wait(t *testing.T) {
	t.Helper()
	if c.sync != nil {
		c.sync(t)
	}
}

// devnetChain is a fresh devnet with the default organizations.
func devnetChain(t *testing.T) chain {
	t.Helper()
	v := devnettest.MustVouchers(t, nil)
	raw := map[string]*client.Contract{}
	for _, org := range v.Net.Orgs() {
		raw[org] = devnettest.MustGateway(t, v.Net, org).GetNetwork(v.Net.Channel()).GetContract(vouchers.DefaultChaincode)
	}
	return chain{name: "devnet", client: v.Client, raw: raw, operator: "TaniMSP", bank: "BankMSP", dist: "DistributorMSP"}
}

// fabricChain is the suite's real Fabric network (skipped without one),
// through TaniMSP's peer, as every organization's client (User1).
func fabricChain(t *testing.T) chain {
	t.Helper()
	n := localnettest.Shared(t)
	gw := n.ClientConfig("TaniMSP")
	gw.Chaincode = n.C.VouchersChaincode()
	orgs := []string{"TaniMSP", "BankMSP", "DistributorMSP"}
	var ids []vouchers.Identity
	raw := map[string]*client.Contract{}
	for _, org := range orgs {
		cert, key := n.C.ClientPaths(org)
		ids = append(ids, vouchers.Identity{MSPID: org, Cert: cert, Key: key})
		cfg := gw
		cfg.MSPID, cfg.Cert, cfg.Key = org, cert, key
		raw[org] = mustRawGateway(t, cfg).GetNetwork(gw.Channel).GetContract(gw.Chaincode)
	}
	c, err := vouchers.Dial(gw, ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return chain{name: "fabric", client: c, raw: raw, operator: "TaniMSP", bank: "BankMSP", dist: "DistributorMSP",
		sync: func(t *testing.T) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := n.WaitSynced(ctx); err != nil {
				t.Fatal(err)
			}
		}}
}

// mustRawGateway connects the official Go gateway client as cfg's
// identity, TLS verified against cfg's CA.
func mustRawGateway(t *testing.T, cfg fabric.Config) *client.Gateway {
	t.Helper()
	caPEM, err := os.ReadFile(cfg.TLSCACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: cfg.ServerName})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	certPEM, err := os.ReadFile(cfg.Cert)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.CertificateFromPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.NewX509Identity(cfg.MSPID, cert)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := cfg.Key
	if st, err := os.Stat(keyPath); err == nil && st.IsDir() {
		m, _ := filepath.Glob(filepath.Join(keyPath, "*"))
		if len(m) != 1 {
			t.Fatalf("keystore %s holds %d files", keyPath, len(m))
		}
		keyPath = m[0]
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.PrivateKeyFromPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(conn),
		client.WithEvaluateTimeout(30*time.Second), client.WithEndorseTimeout(30*time.Second),
		client.WithSubmitTimeout(30*time.Second), client.WithCommitStatusTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw
}
