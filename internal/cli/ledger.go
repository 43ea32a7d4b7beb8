package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

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

// runReceipt needs no configuration for `verify`: a receipt and a public key
// are all an auditor has, so it reads neither flags' environment nor a
// database. `anchor` additionally checks the receipt's Fabric anchor on the
// auditor's own view of the chain (-fabric.*).
func runReceipt(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	if len(args) > 0 && args[0] == "anchor" {
		return runReceiptAnchor(ctx, args[1:], stdout, stderr, env)
	}
	return verify.RunReceiptCommand(ctx, args, stdout, stderr)
}

// runReceiptAnchor is `tani receipt anchor FILE -key KEYFILE -fabric.…`:
// the offline checks of `receipt verify`, then that the chain holds the
// receipt's checkpoint in the transaction and block its anchor names.
func runReceiptAnchor(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	fs := flag.NewFlagSet("receipt anchor", flag.ContinueOnError)
	keyFile := fs.String("key", "", "file holding the log's public note verifier key (origin+hash+base64)")
	var fcfg fabric.Config
	fcfg.RegisterFlags(fs, "fabric.")
	if err := parse(fs, args, stderr, env); err != nil {
		return err
	}
	if fs.NArg() != 1 || *keyFile == "" || fcfg.Endpoint == "" {
		fmt.Fprintln(stderr, "usage: tani receipt anchor FILE -key KEYFILE -fabric.endpoint HOST:PORT -fabric.msp-id … (flags before FILE)")
		return errUsage
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(key)))
	if err != nil {
		return fmt.Errorf("log public key: %w", err)
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("read receipt: %w", err)
	}
	r, err := verify.ParseReceipt(data)
	if err != nil {
		return err
	}
	fc, err := fabric.Dial(fcfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer fc.Close()
	res, err := anchor.VerifyReceipt(ctx, fc, r, v)
	if err != nil {
		return fmt.Errorf("receipt %s: %w", fs.Arg(0), err)
	}
	fmt.Fprintf(stdout, "OK: leaf %d of %s tree size %d, anchored on %s/%s in tx %s, block %d\n",
		res.LeafIndex, res.Origin, res.TreeSize, r.Anchor.Channel, r.Anchor.Chaincode, r.Anchor.TxID, r.Anchor.BlockNumber)
	return nil
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
