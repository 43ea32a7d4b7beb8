package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/vouchers"
)

const vouchersUsage = `usage: tani vouchers register -msp MSPID -role operator|bank|distributor -fabric.… (an organization admin's identity)
       tani vouchers organization MSPID -fabric.…
       tani vouchers get VOUCHER_ID -fabric.…`

// runVouchers is `tani vouchers ...`: the vouchers chaincode from the
// command line, as the -fabric.* identity: registering an organization's
// role (what `tani network up` does for a local consortium; in production
// an admin of any member runs it, and a majority of the consortium
// endorses it), and reading the chain.
func runVouchers(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	if len(args) == 0 || (args[0] != "register" && args[0] != "organization" && args[0] != "get") {
		fmt.Fprintln(stderr, vouchersUsage)
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("vouchers "+sub, flag.ContinueOnError)
	var fcfg fabric.Config
	fcfg.RegisterFlags(fs, "fabric.")
	var vcfg vouchers.Config
	vcfg.RegisterFlags(fs, "vouchers.")
	var msp, role *string
	if sub == "register" {
		msp = fs.String("msp", "", "MSP ID of the organization to register")
		role = fs.String("role", "", "its role: operator, bank or distributor")
	}
	rest, err := parseAnywhere(fs, args[1:], stderr, env)
	if err != nil {
		return err
	}
	if fcfg.Endpoint == "" || (sub == "register" && (len(rest) != 0 || *msp == "" || *role == "")) || (sub != "register" && len(rest) != 1) {
		fmt.Fprintln(stderr, vouchersUsage)
		return errUsage
	}
	fcfg.Chaincode = vcfg.Chaincode
	c, err := vouchers.Dial(fcfg, []vouchers.Identity{{MSPID: fcfg.MSPID, Cert: fcfg.Cert, Key: fcfg.Key}},
		slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return err
	}
	defer c.Close()
	var out any
	switch sub {
	case "register":
		out, err = c.RegisterOrganization(ctx, fcfg.MSPID, *msp, strings.TrimSpace(*role))
	case "organization":
		var o *vouchers.Organization
		if o, err = c.Organization(ctx, rest[0]); err == nil && o == nil {
			return fmt.Errorf("%s is not registered for vouchers", rest[0])
		}
		out = o
	case "get":
		out, err = c.Get(ctx, rest[0])
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
