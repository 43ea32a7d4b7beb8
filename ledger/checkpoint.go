package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/ledger/verify"
)

// Checkpoint is a signed statement of the tree's size and root: a C2SP
// tlog-checkpoint note signed with the log's Ed25519 key.
type Checkpoint struct {
	Size      int64
	Root      tlog.Hash
	Note      []byte // the signed note text, exactly as served
	CreatedAt time.Time
	// Anchor is nil until the checkpoint is anchored on Fabric.
	Anchor *verify.Anchor
}

// SignCheckpoint signs and stores a checkpoint for the current tree unless
// the latest checkpoint already covers it, and returns the latest
// checkpoint. It returns (nil, nil) while the log is empty.
//
// It signs only a tree that is a consistent extension of every tree the
// journal is pinned to (the chain's latest anchor, the last checkpoint it
// signed); otherwise it halts the journal. A halted journal signs nothing:
// SignCheckpoint then returns an apperr.Unavailable error naming the fork.
func (j *Journal) SignCheckpoint(ctx context.Context) (*Checkpoint, error) {
	if j.signer == nil {
		return nil, errors.New("ledger: sign checkpoint before Start")
	}
	tx, err := j.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var size int64
	if err := tx.QueryRow(ctx, "SELECT size FROM ledger.tree").Scan(&size); err != nil {
		return nil, fmt.Errorf("sign checkpoint: read tree size: %w", err)
	}
	if size == 0 {
		return nil, nil
	}
	latest, err := latestCheckpoint(ctx, tx)
	if err != nil && !apperr.Is(err, apperr.NotFound) {
		return nil, err
	}
	if latest != nil && latest.Size >= size {
		return latest, tx.Commit(ctx)
	}
	if err := j.refuse(); err != nil {
		return nil, err
	}
	root, err := tlog.TreeHash(size, hashReader(ctx, tx))
	if err != nil {
		err = fmt.Errorf("sign checkpoint: tree hash at size %d: %w", size, err)
		var m *missingHashError
		if errors.As(err, &m) {
			return nil, j.halt(ctx, err)
		}
		return nil, err
	}
	for _, p := range j.pinned() {
		if err := checkExtends(ctx, tx, p.size, p.root, size, root); err != nil {
			var ne *NotExtensionError
			if errors.As(err, &ne) {
				ne.Source = p.source
				return nil, j.halt(ctx, ne)
			}
			return nil, fmt.Errorf("sign checkpoint: %w", err)
		}
	}
	text := log.Checkpoint{Origin: j.cfg.Origin, Size: uint64(size), Hash: root[:]}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(text)}, j.signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	cp := &Checkpoint{Size: size, Root: root, Note: signed, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	// Another process may have signed the same size: keep the first. (A
	// split deployment runs a journal in every process that journals, and
	// each signs.) Under repeatable read, another process's insert of the
	// same size committed meanwhile makes this insert fail with a
	// serialization error instead of doing nothing; theirs is then the
	// stored checkpoint, compared below like any other.
	if _, err := tx.Exec(ctx, `INSERT INTO ledger.checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (size) DO NOTHING`, cp.Size, cp.Root[:], string(cp.Note), cp.CreatedAt); err != nil {
		if postgres.Code(err) != postgres.CodeSerializationFailure {
			return nil, fmt.Errorf("sign checkpoint: store: %w", err)
		}
	} else if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("sign checkpoint: commit: %w", err)
	}
	j.logger.DebugContext(ctx, "signed checkpoint", "size", size)
	stored, err := j.CheckpointAt(ctx, size)
	if err != nil {
		return nil, err
	}
	if stored.Root != root {
		// Another signer stored a different tree at this size first: the
		// key has signed two trees of one size.
		return nil, j.halt(ctx, fmt.Errorf("checkpoint %d is stored with root %s, but the stored tree this process signed has root %s: the key signed two different trees of size %d",
			size, stored.Root, root, size))
	}
	j.holdTo(pinSigned, pin{size: size, root: root, source: fmt.Sprintf("checkpoint %d, signed with the journal's key", size)})
	return stored, nil
}

const checkpointColumns = "size, root, note, created_at, anchor"

func scanCheckpoint(row pgx.Row) (*Checkpoint, error) {
	var cp Checkpoint
	var root []byte
	var noteText string
	var anchor []byte
	if err := row.Scan(&cp.Size, &root, &noteText, &cp.CreatedAt, &anchor); err != nil {
		return nil, err
	}
	if len(root) != tlog.HashSize {
		return nil, fmt.Errorf("checkpoint %d: root has %d bytes", cp.Size, len(root))
	}
	cp.Root = tlog.Hash(root)
	cp.Note = []byte(noteText)
	if anchor != nil {
		cp.Anchor = new(verify.Anchor)
		if err := json.Unmarshal(anchor, cp.Anchor); err != nil {
			return nil, fmt.Errorf("checkpoint %d: anchor: %w", cp.Size, err)
		}
	}
	return &cp, nil
}

// rowQuerier is what both a pool and a transaction offer.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func latestCheckpoint(ctx context.Context, q rowQuerier) (*Checkpoint, error) {
	cp, err := scanCheckpoint(q.QueryRow(ctx, "SELECT "+checkpointColumns+" FROM ledger.checkpoints ORDER BY size DESC LIMIT 1"))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apperr.Wrap(apperr.NotFound, err, "no checkpoint has been signed yet")
	}
	if err != nil {
		return nil, fmt.Errorf("read latest checkpoint: %w", err)
	}
	return cp, nil
}

// LatestCheckpoint returns the newest signed checkpoint, or NotFound while
// none has been signed.
func (j *Journal) LatestCheckpoint(ctx context.Context) (*Checkpoint, error) {
	return latestCheckpoint(ctx, j.pool)
}

// CheckpointAt returns the checkpoint signed for tree size size, or NotFound.
func (j *Journal) CheckpointAt(ctx context.Context, size int64) (*Checkpoint, error) {
	cp, err := scanCheckpoint(j.pool.QueryRow(ctx, "SELECT "+checkpointColumns+" FROM ledger.checkpoints WHERE size = $1", size))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apperr.Wrap(apperr.NotFound, err, "no checkpoint for tree size %d", size)
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %d: %w", size, err)
	}
	return cp, nil
}

// UnanchoredCheckpoints returns up to limit checkpoints larger than after
// that are not yet anchored on Fabric, oldest first: anchoring must follow
// the log's order, since each anchor is proven to extend the previous one.
func (j *Journal) UnanchoredCheckpoints(ctx context.Context, after int64, limit int) ([]*Checkpoint, error) {
	rows, err := j.pool.Query(ctx, "SELECT "+checkpointColumns+" FROM ledger.checkpoints WHERE anchor IS NULL AND size > $1 ORDER BY size LIMIT $2", after, limit)
	if err != nil {
		return nil, fmt.Errorf("read unanchored checkpoints: %w", err)
	}
	cps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Checkpoint, error) { return scanCheckpoint(row) })
	if err != nil {
		return nil, fmt.Errorf("read unanchored checkpoints: %w", err)
	}
	return cps, nil
}

// SetAnchor records where the checkpoint of tree size size was anchored. It
// is idempotent; a checkpoint already anchored elsewhere is a Conflict, and
// a size with no checkpoint is NotFound.
func (j *Journal) SetAnchor(ctx context.Context, size int64, a verify.Anchor) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("set anchor of checkpoint %d: %w", size, err)
	}
	tag, err := j.pool.Exec(ctx, "UPDATE ledger.checkpoints SET anchor = $2 WHERE size = $1 AND (anchor IS NULL OR anchor = $2::jsonb)", size, b)
	if err != nil {
		return fmt.Errorf("set anchor of checkpoint %d: %w", size, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	cp, err := j.CheckpointAt(ctx, size)
	if err != nil {
		return err
	}
	return apperr.Errorf(apperr.Conflict, "checkpoint %d is already anchored in tx %s, not %s", size, cp.Anchor.TxID, a.TxID)
}
