package cli

import (
	"context"
	"flag"
	"io"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/verify"
)

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	var cmd ledger.VerifyCommand
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	cmd.RegisterFlags(fs)
	if err := parse(fs, args, stderr, env); err != nil {
		return err
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
	return devnet.Serve(ctx, cfg, stdout, stderr)
}
