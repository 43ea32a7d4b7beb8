// Command tani-chaincode serves one of Tani's chaincodes as
// chaincode-as-a-service for real Fabric peers: the anchor chaincode
// (ledger/chaincode, the default) or the vouchers chaincode
// (ledger/chaincode/vouchers), chosen by -chaincode or TANI_CHAINCODE. It is
// configured by the CHAINCODE_* environment variables the CCaaS builder
// passes (see chaincode.ServerConfigFromEnv) and logs only to stderr. Each
// chaincode runs in its own process, at its own address, under its own
// package ID.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"

	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/chaincode/vouchers"
)

// contracts are the chaincodes this program can serve, by name.
var contracts = map[string]func() (shim.Chaincode, error){
	"anchor":   func() (shim.Chaincode, error) { return chaincode.New() },
	"vouchers": func() (shim.Chaincode, error) { return vouchers.New() },
}

func main() {
	fs := flag.NewFlagSet("tani-chaincode", flag.ContinueOnError)
	def := os.Getenv("TANI_CHAINCODE")
	if def == "" {
		def = "anchor"
	}
	name := fs.String("chaincode", def, "chaincode to serve: anchor or vouchers (default from TANI_CHAINCODE, else anchor)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	newCC, ok := contracts[*name]
	if !ok {
		fmt.Fprintf(os.Stderr, "tani-chaincode: unknown chaincode %q (anchor or vouchers)\n", *name)
		os.Exit(2)
	}
	cfg, err := chaincode.ServerConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tani-chaincode:", err)
		os.Exit(2)
	}
	cc, err := newCC()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tani-chaincode:", err)
		os.Exit(1)
	}
	srv, err := chaincode.NewServerFor(cfg, cc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tani-chaincode:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "tani-chaincode: serving %s as %s on %s (TLS %v)\n", *name, cfg.CCID, cfg.Address, !cfg.TLSDisabled)
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "tani-chaincode:", err)
		os.Exit(1)
	}
}
