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

// VerifyCommand is `tani verify`: it audits the journal in the configured
// database (see Audit), prints every fault and a summary naming the first
// bad index, and returns an error when anything is wrong so the caller
// exits non-zero. On a terminal it draws a progress bar on stderr.
type VerifyCommand struct {
	DB      postgres.Config
	Ledger  Config
	KeyFile string // the log's public verifier key; default: from the signer key
	// CheckAnchor, when set, checks each Fabric anchor against the chain
	// (see AuditOptions.CheckAnchor); the caller that knows the network
	// sets it.
	CheckAnchor func(ctx context.Context, cp *Checkpoint) error
}

// RegisterFlags registers the command's flags: the database, the ledger's
// key settings, -data-dir (where `tani up` generated the key) and -key.
func (c *VerifyCommand) RegisterFlags(fs *flag.FlagSet) {
	c.DB.RegisterFlags(fs)
	c.Ledger.RegisterFlags(fs)
	fs.StringVar(&c.Ledger.DataDir, "data-dir", "./var", "the data directory of `tani up` (holds the generated ledger key pair)")
	fs.StringVar(&c.KeyFile, "key", "", "file holding the log's public note verifier key; default: derived from -ledger.key-file or the data directory's key pair")
}

// Run audits and reports.
func (c *VerifyCommand) Run(ctx context.Context, stdout, stderr io.Writer) error {
	cfg, db := c.Ledger, c.DB
	keyFile := &c.KeyFile
	verifier, err := auditVerifier(cfg, *keyFile)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, err := postgres.Open(ctx, db, logger)
	if err != nil {
		return err
	}
	defer pool.Close()

	opts := AuditOptions{CheckAnchor: c.CheckAnchor}
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
	fmt.Fprintf(stdout, "checked %d entries and %d checkpoints (%d Fabric anchors) of %s (tree size %d) in %v\n",
		rep.Entries, rep.Checkpoints, rep.Anchors, verifier.Name(), rep.TreeSize, rep.Duration.Round(time.Millisecond))
	if unsigned := rep.TreeSize - rep.SignedSize; unsigned > 0 && rep.OK() {
		fmt.Fprintf(stdout, "note: the last %d entries are not yet covered by a checkpoint; they were checked against their hash rows only\n", unsigned)
	}
	if !rep.OK() {
		if first := rep.FirstBadIndex(); first >= 0 {
			fmt.Fprintf(stdout, "FAIL: first bad index %d\n", first)
			return fmt.Errorf("ledger verify: %d faults, first bad index %d", len(rep.Faults), first)
		}
		fmt.Fprintln(stdout, "FAIL")
		return fmt.Errorf("ledger verify: %d faults", len(rep.Faults))
	}
	fmt.Fprintln(stdout, "OK")
	return nil
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
