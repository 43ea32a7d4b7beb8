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

	"golang.org/x/mod/sumdb/note"
)

// ReceiptCommand is `tani receipt verify FILE -key KEYFILE`: it checks a
// receipt, or an evidence bundle (many receipts in one checkpoint, see
// Bundle), and prints what it proves and how far it was checked, so that
// nobody takes an offline check for a check against the chain. It returns
// an error naming the failed check otherwise, so that the caller can exit
// non-zero.
type ReceiptCommand struct {
	// KeyFile holds the log's public note verifier key.
	KeyFile string
	// Chain, when set, checks the receipt's checkpoint on the chain after
	// the offline checks and returns where the chain holds it
	// (anchor.VerifyReceipt). The caller that knows the network sets it
	// when Fabric settings are given; this package never reaches a network.
	Chain func(ctx context.Context, r *Receipt, v note.Verifier) (*Anchor, error)
}

// RegisterFlags registers -key.
func (c *ReceiptCommand) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.KeyFile, "key", "", "file holding the log's public note verifier key (origin+hash+base64)")
}

// Run verifies the receipt in file and reports.
func (c *ReceiptCommand) Run(ctx context.Context, file string, stdout io.Writer) error {
	if c.KeyFile == "" {
		return errors.New("receipt verify: -key is required")
	}
	key, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(key)))
	if err != nil {
		return fmt.Errorf("log public key: %w", err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read receipt: %w", err)
	}
	if IsBundle(data) {
		return c.runBundle(ctx, file, data, v, stdout)
	}
	r, err := ParseReceipt(data)
	if err != nil {
		return fmt.Errorf("receipt %s: %w", file, err)
	}
	res, err := r.Verify(v)
	if err != nil {
		return fmt.Errorf("receipt %s does not verify: %w", file, err)
	}
	var on *Anchor
	if c.Chain != nil {
		if on, err = c.Chain(ctx, r, v); err != nil {
			return fmt.Errorf("receipt %s: its signature and inclusion proof verify, but its anchor does not: %w", file, err)
		}
	}
	e := res.Entry
	fmt.Fprintf(stdout, "OK: %s entry for record %s revision %d is leaf %d of %s tree size %d (root %s)\n",
		e.Type, e.RecordID, e.Revision, res.LeafIndex, res.Origin, res.TreeSize, base64.StdEncoding.EncodeToString(res.Root))
	switch {
	case on != nil:
		fmt.Fprintf(stdout, "checked: the log's signature, the inclusion proof, and the checkpoint on the chain (channel %s, chaincode %s)\n", on.Channel, on.Chaincode)
		named := "as the receipt names"
		if r.Anchor == nil {
			named = "though the receipt names no anchor (it was issued before the checkpoint was anchored)"
		}
		fmt.Fprintf(stdout, "anchor: the chain holds this checkpoint in tx %s, block %d, %s\n", on.TxID, on.BlockNumber, named)
	case r.Anchor != nil:
		fmt.Fprintln(stdout, "checked: the log's signature and the inclusion proof only; the chain was NOT consulted (give -fabric.* settings to check the anchor)")
		fmt.Fprintf(stdout, "anchor: the receipt names tx %s, block %d on channel %s, chaincode %s (not checked)\n", r.Anchor.TxID, r.Anchor.BlockNumber, r.Anchor.Channel, r.Anchor.Chaincode)
	default:
		fmt.Fprintln(stdout, "checked: the log's signature and the inclusion proof only; the chain was NOT consulted (give -fabric.* settings to look the checkpoint up on the chain)")
		fmt.Fprintln(stdout, "anchor: none: the receipt's checkpoint was not anchored on Fabric when the receipt was issued")
	}
	return nil
}

// runBundle verifies an evidence bundle and reports.
func (c *ReceiptCommand) runBundle(ctx context.Context, file string, data []byte, v note.Verifier, stdout io.Writer) error {
	b, err := ParseBundle(data)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", file, err)
	}
	res, err := b.Verify(v)
	if err != nil {
		return fmt.Errorf("bundle %s does not verify: %w", file, err)
	}
	var on *Anchor
	if c.Chain != nil && len(b.Items) > 0 {
		// Every item proves into the one checkpoint: one look at the
		// chain covers them all.
		if on, err = c.Chain(ctx, b.Receipt(0), v); err != nil {
			return fmt.Errorf("bundle %s: its signature, inclusion proofs and payloads verify, but its anchor does not: %w", file, err)
		}
	}
	fmt.Fprintf(stdout, "OK: evidence bundle (%s) of %d entries, every one a leaf of %s tree size %d (root %s)\n",
		b.Subject, len(b.Items), res.Origin, res.TreeSize, base64.StdEncoding.EncodeToString(res.Root))
	for i, e := range res.Entries {
		payload := "payload matches its hash"
		if b.Items[i].Payload == nil {
			payload = "payload redacted"
		}
		fmt.Fprintf(stdout, "  leaf %d: %s %s revision %d (%s)\n", b.Items[i].LeafIndex, e.Kind, e.RecordID, e.Revision, payload)
	}
	switch {
	case len(b.Items) == 0:
		fmt.Fprintln(stdout, "checked: the log's signature only; the bundle holds no entries")
	case on != nil:
		fmt.Fprintf(stdout, "checked: the log's signature, every inclusion proof and payload hash, and the checkpoint on the chain (channel %s, chaincode %s)\n", on.Channel, on.Chaincode)
		named := "as the bundle names"
		if b.Anchor == nil {
			named = "though the bundle names no anchor (it was issued before the checkpoint was anchored)"
		}
		fmt.Fprintf(stdout, "anchor: the chain holds this checkpoint in tx %s, block %d, %s\n", on.TxID, on.BlockNumber, named)
	case b.Anchor != nil:
		fmt.Fprintln(stdout, "checked: the log's signature, every inclusion proof and payload hash only; the chain was NOT consulted (give -fabric.* settings to check the anchor)")
		fmt.Fprintf(stdout, "anchor: the bundle names tx %s, block %d on channel %s, chaincode %s (not checked)\n", b.Anchor.TxID, b.Anchor.BlockNumber, b.Anchor.Channel, b.Anchor.Chaincode)
	default:
		fmt.Fprintln(stdout, "checked: the log's signature, every inclusion proof and payload hash only; the chain was NOT consulted (give -fabric.* settings to look the checkpoint up on the chain)")
		fmt.Fprintln(stdout, "anchor: none: the bundle's checkpoint was not anchored on Fabric when the bundle was issued")
	}
	return nil
}
