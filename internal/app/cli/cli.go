package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"strings"
)

// Env looks up environment variables (os.Getenv in main, a map in tests).
type Env func(string) string

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error
}

var commands = map[string]command{
	"up":       {"run Tani's modules (default target: all)", runUp},
	"migrate":  {"apply every database migration and exit", runMigrate},
	"version":  {"print the version", runVersion},
	"verify":   {"audit the journal against every anchor on the chain: recompute the tree, check every checkpoint; non-zero exit on any fault", runVerify},
	"devnet":   {"run the single-process Fabric development network (gateway and deliver gRPC)", runDevnet},
	"network":  {"network init|up|down|status|members|propose|vote|apply|proposals: create, run and govern the Fabric consortium", runNetwork},
	"receipt":  {"receipt verify FILE --key KEYFILE [-fabric.…]: check a receipt offline and, given Fabric settings, on the chain", runReceipt},
	"keys":     {"keys init DIR: create the keys every process of a split deployment shares (PII, token signing, operator token, ledger)", runKeys},
	"load":     {"send signed records to a running Tani and report throughput and latency; -ratio: the capture path against Postgres COPY and INSERT, interleaved, as ratios", runLoad},
	"farmer":   {"farmer erase ID -reason … -requested-by …: forget a farmer everywhere; farmer erasure ID: its progress", runFarmer},
	"vouchers": {"vouchers register|organization|get: register an organization's voucher role, read the vouchers chaincode (-fabric.…)", runVouchers},
}

// errUsage is returned after usage has been printed for a bad invocation.
var errUsage = errors.New("usage")

// Main runs the command line and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tani: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:], stdout, stderr, env)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "tani %s: %v\n", args[0], err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "tani — the Tani data platform for smallholder agriculture")
	fmt.Fprintln(w, "\nUsage: tani <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `tani <command> --help` for its flags. Every flag can also be set as TANI_<FLAG>,\nupper-cased with . and - as _ (e.g. -database.url is TANI_DATABASE_URL).")
}

// EnvName is the environment variable that sets a flag.
func EnvName(flagName string) string {
	return "TANI_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(flagName))
}

// parse parses args, then fills every flag not given on the command line
// from its TANI_* variable. Flags win over the environment.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer, env Env) error {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tani %s [flags]\n\nFlags (each also settable from the environment variable shown):\n", fs.Name())
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %q)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  -%s  [%s]\n      %s%s\n", f.Name, EnvName(f.Name), f.Usage, def)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := env(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parse(fs, args, stderr, env); err != nil {
		return err
	}
	rev := "unknown"
	goVersion := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "tani %s (revision %s, %s)\n", Version, rev, goVersion)
	return nil
}
