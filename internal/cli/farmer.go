package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/mobile-api/client"
)

// runFarmer is `tani farmer erase|erasure`: an operator's commands about a
// farmer, through a running Tani's admin API (the erasure is carried out
// by the running modules, so the command asks them rather than the
// database).
func runFarmer(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	if len(args) == 0 || (args[0] != "erase" && args[0] != "erasure") {
		fmt.Fprintln(stderr, "usage: tani farmer erase FARMER_ID -reason TEXT -requested-by NAME [-wait]\n       tani farmer erasure FARMER_ID [-wait]")
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("farmer "+sub, flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "base URL of the running Tani")
	token := fs.String("operator-token", "", "operator bearer token for /admin/v1; empty reads -operator-token-file")
	tokenFile := fs.String("operator-token-file", "./var/operator-token", "file holding the operator token (tani up writes <data-dir>/operator-token)")
	wait := fs.Bool("wait", false, "wait until every owner of farmer data has erased it")
	timeout := fs.Duration("timeout", 10*time.Minute, "with -wait, give up after this long (non-zero exit)")
	asJSON := fs.Bool("json", false, "print the erasure status as JSON")
	var reason, by *string
	if sub == "erase" {
		reason = fs.String("reason", "", "why, e.g. the legal ground and ticket number (journaled: public to auditors; never the farmer's data)")
		by = fs.String("requested-by", "", "the operator asking (journaled)")
	}
	// The farmer id may come before or after the flags.
	rest := args[1:]
	var farmer string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		farmer, rest = rest[0], rest[1:]
	}
	if err := parse(fs, rest, stderr, env); err != nil {
		return err
	}
	if farmer == "" && fs.NArg() == 1 {
		farmer = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if _, err := uuid.Parse(farmer); err != nil {
		fmt.Fprintf(stderr, "tani farmer %s: FARMER_ID must be the farmer's UUID, got %q\n", sub, farmer)
		return errUsage
	}
	if sub == "erase" && (strings.TrimSpace(*reason) == "" || strings.TrimSpace(*by) == "") {
		fmt.Fprintln(stderr, "tani farmer erase: -reason and -requested-by are required (both are journaled)")
		return errUsage
	}
	if *token == "" && *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read operator token: %w", err)
		}
		*token = strings.TrimSpace(string(b))
	}
	if *token == "" {
		return fmt.Errorf("no operator token: give -operator-token or -operator-token-file (%s)", EnvName("operator-token"))
	}
	admin := client.NewAdmin(strings.TrimRight(*base, "/"), *token)
	var e client.Erasure
	var err error
	if sub == "erase" {
		e, err = admin.EraseFarmer(ctx, farmer, *reason, *by)
	} else {
		e, err = admin.FarmerErasure(ctx, farmer)
	}
	if err != nil {
		return err
	}
	if *wait {
		deadline := time.Now().Add(*timeout)
		for !e.Complete() {
			if time.Now().After(deadline) {
				printErasure(stdout, e, *asJSON)
				return fmt.Errorf("erasure %s not complete after %s", e.ErasureID, *timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			if e, err = admin.FarmerErasure(ctx, farmer); err != nil {
				return err
			}
		}
	}
	printErasure(stdout, e, *asJSON)
	return nil
}

func printErasure(w io.Writer, e client.Erasure, asJSON bool) {
	if asJSON {
		b, _ := json.MarshalIndent(e, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "erasure %s of farmer %s: %s\n", e.ErasureID, e.FarmerID, e.State)
	fmt.Fprintf(w, "  requested %s by %s: %s\n", e.RequestedAt.Format(time.RFC3339), e.RequestedBy, e.Reason)
	if e.LeafIndex != nil {
		fmt.Fprintf(w, "  journaled at leaf %d\n", *e.LeafIndex)
	} else {
		fmt.Fprintln(w, "  not journaled yet")
	}
	for _, o := range e.Owners {
		line := fmt.Sprintf("  %-11s %s", o.Owner, o.State)
		if len(o.Erased) > 0 {
			line += " " + string(o.Erased)
		}
		if o.LastError != nil {
			line += fmt.Sprintf(" (attempt %d failed: %s)", o.Attempts, *o.LastError)
		}
		fmt.Fprintln(w, line)
	}
}
