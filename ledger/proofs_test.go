package ledger_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
)

func hashes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

// TestProofsAcrossTreeSizes signs a checkpoint at every size from 1 to n,
// checks each signed root against an independent computation
// (transparency-dev/merkle compact ranges over the stored leaf bytes), and
// verifies every inclusion and consistency proof with transparency-dev/merkle.
func TestProofsAcrossTreeSizes(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	const n = 45
	roots := map[int64][]byte{}
	for i := 0; i < n; {
		batch := 1 + i%4 // vary the batch size so trees grow unevenly
		var revs []ledger.Revision
		for k := 0; k < batch && i < n; k, i = k+1, i+1 {
			revs = append(revs, rev(fmt.Sprintf("rec-%d", i), 1, fmt.Sprintf(`{"i":%d}`, i)))
		}
		if _, err := j.Append(ctx, revs...); err != nil {
			t.Fatalf("append: %v", err)
		}
		cp, err := j.SignCheckpoint(ctx)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		signed, _, _, err := log.ParseCheckpoint(cp.Note, j.Verifier().Name(), j.Verifier())
		if err != nil {
			t.Fatalf("checkpoint %d does not verify: %v", cp.Size, err)
		}
		roots[int64(signed.Size)] = signed.Hash
	}
	entries, err := j.Entries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("got %d entries, want %d", len(entries), n)
	}
	// Independent roots at every size that has a checkpoint.
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	leafHashes := make([][]byte, n)
	for i, e := range entries {
		leafHashes[i] = rfc6962.DefaultHasher.HashLeaf(e.Data)
		if err := rng.Append(leafHashes[i], nil); err != nil {
			t.Fatal(err)
		}
		if want, ok := roots[int64(i+1)]; ok {
			got, err := rng.GetRootHash(nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("size %d: signed root %x, independent root %x", i+1, want, got)
			}
		}
	}
	if len(roots) < 10 {
		t.Fatalf("got %d checkpoints, want at least 10", len(roots))
	}
	for size, root := range roots {
		for idx := int64(0); idx < size; idx++ {
			p, err := j.InclusionProof(ctx, idx, size)
			if err != nil {
				t.Fatalf("inclusion %d in %d: %v", idx, size, err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(idx), uint64(size), leafHashes[idx], hashes(p), root); err != nil {
				t.Errorf("inclusion %d in %d: %v", idx, size, err)
			}
		}
		for from, fromRoot := range roots {
			if from > size {
				continue
			}
			p, err := j.ConsistencyProof(ctx, from, size)
			if err != nil {
				t.Fatalf("consistency %d→%d: %v", from, size, err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(from), uint64(size), hashes(p), fromRoot, root); err != nil {
				t.Errorf("consistency %d→%d: %v", from, size, err)
			}
		}
	}
}

func TestConsistencyProofBadSizes(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	for i := range 5 {
		if _, err := j.Append(ctx, rev(fmt.Sprintf("r%d", i), 1, "{}")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := j.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string][2]int64{
		"ErrFromAfterTo":   {4, 2},
		"ErrBeyondTree":    {2, 6},
		"ErrZeroFrom":      {0, 3},
		"ErrNegativeSizes": {-1, -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := j.ConsistencyProof(ctx, c[0], c[1])
			if got := apperr.CodeOf(err); got != apperr.Invalid {
				t.Errorf("got code %q (%v), want invalid", got, err)
			}
		})
	}
	t.Run("ErrInclusionBeyondTree", func(t *testing.T) {
		_, err := j.InclusionProof(ctx, 5, 5)
		if got := apperr.CodeOf(err); got != apperr.Invalid {
			t.Errorf("got code %q (%v), want invalid", got, err)
		}
	})
}
