package anchor

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/verify"
)

// Defaults applied to zero Config fields.
const (
	DefaultInterval  = 2 * time.Second
	DefaultBatchSize = 100
)

// Config tunes the Anchorer.
type Config struct {
	// Interval is how often new checkpoints are looked for, and the longest
	// wait between retries while the network is unreachable.
	Interval time.Duration
	// BatchSize bounds how many checkpoints one pass reads at a time.
	BatchSize int
	// EventCheckpointFile keeps the Anchored-event listener's position
	// across restarts; empty replays the channel's events from block 0 at
	// every start (correct, only slower).
	EventCheckpointFile string
}

// RegisterFlags registers the anchoring flags with prefix (for example
// "anchor.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&c.Interval, prefix+"interval", DefaultInterval, "how often to anchor new checkpoints on Fabric")
	fs.IntVar(&c.BatchSize, prefix+"batch-size", DefaultBatchSize, "checkpoints read per anchoring pass")
}

// Anchorer anchors a journal's checkpoints through a Fabric client.
type Anchorer struct {
	cfg     Config
	journal *ledger.Journal
	fc      *fabric.Client
	origin  string
	logger  *slog.Logger
	// skipped holds sizes the chain moved past without anchoring, logged once.
	skipped map[int64]bool
}

// New returns an Anchorer for a started journal.
func New(cfg Config, j *ledger.Journal, fc *fabric.Client, logger *slog.Logger) *Anchorer {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Anchorer{cfg: cfg, journal: j, fc: fc, origin: j.Verifier().Name(), logger: logger, skipped: map[int64]bool{}}
}

// Register makes sure the chain knows the journal's key: it registers it if
// the origin is unknown (the client identity must then be an organization
// admin) and fails if the origin is registered with another key.
func (a *Anchorer) Register(ctx context.Context) error {
	lg, err := a.fc.Log(ctx, a.origin)
	if err != nil {
		return fmt.Errorf("anchor: look up log %s: %w", a.origin, err)
	}
	key := a.journal.VerifierKey()
	if lg != nil {
		if lg.PublicKey != key {
			return fmt.Errorf("anchor: log %s is registered on the chain with key %s, but the journal signs with %s", a.origin, lg.PublicKey, key)
		}
		return nil
	}
	if err := a.fc.RegisterLog(ctx, a.origin, key); err != nil {
		return fmt.Errorf("anchor: register log %s (needs an organization admin identity): %w", a.origin, err)
	}
	a.logger.InfoContext(ctx, "registered the journal's key on the chain", "origin", a.origin)
	return nil
}

// CheckJournal holds the journal to the chain's latest anchor of its
// origin (ledger.Journal.PinAnchor): the stored journal must be a
// consistent extension of it. If it is not, the journal halts (it signs no
// more checkpoints or receipts) and CheckJournal returns the
// *ledger.NotExtensionError. A chain with no anchor yet checks nothing. The
// anchor module calls it at start, and AnchorPending on every pass.
func (a *Anchorer) CheckJournal(ctx context.Context) (*chaincode.Anchor, error) {
	latest, err := a.fc.LatestAnchor(ctx, a.origin)
	if err != nil {
		return nil, fmt.Errorf("anchor: latest anchor: %w", err)
	}
	if latest == nil {
		return nil, nil
	}
	// The chaincode verified the note against the registered key, which
	// Register checked is the journal's; check again rather than trust a
	// misconfigured channel.
	cp, err := verify.VerifyCheckpoint([]byte(latest.Checkpoint), a.journal.Verifier())
	if err != nil {
		return nil, fmt.Errorf("anchor: the chain's latest anchor (tx %s) is not signed with the journal's key: %w", latest.TxID, err)
	}
	if cp.Size != latest.Size || len(cp.Hash) != tlog.HashSize || base64.StdEncoding.EncodeToString(cp.Hash) != latest.Root {
		return nil, fmt.Errorf("anchor: the chain's latest anchor (tx %s) says size %d root %s, its checkpoint size %d", latest.TxID, latest.Size, latest.Root, cp.Size)
	}
	if err := a.journal.PinAnchor(ctx, int64(latest.Size), tlog.Hash(cp.Hash), latest.TxID); err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	return latest, nil
}

// Run registers the journal, then anchors pending checkpoints every
// Interval and records Anchored events, until ctx is done. Failures (the
// network being down) are logged and retried; Run returns nil at the end.
// Once the journal has halted on a fork, Run anchors nothing more: there is
// nothing it could anchor that the chain should accept, and the fork was
// logged once, when it was found.
func (a *Anchorer) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.listen(ctx)
	}()
	defer func() { <-done }()
	registered := false
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		if !registered {
			if err := a.Register(ctx); err != nil {
				if ctx.Err() == nil {
					a.logger.ErrorContext(ctx, "register the journal on the chain", "err", err)
				}
			} else {
				registered = true
			}
		}
		if registered && a.journal.Halted() == nil {
			if n, err := a.AnchorPending(ctx); err != nil {
				if ctx.Err() == nil && a.journal.Halted() == nil {
					a.logger.ErrorContext(ctx, "anchor checkpoints; retrying", "anchored", n, "err", err)
				}
			} else if n > 0 {
				a.logger.InfoContext(ctx, "anchored checkpoints", "count", n)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// AnchorPending checks the journal against the chain (CheckJournal), then
// anchors every checkpoint not yet anchored, oldest first, and records each
// anchor in the journal. Checkpoints the chain already holds
// (anchored by another process, or before a crash) are recorded from the
// chain. It returns how many checkpoints it recorded.
func (a *Anchorer) AnchorPending(ctx context.Context) (int, error) {
	latest, err := a.CheckJournal(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	after := int64(0)
	for {
		cps, err := a.journal.UnanchoredCheckpoints(ctx, after, a.cfg.BatchSize)
		if err != nil {
			return n, err
		}
		if len(cps) == 0 {
			return n, nil
		}
		for _, cp := range cps {
			after = cp.Size
			if latest != nil && uint64(cp.Size) <= latest.Size {
				ok, err := a.recordFromChain(ctx, cp)
				if err != nil {
					return n, err
				}
				if ok {
					n++
				}
				continue
			}
			// A history rewritten after cp was signed would be refused by
			// the chaincode on every pass; halt the journal instead.
			if err := a.journal.PinCheckpoint(ctx, cp); err != nil {
				return n, fmt.Errorf("anchor: %w", err)
			}
			var proof [][]byte
			if latest != nil {
				p, err := a.journal.ConsistencyProof(ctx, int64(latest.Size), cp.Size)
				if err != nil {
					return n, fmt.Errorf("anchor: consistency proof %d→%d: %w", latest.Size, cp.Size, err)
				}
				for _, h := range p {
					proof = append(proof, h[:])
				}
			}
			res, err := a.fc.Anchor(ctx, cp.Note, proof, func(txID string) error {
				a.logger.InfoContext(ctx, "anchoring checkpoint", "size", cp.Size, "tx_id", txID)
				return nil
			})
			if err != nil {
				return n, fmt.Errorf("anchor: checkpoint %d: %w", cp.Size, err)
			}
			if err := a.record(ctx, cp.Size, res.TxID, res.BlockNumber); err != nil {
				return n, err
			}
			n++
			latest = &res.Anchor
		}
	}
}

// recordFromChain records the anchor the chain holds for cp, if any. The
// chain holding a different root for cp's size is an error: either the
// journal or the chain history was rewritten.
func (a *Anchorer) recordFromChain(ctx context.Context, cp *ledger.Checkpoint) (bool, error) {
	on, err := a.fc.GetAnchor(ctx, a.origin, uint64(cp.Size))
	if err != nil {
		return false, fmt.Errorf("anchor: chain anchor at size %d: %w", cp.Size, err)
	}
	if on == nil {
		if !a.skipped[cp.Size] {
			a.skipped[cp.Size] = true
			a.logger.WarnContext(ctx, "checkpoint was never anchored and the chain has moved past it; later anchors cover it", "size", cp.Size)
		}
		return false, nil
	}
	if on.Root != base64.StdEncoding.EncodeToString(cp.Root[:]) {
		return false, fmt.Errorf("anchor: the chain holds root %s for size %d but the journal's checkpoint has %x", on.Root, cp.Size, cp.Root[:])
	}
	st, err := a.fc.TransactionStatus(ctx, on.TxID)
	if err != nil {
		return false, fmt.Errorf("anchor: status of tx %s: %w", on.TxID, err)
	}
	if err := a.record(ctx, cp.Size, on.TxID, st.BlockNumber); err != nil {
		return false, err
	}
	return true, nil
}

func (a *Anchorer) record(ctx context.Context, size int64, txID string, block uint64) error {
	ref := verify.Anchor{Channel: a.fc.Channel(), Chaincode: a.fc.Chaincode(), TxID: txID, BlockNumber: block}
	if err := a.journal.SetAnchor(ctx, size, ref); err != nil {
		return fmt.Errorf("anchor: record anchor of checkpoint %d: %w", size, err)
	}
	return nil
}

// listen records Anchored events of this journal until ctx is done,
// reconnecting after failures.
func (a *Anchorer) listen(ctx context.Context) {
	cp, closeCP, err := a.checkpointer()
	if err != nil {
		a.logger.ErrorContext(ctx, "event checkpoint; Anchored events are not followed", "err", err)
		return
	}
	defer closeCP()
	for ctx.Err() == nil {
		err := a.fc.ListenAnchored(ctx, cp, a.RecordEvent)
		if err == nil || ctx.Err() != nil {
			return
		}
		a.logger.WarnContext(ctx, "Anchored event listener stopped; reconnecting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(a.cfg.Interval):
		}
	}
}

// RecordEvent records the anchor an Anchored event reports, if it is this
// journal's and matches its checkpoint. A mismatch is logged, not returned:
// it is evidence for the operators, and no reason to stop following the
// chain. It is the handler Run's listener uses.
func (a *Anchorer) RecordEvent(ctx context.Context, ev fabric.AnchoredEvent) error {
	if ev.Origin != a.origin {
		return nil
	}
	cp, err := a.journal.CheckpointAt(ctx, int64(ev.Size))
	if apperr.Is(err, apperr.NotFound) {
		// Not this journal's history: report it, but it is no reason to
		// stop following the chain.
		a.logger.ErrorContext(ctx, "the chain anchors a checkpoint this journal never signed", "size", ev.Size, "tx_id", ev.TxID)
		return nil
	}
	if err != nil {
		return err
	}
	if ev.Root != base64.StdEncoding.EncodeToString(cp.Root[:]) {
		a.logger.ErrorContext(ctx, "the chain anchors a different root than the journal's checkpoint", "size", ev.Size, "tx_id", ev.TxID)
		return nil
	}
	err = a.record(ctx, cp.Size, ev.TxID, ev.BlockNumber)
	if apperr.Is(err, apperr.Conflict) {
		a.logger.ErrorContext(ctx, "checkpoint is recorded with another transaction than the chain's", "size", ev.Size, "err", err)
		return nil
	}
	return err
}

func (a *Anchorer) checkpointer() (fabric.Checkpointer, func(), error) {
	if a.cfg.EventCheckpointFile == "" {
		return &memCheckpointer{}, func() {}, nil
	}
	fcp, err := client.NewFileCheckpointer(a.cfg.EventCheckpointFile)
	if err != nil {
		return nil, nil, fmt.Errorf("anchor: open %s: %w", a.cfg.EventCheckpointFile, err)
	}
	return fcp, func() { fcp.Close() }, nil
}

// memCheckpointer keeps the listener's position in memory only.
type memCheckpointer struct{ client.InMemoryCheckpointer }

func (m *memCheckpointer) CheckpointTransaction(block uint64, txID string) error {
	m.InMemoryCheckpointer.CheckpointTransaction(block, txID)
	return nil
}

// VerifyReceipt checks a receipt offline with the log's verifier, then its
// checkpoint on the chain: the chain must hold the receipt's checkpoint
// root at its size and, when the receipt names an anchor, in exactly that
// transaction and block. A receipt issued before its checkpoint was
// anchored names none; it passes when the chain holds its checkpoint now.
// It returns what the receipt proves and where the chain holds it.
func VerifyReceipt(ctx context.Context, fc *fabric.Client, r *verify.Receipt, v note.Verifier) (*verify.Result, *verify.Anchor, error) {
	res, err := r.Verify(v)
	if err != nil {
		return nil, nil, err
	}
	if r.Anchor != nil {
		if err := checkAnchor(ctx, fc, res.Origin, res.TreeSize, res.Root, r.Anchor); err != nil {
			return nil, nil, err
		}
		return res, r.Anchor, nil
	}
	on, err := anchorAt(ctx, fc, res.Origin, int64(res.TreeSize))
	if err != nil {
		return nil, nil, fmt.Errorf("read chain anchor at size %d: %w", res.TreeSize, err)
	}
	if on == nil {
		latest, err := fc.LatestAnchor(ctx, res.Origin)
		if err != nil {
			return nil, nil, fmt.Errorf("read latest chain anchor: %w", err)
		}
		hint := "the chain holds no anchor of this log yet"
		if latest != nil {
			hint = fmt.Sprintf("the latest anchored size is %d: ask for a receipt in an anchored checkpoint", latest.Size)
		}
		return nil, nil, fmt.Errorf("the receipt names no anchor, and the chain holds no anchor of %s at size %d; %s", res.Origin, res.TreeSize, hint)
	}
	if !bytes.Equal(on.Root[:], res.Root) {
		return nil, nil, fmt.Errorf("the chain anchors root %s at size %d, the receipt's checkpoint has %s",
			base64.StdEncoding.EncodeToString(on.Root[:]), res.TreeSize, base64.StdEncoding.EncodeToString(res.Root))
	}
	return res, &on.Ref, nil
}

func checkAnchor(ctx context.Context, fc *fabric.Client, origin string, size uint64, root []byte, a *verify.Anchor) error {
	if a.Channel != fc.Channel() || a.Chaincode != fc.Chaincode() {
		return fmt.Errorf("anchored on %s/%s, but the chain checked is %s/%s", a.Channel, a.Chaincode, fc.Channel(), fc.Chaincode())
	}
	on, err := fc.GetAnchor(ctx, origin, size)
	if err != nil {
		return fmt.Errorf("read chain anchor at size %d: %w", size, err)
	}
	if on == nil {
		return fmt.Errorf("the chain has no anchor of %s at size %d", origin, size)
	}
	if want := base64.StdEncoding.EncodeToString(root); on.Root != want {
		return fmt.Errorf("the chain anchors root %s at size %d, the checkpoint has %s", on.Root, size, want)
	}
	if on.TxID != a.TxID {
		return fmt.Errorf("the chain anchored size %d in tx %s, the anchor names tx %s", size, on.TxID, a.TxID)
	}
	st, err := fc.TransactionStatus(ctx, a.TxID)
	if err != nil {
		return fmt.Errorf("status of tx %s: %w", a.TxID, err)
	}
	if !st.Successful {
		return fmt.Errorf("tx %s is %s on the chain", a.TxID, st.Code)
	}
	if st.BlockNumber != a.BlockNumber {
		return fmt.Errorf("tx %s is in block %d, the anchor names block %d", a.TxID, st.BlockNumber, a.BlockNumber)
	}
	return nil
}
