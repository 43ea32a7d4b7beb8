package ledger

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/term"

	"github.com/tani-platform/tani/internal/postgres"
)

// Chain modes of `tani verify` (-chain).
const (
	// ChainRequire fails the audit unless the chain was consulted: without
	// it, an attacker with write access to the database who deletes the
	// checkpoints above a truncation or a rewrite, or the anchor references,
	// leaves a journal that agrees with itself.
	ChainRequire = "require"
	// ChainSkip audits the database against itself only, and says so.
	ChainSkip = "skip"
)

// VerifyCommand is `tani verify`: it reads every anchor the chain holds for
// the journal's origin, audits the journal in the configured database
// against them (see Audit), prints every fault and a summary naming the
// first bad index, and returns an error when anything is wrong, or when the
// chain was required and not consulted, so the caller exits non-zero. On a
// terminal it draws a progress bar on stderr.
type VerifyCommand struct {
	DB      postgres.Config
	Ledger  Config
	KeyFile string // the log's public verifier key; default: from the signer key
	// ChainMode is ChainRequire (the default) or ChainSkip.
	ChainMode string
	// ReadChain reads every anchor the chain holds for origin
	// (anchor.ReadChain on the configured network); the caller that knows
	// the network sets it. Nil means no chain is configured, and NoChain
	// says why.
	ReadChain func(ctx context.Context, origin string) (*Chain, error)
	NoChain   string
}

// RegisterFlags registers the command's flags: the database, the ledger's
// key settings, -data-dir (where `tani up` generated the key), -key and
// -chain.
func (c *VerifyCommand) RegisterFlags(fs *flag.FlagSet) {
	c.DB.RegisterFlags(fs)
	c.Ledger.RegisterFlags(fs)
	fs.StringVar(&c.Ledger.DataDir, "data-dir", "./var", "the data directory of `tani up` (holds the generated ledger key pair)")
	fs.StringVar(&c.KeyFile, "key", "", "file holding the log's public note verifier key; default: derived from -ledger.key-file or the data directory's key pair")
	fs.StringVar(&c.ChainMode, "chain", ChainRequire, "require: check the journal against every anchor on the Fabric chain and fail when the chain cannot be read; "+
		"skip: audit the database against itself only (it cannot see truncation, rollback or deleted checkpoints and anchor references)")
}

// Run audits and reports.
func (c *VerifyCommand) Run(ctx context.Context, stdout, stderr io.Writer) error {
	mode := c.ChainMode
	if mode == "" {
		mode = ChainRequire
	}
	if mode != ChainRequire && mode != ChainSkip {
		return fmt.Errorf("-chain=%q: want %s or %s", mode, ChainRequire, ChainSkip)
	}
	verifier, err := auditVerifier(c.Ledger, c.KeyFile)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, err := postgres.Open(ctx, c.DB, logger)
	if err != nil {
		return err
	}
	defer pool.Close()

	// The chain first: every anchor read now had its checkpoint and entries
	// committed before the audit's snapshot begins.
	var chain *Chain
	var chainErr error
	switch {
	case mode == ChainSkip:
		fmt.Fprintln(stdout, "chain: NOT consulted (-chain=skip): the database is checked against itself only; truncation, rollback and deleted checkpoints or anchor references go unseen")
	case c.ReadChain == nil:
		chainErr = errors.New(c.NoChain)
		if c.NoChain == "" {
			chainErr = errors.New("no Fabric network is configured")
		}
	default:
		chain, chainErr = c.ReadChain(ctx, verifier.Name())
	}
	if chainErr != nil {
		fmt.Fprintf(stdout, "chain: NOT consulted: %v\n", chainErr)
	}
	if chain != nil {
		printChain(stdout, verifier.Name(), chain)
	}

	opts := AuditOptions{Chain: chain}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := &progressBar{w: stderr, start: time.Now()}
		opts.Progress = bar.update
	}
	rep, err := Audit(ctx, pool, verifier, opts)
	if err != nil {
		return err
	}
	if opts.Progress != nil {
		fmt.Fprintln(stderr)
	}
	for _, f := range rep.Faults {
		fmt.Fprintln(stdout, "FAULT", f)
	}
	if rep.Truncated {
		fmt.Fprintln(stdout, "(more faults not shown)")
	}
	anchors := fmt.Sprintf("%d anchor references, none checked against the chain", rep.AnchorRefs)
	if rep.Chain {
		anchors = fmt.Sprintf("%d chain anchors; %d of %d anchor references match the chain", rep.ChainAnchors, rep.Anchors, rep.AnchorRefs)
	}
	fmt.Fprintf(stdout, "checked %d entries and %d checkpoints (%s) of %s (tree size %d) in %v\n",
		rep.Entries, rep.Checkpoints, anchors, verifier.Name(), rep.TreeSize, rep.Duration.Round(time.Millisecond))
	if unsigned := rep.TreeSize - rep.SignedSize; unsigned > 0 && rep.OK() {
		fmt.Fprintf(stdout, "note: the last %d entries are not yet covered by a checkpoint; they were checked against their hash rows only\n", unsigned)
	}
	if !rep.OK() {
		if first := rep.FirstBadIndex(); first >= 0 {
			fmt.Fprintf(stdout, "FAIL: first bad index %d\n", first)
			return fmt.Errorf("ledger verify: %d faults, first bad index %d", len(rep.Faults), first)
		}
		fmt.Fprintf(stdout, "FAIL: %d faults, none names a leaf index\n", len(rep.Faults))
		return fmt.Errorf("ledger verify: %d faults", len(rep.Faults))
	}
	if chainErr != nil {
		fmt.Fprintln(stdout, "FAIL: the database agrees with itself, but the chain was not consulted (pass -fabric.* settings, run where `tani up` keeps its devnet, or -chain=skip for a database-only audit)")
		return fmt.Errorf("ledger verify: the chain was not consulted: %w", chainErr)
	}
	if mode == ChainSkip {
		fmt.Fprintln(stdout, "OK (database only: the chain was not consulted)")
		return nil
	}
	if rep.ChainAnchors == 0 {
		fmt.Fprintln(stdout, "OK: the chain holds no anchor of this log yet; the database agrees with itself")
		return nil
	}
	fmt.Fprintf(stdout, "OK: the journal extends every anchor the chain holds (largest anchored size %d)\n", rep.LatestAnchored)
	return nil
}

// printChain says what the chain holds for the log, before any fault.
func printChain(w io.Writer, origin string, c *Chain) {
	where := fmt.Sprintf("channel %s, chaincode %s", c.Channel, c.Chaincode)
	switch {
	case c.PublicKey == "" && len(c.Anchors) == 0:
		fmt.Fprintf(w, "chain: %s: %s is not registered and has no anchors\n", where, origin)
	case len(c.Anchors) == 0:
		fmt.Fprintf(w, "chain: %s: %s is registered and has no anchors yet\n", where, origin)
	default:
		last := c.Anchors[len(c.Anchors)-1]
		fmt.Fprintf(w, "chain: %s: %d anchors of %s, the latest at size %d (tx %s, block %d)\n",
			where, len(c.Anchors), origin, last.Size, last.Ref.TxID, last.Ref.BlockNumber)
	}
}

// auditVerifier finds the log's public key: an explicit verifier key file,
// else derived from the configured or generated signer key, else the
// generated public key file.
func auditVerifier(cfg Config, keyFile string) (note.Verifier, error) {
	var vkey string
	switch {
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("read verifier key: %w", err)
		}
		vkey = strings.TrimSpace(string(b))
	default:
		skeyFile := cfg.KeyFile
		if skeyFile == "" {
			skeyFile = filepath.Join(cfg.DataDir, signerKeyName)
		}
		if b, err := os.ReadFile(skeyFile); err == nil {
			if vkey, err = verifierKey(strings.TrimSpace(string(b))); err != nil {
				return nil, fmt.Errorf("signer key %s: %w", skeyFile, err)
			}
			break
		}
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, verifierKeyName))
		if err != nil {
			return nil, errors.New("no log key: pass -key VERIFIER_KEY_FILE, -ledger.key-file or the -data-dir of `tani up`")
		}
		vkey = strings.TrimSpace(string(b))
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("log verifier key: %w", err)
	}
	return v, nil
}

// progressBar draws "verify [=====>    ]  52% 520000/1000000 12s" in place.
type progressBar struct {
	w     io.Writer
	start time.Time
	last  time.Time
}

func (p *progressBar) update(done, total int64) {
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = now
	const width = 40
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	fmt.Fprintf(p.w, "\rverify [%s] %3.0f%% %d/%d %v", bar, frac*100, done, total, now.Sub(p.start).Round(time.Second))
}
