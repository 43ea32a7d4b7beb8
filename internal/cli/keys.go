package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/ledger"
)

// runKeys is `tani keys init DIR`: the secrets a split deployment's
// processes share, created once. Only target all generates keys on its
// own, because a process of a split deployment that made its own would
// silently disagree with the others.
func runKeys(_ context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "usage: tani keys init [-overwrite] [-ledger.origin ORIGIN] DIR")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	fs := flag.NewFlagSet("keys init", flag.ContinueOnError)
	origin := fs.String("ledger.origin", ledger.DefaultOrigin, "the journal's origin; every process must be started with the same -ledger.origin")
	overwrite := fs.Bool("overwrite", false, "replace existing keys (data protected by the old PII key becomes unreadable; tokens and checkpoints signed by the old keys stop verifying)")
	if err := parse(fs, args[1:], stderr, env); err != nil {
		return err
	}
	// DIR may come before the flags too.
	rest := fs.Args()
	if len(rest) > 1 {
		if err := fs.Parse(rest[1:]); err != nil {
			return errUsage
		}
		rest = append(rest[:1], fs.Args()...)
	}
	if len(rest) != 1 {
		fmt.Fprintln(stderr, "usage: tani keys init [-overwrite] [-ledger.origin ORIGIN] DIR")
		return errUsage
	}
	set, err := app.InitKeys(rest[0], *origin, *overwrite)
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "Created the shared keys of this deployment in %s (secrets are mode 0600: keep them so, and back them up —\nlosing pii.key makes every stored phone number unreadable):\n\n", set.Dir)
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, k := range app.SharedKeys(set.Origin) {
		fmt.Fprintf(w, "  %s\t%s\n", k.File, k.Name)
	}
	fmt.Fprintf(w, "  %s\tthe journal's public key (%s), for auditors, banks and distributors\n", ledger.PublicKeyFile, set.Origin)
	w.Flush()

	fmt.Fprintln(stdout, "\nStart every `tani up` process of the deployment with these flags, or the environment variables beside them:")
	fmt.Fprintln(stdout)
	w = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, f := range set.Flags() {
		name, value, _ := strings.Cut(strings.TrimPrefix(f, "-"), "=")
		fmt.Fprintf(w, "  %s\t%s=%s\n", f, EnvName(name), value)
	}
	w.Flush()
	fmt.Fprintf(stdout, "\nPublish %s: receipts are checked with `tani receipt verify RECEIPT --key %s`.\n", set.PublicKey, set.PublicKey)
	return nil
}
