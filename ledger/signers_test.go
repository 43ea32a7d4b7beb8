package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
)

// TestSignCheckpoint_ConcurrentSignersAgree runs two journals on one
// database and key, as a split deployment does (the attest process and
// the ledger process each run one), and has them sign every new tree at
// the same moment: both must return the one stored checkpoint, never a
// serialization error.
func TestSignCheckpoint_ConcurrentSignersAgree(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t, ledger.Migrations)
	dir := t.TempDir()
	journals := []*ledger.Journal{mustStartedJournal(t, pool, dir), mustStartedJournal(t, pool, dir)}
	for round := range 40 {
		if _, err := journals[round%2].Append(ctx, rev(fmt.Sprintf("signers-%d", round), 1, `{}`)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		got := make([]*ledger.Checkpoint, len(journals))
		errs := make([]error, len(journals))
		start := make(chan struct{})
		for i, j := range journals {
			wg.Go(func() {
				<-start
				got[i], errs[i] = j.SignCheckpoint(ctx)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: journal %d: %v", round, i, err)
			}
			if got[i].Size != int64(round+1) {
				t.Fatalf("round %d: journal %d signed size %d, want %d", round, i, got[i].Size, round+1)
			}
		}
		if !bytes.Equal(got[0].Note, got[1].Note) {
			t.Fatalf("round %d: the journals returned different notes:\n%s\n%s", round, got[0].Note, got[1].Note)
		}
	}
}
