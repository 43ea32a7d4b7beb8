package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/fabric"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/verify"
)

// runVerify audits the journal and checks every Fabric anchor against the
// chain: the network given by -fabric.*, else the devnet `tani up` runs
// under -data-dir (it must be running). Without either, anchored
// checkpoints are reported as unchecked.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	var cmd ledger.VerifyCommand
	var fcfg fabric.Config
	var dn app.FabricDevnetConfig
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	cmd.RegisterFlags(fs)
	fcfg.RegisterFlags(fs, "fabric.")
	dn.RegisterFlags(fs)
	if err := parse(fs, args, stderr, env); err != nil {
		return err
	}
	if fcfg.Endpoint == "" {
		if _, err := os.Stat(app.FabricDevnetDir(cmd.Ledger.DataDir)); err == nil {
			dc := app.DevnetClientConfig(cmd.Ledger.DataDir, dn.Listen)
			dc.EvaluateTimeout, dc.CommitStatusTimeout, dc.Retries = fcfg.EvaluateTimeout, fcfg.CommitStatusTimeout, fcfg.Retries
			fcfg = dc
		}
	}
	if fcfg.Endpoint != "" {
		fc, err := fabric.Dial(fcfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			return fmt.Errorf("verify anchors: %w", err)
		}
		defer fc.Close()
		cmd.CheckAnchor = anchor.Check(fc)
	}
	return cmd.Run(ctx, stdout, stderr)
}

// runReceipt needs no configuration: a receipt and a public key are all an
// auditor has, so it reads neither flags' environment nor a database.
func runReceipt(ctx context.Context, args []string, stdout, stderr io.Writer, _ Env) error {
	return verify.RunReceiptCommand(ctx, args, stdout, stderr)
}

func runDevnet(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	var cfg devnet.Config
	fs := flag.NewFlagSet("devnet", flag.ContinueOnError)
	cfg.RegisterFlags(fs, "")
	if err := parse(fs, args, stderr, env); err != nil {
		return err
	}
	cc, err := app.AnchorChaincode(cfg.Orgs)
	if err != nil {
		return err
	}
	return devnet.Serve(ctx, cfg, stdout, stderr, append(devnet.DefaultChaincodes(cfg.Orgs), cc)...)
}
