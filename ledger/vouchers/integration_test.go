//go:build fabric_integration

package vouchers_test

// The fabric_integration suite runs the voucher scenarios and the
// projection against any Fabric network with the vouchers chaincode
// deployed and the roles registered (deploy/fabric/README.md), given only
// a gateway and the parties' client identities:
//
//	FABRIC_GATEWAY_ENDPOINT=peer0.org1.example.com:7051 FABRIC_TLS_CA_CERT=.../tlsca.pem \
//	FABRIC_VOUCHERS_IDENTITIES=Org1MSP=.../User1@org1/msp,Org2MSP=.../User1@org2/msp,Org3MSP=.../User1@org3/msp \
//	FABRIC_VOUCHERS_OPERATOR=Org1MSP FABRIC_VOUCHERS_BANK=Org2MSP FABRIC_VOUCHERS_DISTRIBUTOR=Org3MSP \
//	go test -tags fabric_integration -run Integration ./ledger/vouchers
//
// FABRIC_SERVER_NAME, FABRIC_CHANNEL (default tani) and FABRIC_VOUCHERS_CHAINCODE
// (default vouchers) are optional; the roles default to TaniMSP, BankMSP
// and DistributorMSP. Postgres is needed for the projection.

import (
	"os"
	"testing"

	"github.com/hyperledger/fabric-gateway/pkg/client"

	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/vouchers"
)

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func integrationChain(t *testing.T) chain {
	t.Helper()
	gw := fabric.Config{
		Endpoint: os.Getenv("FABRIC_GATEWAY_ENDPOINT"), ServerName: os.Getenv("FABRIC_SERVER_NAME"),
		TLSCACert: os.Getenv("FABRIC_TLS_CA_CERT"), Channel: getenv("FABRIC_CHANNEL", "tani"),
		Chaincode: getenv("FABRIC_VOUCHERS_CHAINCODE", vouchers.DefaultChaincode), Retries: fabric.DefaultRetries,
	}
	ids, err := vouchers.Config{Identities: os.Getenv("FABRIC_VOUCHERS_IDENTITIES")}.ParseIdentities()
	if err != nil {
		t.Fatal(err)
	}
	if gw.Endpoint == "" || len(ids) == 0 {
		t.Skip("set FABRIC_GATEWAY_ENDPOINT and FABRIC_VOUCHERS_IDENTITIES to run against a real network")
	}
	c := chain{name: "integration", raw: map[string]*client.Contract{}, lagging: true,
		operator: getenv("FABRIC_VOUCHERS_OPERATOR", "TaniMSP"), bank: getenv("FABRIC_VOUCHERS_BANK", "BankMSP"),
		dist: getenv("FABRIC_VOUCHERS_DISTRIBUTOR", "DistributorMSP")}
	for _, id := range ids {
		cfg := gw
		cfg.MSPID, cfg.Cert, cfg.Key = id.MSPID, id.Cert, id.Key
		c.raw[id.MSPID] = mustRawGateway(t, cfg).GetNetwork(gw.Channel).GetContract(gw.Chaincode)
	}
	for _, m := range []string{c.operator, c.bank, c.dist} {
		if c.raw[m] == nil {
			t.Fatalf("FABRIC_VOUCHERS_IDENTITIES has no identity of %s", m)
		}
	}
	if c.client, err = vouchers.Dial(gw, ids, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.client.Close() })
	return c
}

func TestIntegrationScenarios(t *testing.T)  { runScenarios(t, integrationChain(t)) }
func TestIntegrationProjection(t *testing.T) { runProjection(t, integrationChain(t), false) }
