package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/verify"
)

// A journal fails closed. It holds itself to the trees it must extend
// (pins): the chain's latest anchor, which the anchorer reports, and the
// newest checkpoint signed with its key, which it verifies at start and
// remembers whenever it signs. Before signing a checkpoint it checks that
// the stored tree extends every pin, and before serving a receipt that the
// proof holds against the signed root. The first time a check fails it
// halts: it signs no checkpoint and serves no receipt or consistency proof
// again until the process is restarted, and a restart finds the fork again
// as long as the database still holds it. Nothing is repaired
// automatically: a rewritten history is evidence for the operators.

// pin is a tree the journal must extend, and who vouches for it.
type pin struct {
	size   int64
	root   tlog.Hash
	source string
}

// The kinds of pins the journal holds, one of each.
const (
	pinChain  = iota // the chain's latest anchor
	pinSigned        // the newest checkpoint signed with the journal's key
	pinKinds
)

// Halted returns why the journal stopped signing (an apperr.Unavailable
// error naming the fork), or nil while it signs. Once halted it stays
// halted for the life of the process.
func (j *Journal) Halted() error {
	j.haltMu.Lock()
	defer j.haltMu.Unlock()
	return j.halted
}

// halt makes the journal stop signing, for good, because of reason. Only
// the first reason is kept and logged.
func (j *Journal) halt(ctx context.Context, reason error) error {
	j.haltMu.Lock()
	defer j.haltMu.Unlock()
	if j.halted != nil {
		return j.halted
	}
	j.halted = apperr.Wrap(apperr.Unavailable, reason, "the journal has stopped signing checkpoints and receipts: %v", reason)
	j.logger.ErrorContext(ctx, "fork detected: the journal stops signing checkpoints and receipts until an operator restores its history and restarts it",
		"err", reason)
	return j.halted
}

// refuse counts a signature refused because the journal is halted and
// returns why.
func (j *Journal) refuse() error {
	err := j.Halted()
	if err != nil {
		j.refused.Inc()
	}
	return err
}

// PinAnchor holds the journal to the chain's latest anchor (the tree of
// size size with root root, anchored in transaction txID): it checks that
// the stored journal is a consistent extension of it now, and from then on
// refuses to sign a checkpoint of a tree that is not. If the journal does
// not extend it, the journal halts and PinAnchor returns the
// *NotExtensionError; any other error (the database) leaves the journal as
// it was. The anchorer calls it on every pass and at start.
func (j *Journal) PinAnchor(ctx context.Context, size int64, root tlog.Hash, txID string) error {
	return j.pin(ctx, pinChain, pin{size: size, root: root, source: fmt.Sprintf("the chain's latest anchor, tx %s", txID)})
}

func (j *Journal) pin(ctx context.Context, kind int, p pin) error {
	if err := j.CheckExtends(ctx, p.size, p.root); err != nil {
		var ne *NotExtensionError
		if errors.As(err, &ne) {
			ne.Source = p.source
			j.halt(ctx, ne)
		}
		return err
	}
	j.holdTo(kind, p)
	return nil
}

// holdTo makes p the pin of its kind unless a larger one is held. Pins of
// one kind grow along one history (the chaincode proves each anchor
// extends the one before; a journal signs only trees that extend its
// pins), so a tree that extends the larger pin extends the smaller.
func (j *Journal) holdTo(kind int, p pin) {
	j.haltMu.Lock()
	defer j.haltMu.Unlock()
	if p.size >= j.pins[kind].size {
		j.pins[kind] = p
	}
}

// pinned returns the pins held, for a check before signing.
func (j *Journal) pinned() []pin {
	j.haltMu.Lock()
	defer j.haltMu.Unlock()
	var out []pin
	for _, p := range j.pins {
		if p.size > 0 {
			out = append(out, p)
		}
	}
	return out
}

// PinCheckpoint holds the journal to a checkpoint signed with its key, as
// PinAnchor does to the chain's anchor: it verifies the checkpoint's note
// (anyone with write access to the database can insert a row, but nobody
// without the key can sign one), then checks that the stored journal is a
// consistent extension of the signed tree, halting if it is not. The
// anchorer calls it before submitting a checkpoint, so that a history
// rewritten after the checkpoint was signed halts the journal instead of
// being refused by the chaincode on every pass.
func (j *Journal) PinCheckpoint(ctx context.Context, cp *Checkpoint) error {
	if err := j.verifySigned(cp); err != nil {
		return err
	}
	return j.pin(ctx, pinSigned, pin{size: cp.Size, root: cp.Root, source: fmt.Sprintf("checkpoint %d, signed with the journal's key", cp.Size)})
}

// verifySigned checks that a stored checkpoint's note is signed with the
// journal's key and agrees with its row.
func (j *Journal) verifySigned(cp *Checkpoint) error {
	signed, err := verify.VerifyCheckpoint(cp.Note, j.verifier)
	if err == nil && (signed.Size != uint64(cp.Size) || len(signed.Hash) != tlog.HashSize || tlog.Hash(signed.Hash) != cp.Root) {
		err = fmt.Errorf("its row says size %d root %s, its note size %d", cp.Size, cp.Root, signed.Size)
	}
	if err != nil {
		return fmt.Errorf("checkpoint %d is not one the journal's key signed: %w", cp.Size, err)
	}
	return nil
}

// pinLatestSigned holds the journal, at start, to the newest checkpoint in
// the database (PinCheckpoint). A checkpoint that does not verify is
// logged and not held to: `tani verify` names it.
func (j *Journal) pinLatestSigned(ctx context.Context) error {
	cp, err := j.LatestCheckpoint(ctx)
	if apperr.Is(err, apperr.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := j.verifySigned(cp); err != nil {
		j.logger.ErrorContext(ctx, "not holding the journal to its latest stored checkpoint", "err", err)
		return nil
	}
	err = j.pin(ctx, pinSigned, pin{size: cp.Size, root: cp.Root, source: fmt.Sprintf("checkpoint %d, signed with the journal's key", cp.Size)})
	var ne *NotExtensionError
	if errors.As(err, &ne) {
		return nil // halted: the process runs, answers 503 and says why
	}
	return err
}

// RegisterMetrics registers the journal's metrics:
// tani_ledger_fork_detected (1 once the journal halted on a fork) and
// tani_ledger_signatures_refused_total (checkpoints and receipts refused
// since), and the append counters tani_ledger_append_transactions_total
// (by path) and tani_ledger_appended_entries_total.
func (j *Journal) RegisterMetrics(reg prometheus.Registerer) error {
	fork := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tani_ledger_fork_detected",
		Help: "1 once the journal found its stored history is not a consistent extension of a tree it signed or the chain anchored; it then signs nothing until restarted on a repaired history.",
	}, func() float64 {
		if j.Halted() != nil {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{fork, j.refused, j.txs, j.entries, j.rejoin.lingers} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("ledger metrics: %w", err)
		}
	}
	return nil
}
