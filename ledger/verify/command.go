package verify

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// RunReceiptCommand implements `tani receipt verify FILE --key KEYFILE`.
// args start after "receipt". It prints what the receipt proves to stdout and
// returns an error naming the failed check otherwise, so that the caller can
// exit non-zero.
func RunReceiptCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: tani receipt verify FILE --key KEYFILE")
		return errors.New("receipt: unknown or missing subcommand (want verify)")
	}
	fs := flag.NewFlagSet("receipt verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "file holding the log's public note verifier key (origin+hash+base64)")
	// Accept the file before or after the flags.
	var files []string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		rest = fs.Args()
		if len(rest) > 0 {
			files = append(files, rest[0])
			rest = rest[1:]
		}
	}
	if len(files) != 1 || *keyFile == "" {
		fmt.Fprintln(stderr, "usage: tani receipt verify FILE --key KEYFILE")
		return errors.New("receipt verify: want exactly one FILE and --key")
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return fmt.Errorf("read receipt: %w", err)
	}
	res, err := VerifyReceipt(data, strings.TrimSpace(string(key)))
	if err != nil {
		return fmt.Errorf("receipt %s does not verify: %w", files[0], err)
	}
	e := res.Entry
	fmt.Fprintf(stdout, "OK: %s entry for record %s revision %d is leaf %d of %s tree size %d (root %s)\n",
		e.Type, e.RecordID, e.Revision, res.LeafIndex, res.Origin, res.TreeSize, base64.StdEncoding.EncodeToString(res.Root))
	return nil
}
