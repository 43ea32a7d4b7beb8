package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/fabric"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/verify"
)

// runVerify audits the journal against every anchor the chain holds: the
// network given by -fabric.*, else the devnet `tani up` runs under
// -data-dir (it must be running). Without either, or when the chain cannot
// be read, it fails unless -chain=skip asks for a database-only audit.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	var cmd ledger.VerifyCommand
	var fcfg fabric.Config
	var dn app.FabricDevnetConfig
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	cmd.RegisterFlags(fs)
	fcfg.RegisterFlags(fs, "fabric.")
	dn.RegisterFlags(fs)
	chainTimeout := fs.Duration("chain-timeout", 2*time.Minute, "how long reading the chain's registration and Anchored events may take")
	if err := parse(fs, args, stderr, env); err != nil {
		return err
	}
	if fcfg.Endpoint == "" {
		dir := app.FabricDevnetDir(cmd.Ledger.DataDir)
		if _, err := os.Stat(dir); err == nil {
			dc := app.DevnetClientConfig(cmd.Ledger.DataDir, dn.Listen)
			dc.EvaluateTimeout, dc.CommitStatusTimeout, dc.Retries = fcfg.EvaluateTimeout, fcfg.CommitStatusTimeout, fcfg.Retries
			fcfg = dc
		} else {
			cmd.NoChain = fmt.Sprintf("no Fabric network is configured: -fabric.endpoint is empty and %s holds no devnet of `tani up`", dir)
		}
	}
	if fcfg.Endpoint != "" && cmd.ChainMode != ledger.ChainSkip {
		where := fmt.Sprintf("%s (channel %s, chaincode %s)", fcfg.Endpoint, fcfg.Channel, fcfg.Chaincode)
		fc, err := fabric.Dial(fcfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})))
		if err != nil {
			cmd.ReadChain = func(context.Context, string) (*ledger.Chain, error) {
				return nil, fmt.Errorf("connect to %s: %w", where, err)
			}
		} else {
			defer fc.Close()
			cmd.ReadChain = func(ctx context.Context, origin string) (*ledger.Chain, error) {
				ctx, cancel := context.WithTimeout(ctx, *chainTimeout)
				defer cancel()
				c, err := anchor.ReadChain(ctx, fc, origin)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
				return c, nil
			}
		}
	}
	return cmd.Run(ctx, stdout, stderr)
}

// runReceipt is `tani receipt verify FILE -key KEYFILE [-fabric.…]`: the
// offline checks, then, when Fabric settings are given (flags or
// TANI_FABRIC_*), the receipt's checkpoint on the auditor's own view of the
// chain. `receipt anchor` is the same but requires the Fabric settings.
func runReceipt(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	const usage = "usage: tani receipt verify FILE -key KEYFILE [-fabric.endpoint HOST:PORT -fabric.msp-id … to check the anchor on the chain]\n" +
		"       tani receipt anchor FILE -key KEYFILE -fabric.endpoint HOST:PORT -fabric.msp-id …"
	if len(args) == 0 || (args[0] != "verify" && args[0] != "anchor") {
		fmt.Fprintln(stderr, usage)
		return errUsage
	}
	sub := args[0]
	var cmd verify.ReceiptCommand
	var fcfg fabric.Config
	fs := flag.NewFlagSet("receipt "+sub, flag.ContinueOnError)
	cmd.RegisterFlags(fs)
	fcfg.RegisterFlags(fs, "fabric.")
	files, err := parseAnywhere(fs, args[1:], stderr, env)
	if err != nil {
		return err
	}
	if len(files) != 1 || cmd.KeyFile == "" || (sub == "anchor" && fcfg.Endpoint == "") {
		fmt.Fprintln(stderr, usage)
		return errUsage
	}
	if fcfg.Endpoint != "" {
		fc, err := fabric.Dial(fcfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})))
		if err != nil {
			return err
		}
		defer fc.Close()
		cmd.Chain = func(ctx context.Context, r *verify.Receipt, v note.Verifier) (*verify.Anchor, error) {
			_, on, err := anchor.VerifyReceipt(ctx, fc, r, v)
			return on, err
		}
	}
	return cmd.Run(ctx, files[0], stdout)
}

// parseAnywhere is parse for commands whose arguments may stand before,
// between or after the flags (`receipt verify FILE -key K`); it returns
// the arguments.
func parseAnywhere(fs *flag.FlagSet, args []string, stderr io.Writer, env Env) ([]string, error) {
	var rest []string
	for {
		if err := parse(fs, args, stderr, env); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
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
	vc, err := devnet.VouchersChaincode(cfg.Orgs)
	if err != nil {
		return err
	}
	return devnet.Serve(ctx, cfg, stdout, stderr, append(devnet.DefaultChaincodes(cfg.Orgs), cc, vc)...)
}
