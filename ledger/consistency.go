package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
)

// NotExtensionError says the stored journal is not a consistent extension
// of a tree it must extend (an anchor on the chain, a checkpoint signed
// with the journal's key): its history was rewritten, truncated or lost
// since that tree was signed.
type NotExtensionError struct {
	// Size and Root are the tree the journal must extend.
	Size int64
	Root tlog.Hash
	// StoredSize is the size of the stored tree when it was checked.
	StoredSize int64
	// Reason says in words what disagrees.
	Reason string
	// Source names who vouches for the tree, when the caller knows.
	Source string
}

func (e *NotExtensionError) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("the journal is not a consistent extension of tree size %d (root %s; %s): %s", e.Size, e.Root, e.Source, e.Reason)
	}
	return fmt.Sprintf("the journal is not a consistent extension of tree size %d (root %s): %s", e.Size, e.Root, e.Reason)
}

// CheckExtends checks that the stored journal is a consistent extension of
// the tree of size size with root root: the stored tree is at least that
// large, its stored hashes give that root at that size, and the RFC 6962
// consistency proof from that tree to the whole stored tree, computed from
// the stored hashes, checks out against both roots. It reads O(log n)
// stored hashes, so it is cheap enough to run before every signature.
//
// It returns a *NotExtensionError when the journal does not extend the tree
// and another error only when the check itself could not be made.
func (j *Journal) CheckExtends(ctx context.Context, size int64, root tlog.Hash) error {
	tx, err := j.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("check journal extends tree %d: begin: %w", size, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var stored int64
	if err := tx.QueryRow(ctx, "SELECT size FROM ledger.tree").Scan(&stored); err != nil {
		return fmt.Errorf("check journal extends tree %d: read tree size: %w", size, err)
	}
	storedRoot, err := tlog.TreeHash(stored, hashReader(ctx, tx))
	if err != nil {
		return notExtension(size, root, stored, fmt.Errorf("hash the stored tree of size %d: %w", stored, err))
	}
	return checkExtends(ctx, tx, size, root, stored, storedRoot)
}

// checkExtends is CheckExtends for a caller that has read the stored tree
// (size stored, root storedRoot) in the snapshot q reads.
func checkExtends(ctx context.Context, q querier, size int64, root tlog.Hash, stored int64, storedRoot tlog.Hash) error {
	if size < 0 {
		return fmt.Errorf("check journal extends tree %d: negative size", size)
	}
	if size == 0 {
		return nil // every tree extends the empty one
	}
	if stored < size {
		return &NotExtensionError{Size: size, Root: root, StoredSize: stored,
			Reason: fmt.Sprintf("the journal holds only %d entries", stored)}
	}
	r := hashReader(ctx, q)
	at, err := tlog.TreeHash(size, r)
	if err != nil {
		return notExtension(size, root, stored, fmt.Errorf("hash the stored tree at size %d: %w", size, err))
	}
	if at != root {
		return &NotExtensionError{Size: size, Root: root, StoredSize: stored,
			Reason: fmt.Sprintf("the stored tree at size %d has root %s", size, at)}
	}
	if stored == size {
		return nil
	}
	p, err := tlog.ProveTree(stored, size, r)
	if err != nil {
		return notExtension(size, root, stored, fmt.Errorf("prove tree %d is a prefix of %d: %w", size, stored, err))
	}
	if err := tlog.CheckTree(p, stored, storedRoot, size, root); err != nil {
		return &NotExtensionError{Size: size, Root: root, StoredSize: stored,
			Reason: fmt.Sprintf("the stored tree of size %d (root %s) does not extend it: %v", stored, storedRoot, err)}
	}
	return nil
}

// notExtension turns a stored hash missing inside the tree into a
// NotExtensionError: rows of an append are committed together, so a
// missing one was deleted. Other errors (the database) are returned as
// they are.
func notExtension(size int64, root tlog.Hash, stored int64, err error) error {
	var m *missingHashError
	if errors.As(err, &m) {
		return &NotExtensionError{Size: size, Root: root, StoredSize: stored, Reason: err.Error()}
	}
	return err
}

// missingHashError reports a stored hash no run of ledger.hash_runs holds.
type missingHashError struct{ id int64 }

func (e *missingHashError) Error() string { return fmt.Sprintf("stored hash %d is missing", e.id) }
