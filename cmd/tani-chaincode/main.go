// Command tani-chaincode serves the anchor chaincode (ledger/chaincode) as
// chaincode-as-a-service for real Fabric peers. It is configured by the
// CHAINCODE_* environment variables the CCaaS builder passes (see
// chaincode.ServerConfigFromEnv) and logs only to stderr.
package main

import (
	"fmt"
	"os"

	"github.com/tani-platform/tani/ledger/chaincode"
)

func main() {
	cfg, err := chaincode.ServerConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tani-chaincode:", err)
		os.Exit(2)
	}
	srv, err := chaincode.NewServer(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tani-chaincode:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "tani-chaincode: serving %s on %s (TLS %v)\n", cfg.CCID, cfg.Address, !cfg.TLSDisabled)
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "tani-chaincode:", err)
		os.Exit(1)
	}
}
