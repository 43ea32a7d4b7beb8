package app

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/fabric"
)

// devnetAnchorOrg is the devnet organization whose admin identity Tani
// anchors as: registering the journal's key needs an admin.
const devnetAnchorOrg = "TaniMSP"

// FabricDevnetConfig configures the in-process devnet `tani up` runs when no
// external Fabric endpoint is configured.
type FabricDevnetConfig struct {
	Listen string
}

// RegisterFlags registers -fabric.devnet-listen.
func (c *FabricDevnetConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "fabric.devnet-listen", devnet.DefaultListen, "gRPC address of the in-process Fabric devnet (used when -fabric.endpoint is empty)")
}

// FabricDevnetDir is where the in-process devnet keeps its crypto material
// and blocks under the data directory.
func FabricDevnetDir(dataDir string) string { return filepath.Join(dataDir, "fabric") }

// DevnetClientConfig is the client configuration for the devnet that
// `tani up` runs under dataDir on listen, for another process (`tani
// verify`). The paths follow the devnet's documented cryptogen layout.
func DevnetClientConfig(dataDir, listen string) fabric.Config {
	org := filepath.Join(FabricDevnetDir(dataDir), "crypto", devnetAnchorOrg)
	msp := filepath.Join(org, "users", "User1", "msp")
	return fabric.Config{
		Endpoint: listen, ServerName: "localhost", TLSCACert: filepath.Join(org, "tlsca", "ca.crt"),
		MSPID: devnetAnchorOrg, Cert: filepath.Join(msp, "signcerts", "cert.pem"), Key: filepath.Join(msp, "keystore", "priv_sk"),
		Channel: devnet.DefaultChannel, Chaincode: fabric.DefaultChaincode,
	}
}

// AnchorChaincode is the anchor contract as the devnet hosts it, endorsed by
// a majority of orgs (2 of Tani, Bank and Distributor by default).
func AnchorChaincode(orgs []string) (devnet.Chaincode, error) {
	cc, err := chaincode.New()
	if err != nil {
		return devnet.Chaincode{}, err
	}
	if len(orgs) == 0 {
		orgs = devnet.DefaultOrgs
	}
	return devnet.Chaincode{Name: fabric.DefaultChaincode, Policy: devnet.MajorityPolicy(orgs), CC: cc}, nil
}

func (a *App) initFabricDevnet() (Service, error) {
	if a.cfg.Fabric.Endpoint != "" {
		return nil, nil // a real network: nothing to run here
	}
	cc, err := AnchorChaincode(nil)
	if err != nil {
		return nil, err
	}
	vc, err := devnet.VouchersChaincode(nil)
	if err != nil {
		return nil, err
	}
	vc.Name = a.cfg.Vouchers.Chaincode
	n, err := devnet.New(devnet.Config{
		Dir: FabricDevnetDir(a.cfg.DataDir), Listen: a.cfg.FabricDevnet.Listen,
		Channel: a.cfg.Fabric.Channel, Logger: a.logger, // the devnet tags its logs module=devnet
	}, cc, vc)
	if err != nil {
		return nil, err
	}
	return funcService{
		start: func(ctx context.Context) error {
			if err := n.Start(ctx); err != nil {
				return fmt.Errorf("start fabric devnet: %w", err)
			}
			a.devnet = n
			return nil
		},
		stop: n.Stop,
	}, nil
}

func (a *App) initAnchor() (Service, error) {
	logger := a.logger.With("module", Anchor)
	cfg := a.cfg.Anchor
	// One listener position per chain: block numbers of the devnet mean
	// nothing on a real network, and vice versa.
	chain := "devnet"
	if e := a.cfg.Fabric.Endpoint; e != "" {
		chain = strings.NewReplacer(":", "_", "/", "_").Replace(e)
	}
	cfg.EventCheckpointFile = filepath.Join(FabricDevnetDir(a.cfg.DataDir), "anchor-events-"+chain+"-"+a.cfg.Fabric.Channel+".json")
	var fc *fabric.Client
	var anchorer *anchor.Anchorer
	return funcService{
		start: func(ctx context.Context) error {
			fcfg := a.cfg.Fabric
			if a.devnet != nil {
				id, err := a.devnet.Identity(devnetAnchorOrg, "admin")
				if err != nil {
					return err
				}
				dc := a.devnet.ConnectionInfo().ClientConfig(id, fcfg.Chaincode)
				dc.EvaluateTimeout, dc.EndorseTimeout, dc.SubmitTimeout = fcfg.EvaluateTimeout, fcfg.EndorseTimeout, fcfg.SubmitTimeout
				dc.CommitStatusTimeout, dc.Retries = fcfg.CommitStatusTimeout, fcfg.Retries
				fcfg = dc
			}
			var err error
			if fc, err = fabric.Dial(fcfg, logger); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(cfg.EventCheckpointFile), 0o700); err != nil {
				fc.Close()
				return fmt.Errorf("anchor: %w", err)
			}
			anchorer = anchor.New(cfg, a.journal, fc, logger)
			logger.InfoContext(ctx, "anchoring checkpoints", "endpoint", fcfg.Endpoint, "channel", fcfg.Channel, "chaincode", fcfg.Chaincode, "msp_id", fcfg.MSPID)
			// Hold the journal to the chain before the process is ready: a
			// history rewritten while Tani was down halts it now, not at the
			// first anchoring pass. A fork halts the journal (the process
			// runs and /readyz says why); an unreachable chain is retried
			// by every pass of the loop.
			// One query's time at most: a chain that is down must not hold
			// the whole process back through every retry.
			wait := fcfg.EvaluateTimeout
			if wait <= 0 {
				wait = fabric.DefaultEvaluateTimeout
			}
			cctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			if _, err := anchorer.CheckJournal(cctx); err != nil && a.journal.Halted() == nil {
				logger.WarnContext(ctx, "could not check the journal against the chain at start; the anchoring loop retries", "err", err)
			}
			return nil
		},
		run: func(ctx context.Context) error { return anchorer.Run(ctx) },
		stop: func(context.Context) error {
			return fc.Close()
		},
	}, nil
}
