package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/anchor"
	"github.com/tani-platform/tani/ledger/chaincode"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
	"github.com/tani-platform/tani/ledger/fabric"
	"github.com/tani-platform/tani/ledger/ledgertest"
)

// mustChain starts a devnet with the anchor chaincode and returns a client
// acting as TaniMSP's admin (it registers each test journal's key). One
// devnet serves every case of a test; each case has its own origin.
func mustChain(t *testing.T) (*devnet.Network, *fabric.Client) {
	t.Helper()
	cc, err := chaincode.New()
	if err != nil {
		t.Fatal(err)
	}
	n := devnettest.MustStart(t, devnet.Chaincode{Name: "anchor", Policy: devnet.MajorityPolicy(devnet.DefaultOrgs), CC: cc})
	id, err := n.Identity("TaniMSP", "admin")
	if err != nil {
		t.Fatal(err)
	}
	fc, err := fabric.Dial(n.ConnectionInfo().ClientConfig(id, "anchor"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	return n, fc
}

// tamperable is a journal of 40 entries with checkpoints at 10, 20, 30 and
// 40, anchored on the chain when it has one, and the pool to tamper with.
type tamperable struct {
	j       *ledger.Journal
	pool    *pgxpool.Pool
	dataDir string
	fc      *fabric.Client // nil: not anchored
	a       *anchor.Anchorer
	// orig holds the checkpoints as signed and anchored, before tampering.
	orig map[int64]*ledger.Checkpoint
}

// mustTamperable builds the journal; with fc, its origin is derived from
// the test's name (the chain registers one key per origin) and every
// checkpoint is anchored as the Anchorer anchors it.
func mustTamperable(t *testing.T, fc *fabric.Client) *tamperable {
	t.Helper()
	ctx := context.Background()
	origin := "test.tani.local/ledger"
	if fc != nil {
		origin = strings.ToLower(strings.ReplaceAll(t.Name(), "/", ".")) + ".tamper.tani.test/ledger"
	}
	f := &tamperable{pool: pgtest.MustDB(t, ledger.Migrations), dataDir: t.TempDir(), fc: fc, orig: map[int64]*ledger.Checkpoint{}}
	j, err := ledger.New(ledger.Config{Origin: origin, DataDir: f.dataDir, CheckpointInterval: ledger.DefaultCheckpointInterval}, f.pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.j = j
	if fc != nil {
		f.a = anchor.New(anchor.Config{}, j, fc, slog.New(slog.DiscardHandler))
		if err := f.a.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for b := range 4 {
		var revs []ledger.Revision
		for i := range 10 {
			n := b*10 + i
			revs = append(revs, rev(fmt.Sprintf("rec-%02d", n), 1, fmt.Sprintf(`{"n":%d}`, n)))
		}
		if _, err := j.Append(ctx, revs...); err != nil {
			t.Fatal(err)
		}
		f.signAndAnchor(t)
	}
	return f
}

// signAndAnchor signs a checkpoint of the whole tree and, on a chain,
// anchors it; it returns the checkpoint as stored.
func (f *tamperable) signAndAnchor(t *testing.T) *ledger.Checkpoint {
	t.Helper()
	ctx := context.Background()
	cp, err := f.j.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.fc != nil {
		if n, err := f.a.AnchorPending(ctx); err != nil || n != 1 {
			t.Fatalf("anchor checkpoint %d: got %d anchored, %v", cp.Size, n, err)
		}
		if cp, err = f.j.CheckpointAt(ctx, cp.Size); err != nil {
			t.Fatal(err)
		}
	}
	f.orig[cp.Size] = cp
	return cp
}

// verify runs `tani verify` against the journal's database as an auditor
// would: against the chain when consult is set (the chain read exactly as
// the command line reads it), else with -chain=skip.
func (f *tamperable) verify(t *testing.T, consult bool) (string, error) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "ledger.pub")
	if err := os.WriteFile(key, []byte(f.j.VerifierKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := ledger.VerifyCommand{DB: postgres.Config{URL: f.pool.Config().ConnString()}, KeyFile: key, ChainMode: ledger.ChainSkip}
	if consult {
		cmd.ChainMode = ledger.ChainRequire
		cmd.ReadChain = func(ctx context.Context, origin string) (*ledger.Chain, error) {
			return anchor.ReadChain(ctx, f.fc, origin)
		}
	}
	err := cmd.Run(context.Background(), &stdout, &stderr)
	return stdout.String(), err
}

// signWithLogKey signs a checkpoint of size and root with the journal's
// own key, as whoever holds the key (or a server that kept signing) could.
func (f *tamperable) signWithLogKey(t *testing.T, size int64, root []byte) string {
	t.Helper()
	skey, err := os.ReadFile(filepath.Join(f.dataDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	return signCheckpoint(t, s, size, root)
}

// storedRoot is the root of the tree of size that the stored hash rows give.
func (f *tamperable) storedRoot(t *testing.T, size int64) tlog.Hash {
	t.Helper()
	root, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ids))
		for i, id := range ids {
			out[i] = ledgertest.MustStoredHash(t, f.pool, id)
		}
		return out, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func signCheckpoint(t *testing.T, s note.Signer, size int64, root []byte) string {
	t.Helper()
	text := log.Checkpoint{Origin: s.Name(), Size: uint64(size), Hash: root}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("tamper: %s: %v", sql, err)
	}
}

// faultKinds are the kinds of the FAULT lines of `tani verify`, in order.
func faultKinds(out string) []ledger.FaultKind {
	var kinds []ledger.FaultKind
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, "FAULT "); ok {
			if parts := strings.SplitN(rest, ": ", 3); len(parts) == 3 {
				kinds = append(kinds, ledger.FaultKind(parts[1]))
			}
		}
	}
	return kinds
}

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }

func sum(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// forgedHash is what the tamper cases write over a stored hash: sum("forged").
var forgedHash = sha256.Sum256([]byte("forged"))

// chainRef describes a checkpoint's anchor as the audit names it.
func chainRef(cp *ledger.Checkpoint) string {
	return fmt.Sprintf("tx %s, block %d", cp.Anchor.TxID, cp.Anchor.BlockNumber)
}

// TestTamper tampers with a real journal in Postgres, anchored on the
// devnet, once per kind of tampering an attacker with write access to the
// database could do, and asserts that `tani verify` names what happened
// and where: the message, every fault's kind and the first bad index. Cases
// marked dbOnlyMisses are the attacks a database-only audit cannot see:
// they pass with -chain=skip and fail against the chain.
func TestTamper(t *testing.T) {
	_, fc := mustChain(t)
	rewriteData := `convert_to(replace(convert_from(data, 'UTF8'), 'plot.mapped', 'plot.moved!'), 'UTF8')`
	cases := []struct {
		name         string
		noChain      bool // audit with -chain=skip
		tamper       func(t *testing.T, f *tamperable)
		kinds        []ledger.FaultKind
		first        int64                                      // first bad index, -1 if no leaf is named
		want         func(t *testing.T, f *tamperable) []string // in the output
		dbOnlyMisses bool
	}{
		{
			name: "EntryDataRewritten",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `UPDATE ledger.entries SET data = `+rewriteData+`, kind = 'plot.moved!' WHERE idx = 17`)
			},
			kinds: []ledger.FaultKind{ledger.FaultEntryRewritten}, first: 17,
			want: func(*testing.T, *tamperable) []string {
				return []string{"index 17: entry data rewritten: the row's bytes hash to", "but the leaf hash row and the tree above it commit to"}
			},
		},
		{
			name: "PayloadChanged",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `UPDATE ledger.entries SET payload = '{"n":999}' WHERE idx = 5`)
			},
			kinds: []ledger.FaultKind{ledger.FaultPayloadChanged}, first: 5,
			want: func(*testing.T, *tamperable) []string {
				return []string{fmt.Sprintf("index 5: payload changed: the payload's SHA-256 is %s, the entry commits to %s", sum(`{"n":999}`), sum(`{"n":5}`))}
			},
		},
		{
			name: "IndexColumnChanged",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `UPDATE ledger.entries SET record_id = 'someone-else' WHERE idx = 29`)
			},
			kinds: []ledger.FaultKind{ledger.FaultColumnChanged}, first: 29,
			want: func(*testing.T, *tamperable) []string {
				return []string{`index 29: index column changed: column record_id holds "someone-else", the entry says "rec-29"`}
			},
		},
		{
			name: "LeafHashRowEdited",
			tamper: func(t *testing.T, f *tamperable) {
				ledgertest.MustSetStoredHash(t, f.pool, tlog.StoredHashIndex(0, 21), forgedHash[:])
			},
			kinds: []ledger.FaultKind{ledger.FaultLeafHashEdited}, first: 21,
			want: func(*testing.T, *tamperable) []string {
				return []string{
					fmt.Sprintf("index 21: leaf hash row edited: stored hash %d (level 0, leaf 21) holds %s", tlog.StoredHashIndex(0, 21), sum("forged")),
					"the entry is intact",
				}
			},
		},
		{
			// The last leaf of an odd-sized tree has no parent row: the
			// signed and anchored tree of the full size decides.
			name: "LastLeafHashRowEdited",
			tamper: func(t *testing.T, f *tamperable) {
				if _, err := f.j.Append(context.Background(), rev("rec-40", 1, `{"n":40}`)); err != nil {
					t.Fatal(err)
				}
				f.signAndAnchor(t)
				ledgertest.MustSetStoredHash(t, f.pool, tlog.StoredHashIndex(0, 40), forgedHash[:])
			},
			kinds: []ledger.FaultKind{ledger.FaultLeafHashEdited}, first: 40,
			want: func(*testing.T, *tamperable) []string {
				return []string{"index 40: leaf hash row edited:", "the signed tree of size 41 agrees with the entry: the entry is intact"}
			},
		},
		{
			name: "InteriorHashRowEdited",
			tamper: func(t *testing.T, f *tamperable) {
				ledgertest.MustSetStoredHash(t, f.pool, tlog.StoredHashIndex(1, 3), forgedHash[:])
			},
			kinds: []ledger.FaultKind{ledger.FaultInteriorHashEdited}, first: 6,
			want: func(*testing.T, *tamperable) []string {
				return []string{fmt.Sprintf("index 6: interior hash row edited: stored hash %d (level 1, node 3, leaves [6, 8)) holds %s", tlog.StoredHashIndex(1, 3), sum("forged"))}
			},
		},
		{
			name: "HashRowDeleted",
			tamper: func(t *testing.T, f *tamperable) {
				ledgertest.MustDeleteStoredHashes(t, f.pool, tlog.StoredHashIndex(0, 33), tlog.StoredHashIndex(0, 33)+1)
			},
			kinds: []ledger.FaultKind{ledger.FaultHashMissing}, first: 33,
			want: func(*testing.T, *tamperable) []string {
				return []string{fmt.Sprintf("index 33: hash row missing: stored hash %d (level 0, node 33, leaves [33, 34)) is missing", tlog.StoredHashIndex(0, 33))}
			},
		},
		{
			// One byte of a run flipped: the hash it is part of is edited,
			// the run's other hashes are intact.
			name: "HashRunByteFlipped",
			tamper: func(t *testing.T, f *tamperable) {
				first, id := tlog.StoredHashIndex(0, 20), tlog.StoredHashIndex(0, 25)
				mustExec(t, f.pool, `UPDATE ledger.hash_runs SET hashes = set_byte(hashes, $2, get_byte(hashes, $2) # 1) WHERE first = $1`,
					first, (id-first)*tlog.HashSize+7)
			},
			kinds: []ledger.FaultKind{ledger.FaultLeafHashEdited}, first: 25,
			want: func(*testing.T, *tamperable) []string {
				return []string{fmt.Sprintf("index 25: leaf hash row edited: stored hash %d (level 0, leaf 25) holds", tlog.StoredHashIndex(0, 25)), "the entry is intact"}
			},
		},
		{
			// A second run holding three hashes of the third append, the
			// same bytes: nothing disagrees, but appends never write that.
			name: "HashRunsOverlap",
			tamper: func(t *testing.T, f *tamperable) {
				first, id := tlog.StoredHashIndex(0, 20), tlog.StoredHashIndex(0, 22)
				mustExec(t, f.pool, `INSERT INTO ledger.hash_runs (first, hashes)
					SELECT $2, substring(hashes FROM ($2 - first)::int * 32 + 1 FOR 96) FROM ledger.hash_runs WHERE first = $1`, first, id)
			},
			kinds: []ledger.FaultKind{ledger.FaultHashRunsOverlap}, first: -1,
			want: func(*testing.T, *tamperable) []string {
				id := tlog.StoredHashIndex(0, 22)
				return []string{fmt.Sprintf("log: hash runs overlap: the run at id %d (ids [%d, %d)) holds ids [%d, %d) that another run holds too", id, id, id+3, id, id+3)}
			},
		},
		{
			// A byte appended to the second run: its hashes are whole and
			// intact, the byte is none.
			name: "HashRunMalformed",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `ALTER TABLE ledger.hash_runs DROP CONSTRAINT hash_runs_hashes_check`)
				mustExec(t, f.pool, `UPDATE ledger.hash_runs SET hashes = hashes || '\x00'::bytea WHERE first = $1`, tlog.StoredHashIndex(0, 10))
			},
			kinds: []ledger.FaultKind{ledger.FaultHashRunMalformed}, first: -1,
			want: func(*testing.T, *tamperable) []string {
				lo, hi := tlog.StoredHashIndex(0, 10), tlog.StoredHashIndex(0, 20)
				return []string{fmt.Sprintf("log: hash run malformed: the run at id %d holds %d bytes, not a positive multiple of 32: %d whole hashes (ids [%d, %d)) and 1 byte over",
					lo, (hi-lo)*32+1, hi-lo, lo, hi)}
			},
		},
		{
			name:   "EntryDeleted",
			tamper: func(t *testing.T, f *tamperable) { mustExec(t, f.pool, `DELETE FROM ledger.entries WHERE idx = 23`) },
			kinds:  []ledger.FaultKind{ledger.FaultEntryDeleted}, first: 23,
			want: func(*testing.T, *tamperable) []string {
				return []string{"index 23: entry deleted: no row for this leaf index"}
			},
		},
		{
			name: "EntriesReordered",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `UPDATE ledger.entries SET idx = 1000000 WHERE idx = 11`)
				mustExec(t, f.pool, `UPDATE ledger.entries SET idx = 11 WHERE idx = 12`)
				mustExec(t, f.pool, `UPDATE ledger.entries SET idx = 12 WHERE idx = 1000000`)
			},
			kinds: []ledger.FaultKind{ledger.FaultEntriesReordered, ledger.FaultEntriesReordered}, first: 11,
			want: func(*testing.T, *tamperable) []string {
				return []string{"index 11: entries reordered: row 11 holds the entry committed at index 12", "index 12: entries reordered: row 12 holds the entry committed at index 11"}
			},
		},
		{
			name: "PayloadErasedWithoutRedaction",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `UPDATE ledger.entries SET payload = NULL WHERE idx = 8`)
			},
			kinds: []ledger.FaultKind{ledger.FaultPayloadErased}, first: 8,
			want: func(*testing.T, *tamperable) []string {
				return []string{"index 8: payload erased: payload is gone and no redaction is recorded"}
			},
		},
		{
			// The signed checkpoint above the cut is still there.
			name: "TruncatedBelowACheckpoint", noChain: true,
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `DELETE FROM ledger.entries WHERE idx >= 35`)
				ledgertest.MustDeleteStoredHashes(t, f.pool, tlog.StoredHashIndex(0, 35), -1)
				mustExec(t, f.pool, `UPDATE ledger.tree SET size = 35`)
			},
			kinds: []ledger.FaultKind{ledger.FaultTruncated}, first: 35,
			want: func(*testing.T, *tamperable) []string {
				return []string{"index 35, size 40: truncated: ledger.checkpoints holds a checkpoint signed by the log key beyond the stored tree, up to size 40, but the database holds 35 entries: entries from index 35 on are gone"}
			},
		},
		{
			// The attack of issue 10: the last 20 entries, their hash rows
			// and the checkpoints above go; the database agrees with itself.
			name: "TruncatedWithTheCheckpointsAbove",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `DELETE FROM ledger.entries WHERE idx >= 20`)
				ledgertest.MustDeleteStoredHashes(t, f.pool, tlog.StoredHashIndex(0, 20), -1)
				mustExec(t, f.pool, `UPDATE ledger.tree SET size = 20`)
				mustExec(t, f.pool, `DELETE FROM ledger.checkpoints WHERE size > 20`)
			},
			kinds: []ledger.FaultKind{ledger.FaultTruncated}, first: 20, dbOnlyMisses: true,
			want: func(t *testing.T, f *tamperable) []string {
				return []string{fmt.Sprintf("index 20, size 40: truncated: the chain anchors size 40 (root %s, %s), but the database holds 20 entries: entries from index 20 on are gone (2 anchors lie beyond the stored tree)",
					b64(f.orig[40].Root[:]), chainRef(f.orig[40]))}
			},
		},
		{
			// Rollback: an entry rewritten with every hash row, and the
			// checkpoints that would expose it deleted.
			name: "RewrittenWithItsHashRows",
			tamper: func(t *testing.T, f *tamperable) {
				rewriteConsistently(14)(t, f.pool)
				mustExec(t, f.pool, `DELETE FROM ledger.checkpoints WHERE size > 10`)
			},
			kinds: []ledger.FaultKind{ledger.FaultCheckpointDeleted, ledger.FaultCheckpointDeleted, ledger.FaultCheckpointDeleted, ledger.FaultHistoryRewritten},
			first: 10, dbOnlyMisses: true,
			want: func(t *testing.T, f *tamperable) []string {
				return []string{
					fmt.Sprintf("index 10, size 20: history rewritten: the chain anchors root %s at size 20 (%s), but the stored entries give root ", b64(f.orig[20].Root[:]), chainRef(f.orig[20])),
					"an entry in [10, 20) was rewritten together with its hash rows; the 2 later anchors disagree too",
					fmt.Sprintf("size 30: checkpoint deleted: the chain anchors size 30 in %s, but ledger.checkpoints has no checkpoint of that size", chainRef(f.orig[30])),
				}
			},
		},
		{
			// Without the chain, the signed checkpoints above still expose
			// the rewrite, and bound it.
			name: "RewrittenWithItsHashRowsBelowACheckpoint", noChain: true,
			tamper: rewriteConsistently14,
			kinds:  []ledger.FaultKind{ledger.FaultHistoryRewritten}, first: 10,
			want: func(t *testing.T, f *tamperable) []string {
				return []string{fmt.Sprintf("index 10, size 20: history rewritten: the checkpoint of size 20 is signed by the log key over root %s", b64(f.orig[20].Root[:])),
					"an entry in [10, 20) was rewritten together with its hash rows, or the key signed a tree that is not this one; the 2 later checkpoints disagree too"}
			},
		},
		{
			// What a server that keeps signing after a rewrite produces: the
			// entries, the hash rows and a new checkpoint signed with the
			// real key all agree; only the chain holds the old history.
			name: "RewrittenAndSignedWithTheLogKey",
			tamper: func(t *testing.T, f *tamperable) {
				rewriteConsistently(14)(t, f.pool)
				mustExec(t, f.pool, `DELETE FROM ledger.checkpoints WHERE size > 10`)
				// Tani's own journal now refuses to sign a tree that
				// does not extend what it signed or the chain anchored
				// (it fails closed), so sign as a server without that
				// guard, or whoever stole the key, would.
				root := f.storedRoot(t, 40)
				mustExec(t, f.pool, `INSERT INTO ledger.checkpoints (size, root, note, created_at) VALUES (40, $1, $2, now())`,
					root[:], f.signWithLogKey(t, 40, root[:]))
			},
			kinds: []ledger.FaultKind{ledger.FaultCheckpointDeleted, ledger.FaultCheckpointDeleted, ledger.FaultHistoryRewritten, ledger.FaultKeyFork},
			first: 10, dbOnlyMisses: true,
			want: func(t *testing.T, f *tamperable) []string {
				forged, err := f.j.CheckpointAt(context.Background(), 40)
				if err != nil {
					t.Fatal(err)
				}
				return []string{
					"index 10, size 20: history rewritten:",
					fmt.Sprintf("size 20: key signed a fork: the ledger key signed two different trees: size 20 root %s (anchored on the chain in %s) and size 40 root %s (checkpoint in the database) are not consistent",
						b64(f.orig[20].Root[:]), chainRef(f.orig[20]), b64(forged.Root[:])),
				}
			},
		},
		{
			name: "CheckpointRowsDeleted",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `DELETE FROM ledger.checkpoints WHERE size >= 30`)
			},
			kinds: []ledger.FaultKind{ledger.FaultCheckpointDeleted, ledger.FaultCheckpointDeleted}, first: -1, dbOnlyMisses: true,
			want: func(t *testing.T, f *tamperable) []string {
				return []string{fmt.Sprintf("size 40: checkpoint deleted: the chain anchors size 40 in %s, but ledger.checkpoints has no checkpoint of that size", chainRef(f.orig[40]))}
			},
		},
		{
			name: "CheckpointSignedWithAnotherKey",
			tamper: func(t *testing.T, f *tamperable) {
				skey, _, err := note.GenerateKey(rand.Reader, f.j.Verifier().Name())
				if err != nil {
					t.Fatal(err)
				}
				other, err := note.NewSigner(skey)
				if err != nil {
					t.Fatal(err)
				}
				mustExec(t, f.pool, `UPDATE ledger.checkpoints SET note = $1 WHERE size = 30`, signCheckpoint(t, other, 30, f.orig[30].Root[:]))
			},
			kinds: []ledger.FaultKind{ledger.FaultCheckpointOtherKey}, first: -1,
			want: func(t *testing.T, f *tamperable) []string {
				v := f.j.Verifier()
				return []string{fmt.Sprintf("size 30: checkpoint signed with another key: the note is signed by %s+", v.Name()),
					fmt.Sprintf("not by the log key %s+%08x", v.Name(), v.KeyHash())}
			},
		},
		{
			name: "CheckpointNoteAltered",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `UPDATE ledger.checkpoints SET note = replace(note, E'\n30\n', E'\n31\n') WHERE size = 30`)
			},
			kinds: []ledger.FaultKind{ledger.FaultCheckpointAltered}, first: -1,
			want: func(*testing.T, *tamperable) []string {
				return []string{"size 30: checkpoint altered: the note names the log key", "but its signature does not verify"}
			},
		},
		{
			// The real key signed a second tree of size 20: the entries are
			// intact, the key was used to sign a fork.
			name: "ForkSignedWithTheLogKey",
			tamper: func(t *testing.T, f *tamperable) {
				other := sha256.Sum256([]byte("another tree"))
				mustExec(t, f.pool, `UPDATE ledger.checkpoints SET note = $1, root = $2 WHERE size = 20`, f.signWithLogKey(t, 20, other[:]), other[:])
			},
			kinds: []ledger.FaultKind{ledger.FaultKeyFork}, first: -1,
			want: func(t *testing.T, f *tamperable) []string {
				other := sha256.Sum256([]byte("another tree"))
				return []string{fmt.Sprintf("size 20: key signed a fork: the ledger key signed two different trees: size 20 root %s (checkpoint in the database) and size 20 root %s (anchored on the chain in %s) are not consistent",
					b64(other[:]), b64(f.orig[20].Root[:]), chainRef(f.orig[20]))}
			},
		},
		{
			// Without the chain the next checkpoint is the witness.
			name: "ForkSignedWithTheLogKeyBelowACheckpoint", noChain: true,
			tamper: func(t *testing.T, f *tamperable) {
				other := sha256.Sum256([]byte("another tree"))
				mustExec(t, f.pool, `UPDATE ledger.checkpoints SET note = $1, root = $2 WHERE size = 20`, f.signWithLogKey(t, 20, other[:]), other[:])
			},
			kinds: []ledger.FaultKind{ledger.FaultKeyFork}, first: -1,
			want: func(t *testing.T, f *tamperable) []string {
				other := sha256.Sum256([]byte("another tree"))
				return []string{fmt.Sprintf("size 20: key signed a fork: the ledger key signed two different trees: size 20 root %s (checkpoint in the database) and size 30 root %s (checkpoint in the database) are not consistent",
					b64(other[:]), b64(f.orig[30].Root[:]))}
			},
		},
		{
			name:   "AnchorReferencesRemoved",
			tamper: func(t *testing.T, f *tamperable) { mustExec(t, f.pool, `UPDATE ledger.checkpoints SET anchor = NULL`) },
			kinds:  []ledger.FaultKind{ledger.FaultAnchorRemoved, ledger.FaultAnchorRemoved, ledger.FaultAnchorRemoved, ledger.FaultAnchorRemoved},
			first:  -1, dbOnlyMisses: true,
			want: func(t *testing.T, f *tamperable) []string {
				return []string{fmt.Sprintf("size 20: anchor reference removed: the chain anchored size 20 in %s on tani/anchor, but its row in ledger.checkpoints names no anchor", chainRef(f.orig[20]))}
			},
		},
		{
			name: "AnchorReferenceRewritten",
			tamper: func(t *testing.T, f *tamperable) {
				mustExec(t, f.pool, `UPDATE ledger.checkpoints SET anchor = (SELECT anchor FROM ledger.checkpoints WHERE size = 30) WHERE size = 20`)
			},
			kinds: []ledger.FaultKind{ledger.FaultAnchorRewritten}, first: -1, dbOnlyMisses: true,
			want: func(t *testing.T, f *tamperable) []string {
				a30, a20 := f.orig[30].Anchor, f.orig[20].Anchor
				return []string{fmt.Sprintf("size 20: anchor reference rewritten: ledger.checkpoints names tx %s in block %d on tani/anchor, but the chain anchored size 20 in tx %s, block %d on tani/anchor",
					a30.TxID, a30.BlockNumber, a20.TxID, a20.BlockNumber)}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := mustTamperable(t, fc)
			if out, err := f.verify(t, true); err != nil {
				t.Fatalf("before tampering: got %v, want a clean audit\n%s", err, out)
			}
			c.tamper(t, f)
			out, err := f.verify(t, !c.noChain)
			t.Logf("tani verify output:\n%s", out)
			if err == nil {
				t.Fatalf("got nil error, want the audit to fail")
			}
			if got := faultKinds(out); !slices.Equal(got, c.kinds) {
				t.Errorf("got faults %q, want %q", got, c.kinds)
			}
			for _, want := range c.want(t, f) {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			wantLast := fmt.Sprintf("FAIL: %d faults, none names a leaf index\n", len(c.kinds))
			if c.first >= 0 {
				wantLast = fmt.Sprintf("FAIL: first bad index %d\n", c.first)
			}
			if !strings.HasSuffix(out, wantLast) {
				t.Errorf("got output ending %q, want %q", out[strings.LastIndex(out[:len(out)-1], "\n")+1:], wantLast)
			}
			if c.dbOnlyMisses {
				out, err := f.verify(t, false)
				if err != nil || !strings.HasSuffix(out, "OK (database only: the chain was not consulted)\n") {
					t.Errorf("database only: got %v\n%s\nwant OK: this attack is the chain's to see", err, out)
				}
			}
		})
	}
}

func rewriteConsistently14(t *testing.T, f *tamperable) { rewriteConsistently(14)(t, f.pool) }

// rewriteConsistently changes entry idx and rewrites every stored hash to
// match, as an attacker with write access would: only the signed
// checkpoints and the chain can reveal it.
func rewriteConsistently(idx int64) func(t *testing.T, pool *pgxpool.Pool) {
	return func(t *testing.T, pool *pgxpool.Pool) {
		ctx := context.Background()
		mustExec(t, pool, `UPDATE ledger.entries SET data = convert_to(replace(convert_from(data, 'UTF8'), 'plot.mapped', 'plot.moved!'), 'UTF8'), kind = 'plot.moved!' WHERE idx = $1`, idx)
		rows, err := pool.Query(ctx, "SELECT data FROM ledger.entries ORDER BY idx")
		if err != nil {
			t.Fatal(err)
		}
		stored := map[int64]tlog.Hash{}
		r := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(ids))
			for i, id := range ids {
				out[i] = stored[id]
			}
			return out, nil
		})
		var n int64
		for rows.Next() {
			var data []byte
			if err := rows.Scan(&data); err != nil {
				t.Fatal(err)
			}
			hs, err := tlog.StoredHashes(n, data, r)
			if err != nil {
				t.Fatal(err)
			}
			for k, h := range hs {
				stored[tlog.StoredHashIndex(0, n)+int64(k)] = h
			}
			n++
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		for id, h := range stored {
			ledgertest.MustSetStoredHash(t, pool, id, h[:])
		}
	}
}

// TestVerifyCommand covers what `tani verify` says when nothing is wrong,
// and its chain policy: without -chain=skip, an audit that could not
// consult the chain fails, whatever the database says.
func TestVerifyCommand(t *testing.T) {
	n, fc := mustChain(t)
	t.Run("OK", func(t *testing.T) {
		f := mustTamperable(t, fc)
		out, err := f.verify(t, true)
		if err != nil {
			t.Fatalf("got %v, want a clean audit\n%s", err, out)
		}
		for _, want := range []string{
			fmt.Sprintf("chain: channel tani, chaincode anchor: 4 anchors of %s, the latest at size 40 (%s)\n", f.j.Verifier().Name(), chainRef(f.orig[40])),
			"checked 40 entries and 4 checkpoints (4 chain anchors; 4 of 4 anchor references match the chain)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if want := "OK: the journal extends every anchor the chain holds (largest anchored size 40)\n"; !strings.HasSuffix(out, want) {
			t.Errorf("got\n%s\nwant it to end with %q", out, want)
		}
	})
	t.Run("OKUnsignedTail", func(t *testing.T) {
		f := mustTamperable(t, fc)
		if _, err := f.j.Append(context.Background(), rev("late", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		out, err := f.verify(t, true)
		if err != nil || !strings.Contains(out, "the last 1 entries are not yet covered by a checkpoint") {
			t.Errorf("got %v\n%s\nwant OK with a note about 1 unsigned entry", err, out)
		}
	})
	t.Run("OKChainHoldsNothingYet", func(t *testing.T) {
		f := mustTamperable(t, nil) // not anchored, not registered
		f.fc = fc
		out, err := f.verify(t, true)
		if err != nil || !strings.Contains(out, "is not registered and has no anchors") ||
			!strings.HasSuffix(out, "OK: the chain holds no anchor of this log yet; the database agrees with itself\n") {
			t.Errorf("got %v\n%s\nwant OK saying the chain holds nothing", err, out)
		}
	})
	t.Run("OKDatabaseOnly", func(t *testing.T) {
		f := mustTamperable(t, fc)
		out, err := f.verify(t, false)
		if err != nil {
			t.Fatalf("got %v\n%s", err, out)
		}
		for _, want := range []string{
			"chain: NOT consulted (-chain=skip)",
			"(4 anchor references, none checked against the chain)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if !strings.HasSuffix(out, "OK (database only: the chain was not consulted)\n") {
			t.Errorf("got\n%s\nwant a database-only OK", out)
		}
	})
	run := func(t *testing.T, f *tamperable, cmd ledger.VerifyCommand) (string, error) {
		t.Helper()
		key := filepath.Join(t.TempDir(), "ledger.pub")
		if err := os.WriteFile(key, []byte(f.j.VerifierKey()), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd.DB, cmd.KeyFile = postgres.Config{URL: f.pool.Config().ConnString()}, key
		var out bytes.Buffer
		err := cmd.Run(context.Background(), &out, io.Discard)
		return out.String(), err
	}
	t.Run("ErrNoChainConfigured", func(t *testing.T) {
		f := mustTamperable(t, fc)
		out, err := run(t, f, ledger.VerifyCommand{NoChain: "no Fabric network is configured: -fabric.endpoint is empty"})
		if err == nil {
			t.Fatalf("got nil error, want a failure: the chain was not consulted\n%s", out)
		}
		for _, want := range []string{
			"chain: NOT consulted: no Fabric network is configured: -fabric.endpoint is empty\n",
			"FAIL: the database agrees with itself, but the chain was not consulted",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("ErrChainUnreachable", func(t *testing.T) {
		f := mustTamperable(t, fc)
		id, err := n.Identity("TaniMSP", "admin")
		if err != nil {
			t.Fatal(err)
		}
		cfg := n.ConnectionInfo().ClientConfig(id, "anchor")
		cfg.Endpoint, cfg.Retries = closedAddr(t), 0
		down, err := fabric.Dial(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		out, err := run(t, f, ledger.VerifyCommand{ReadChain: func(ctx context.Context, origin string) (*ledger.Chain, error) {
			return anchor.ReadChain(ctx, down, origin)
		}})
		if err == nil || !strings.Contains(out, "chain: NOT consulted: read chain: registration of "+f.j.Verifier().Name()) {
			t.Errorf("got %v\n%s\nwant a failure saying the chain could not be read", err, out)
		}
	})
	t.Run("ErrUnknownChainMode", func(t *testing.T) {
		f := mustTamperable(t, nil)
		if _, err := run(t, f, ledger.VerifyCommand{ChainMode: "maybe"}); err == nil || !strings.Contains(err.Error(), `-chain="maybe"`) {
			t.Errorf("got %v, want the mode refused", err)
		}
	})
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestAuditChainRaces covers anchors made while an audit runs: the chain
// is read first, then the database; neither an anchor accepted after the
// chain was read nor a reference recorded after the snapshot began is a
// fault.
func TestAuditChainRaces(t *testing.T) {
	ctx := context.Background()
	_, fc := mustChain(t)
	t.Run("OKAnchoredAfterTheChainWasRead", func(t *testing.T) {
		f := mustTamperable(t, fc)
		c, err := anchor.ReadChain(ctx, fc, f.j.Verifier().Name())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.j.Append(ctx, rev("late", 1, "{}")); err != nil {
			t.Fatal(err)
		}
		f.signAndAnchor(t)
		rep, err := f.j.Audit(ctx, ledger.AuditOptions{Chain: c})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Anchors != 5 || rep.ChainAnchors != 5 {
			t.Errorf("got faults %v, %d of %d chain anchors matched, want none and 5 of 5", rep.Faults, rep.Anchors, rep.ChainAnchors)
		}
	})
	t.Run("OKReferenceRecordedDuringTheAudit", func(t *testing.T) {
		f := mustTamperable(t, fc)
		c, err := anchor.ReadChain(ctx, fc, f.j.Verifier().Name())
		if err != nil {
			t.Fatal(err)
		}
		// The anchorer has not recorded the last anchor yet when the
		// audit's snapshot begins; it does during the audit.
		mustExec(t, f.pool, `UPDATE ledger.checkpoints SET anchor = NULL WHERE size = 40`)
		var recordErr error
		recorded := false
		rep, err := f.j.Audit(ctx, ledger.AuditOptions{Chain: c, ChunkSize: 10, Progress: func(done, total int64) {
			if !recorded {
				recorded = true
				recordErr = f.j.SetAnchor(ctx, 40, *f.orig[40].Anchor)
			}
		}})
		if err != nil || recordErr != nil {
			t.Fatal(err, recordErr)
		}
		if !rep.OK() || rep.Anchors != 4 {
			t.Errorf("got faults %v, %d references matched, want none and 4", rep.Faults, rep.Anchors)
		}
	})
	t.Run("ErrReferenceStillMissingAfterTheAudit", func(t *testing.T) {
		f := mustTamperable(t, fc)
		c, err := anchor.ReadChain(ctx, fc, f.j.Verifier().Name())
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, f.pool, `UPDATE ledger.checkpoints SET anchor = NULL WHERE size = 40`)
		rep, err := f.j.Audit(ctx, ledger.AuditOptions{Chain: c})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Faults) != 1 || rep.Faults[0].Kind != ledger.FaultAnchorRemoved || rep.Faults[0].Size != 40 {
			t.Errorf("got faults %v, want the removed reference of size 40", rep.Faults)
		}
	})
}

// TestAuditWhileAppending audits while another goroutine appends, signs
// checkpoints and redacts: the audit reads one snapshot, so work committed
// meanwhile is never reported as a fault.
func TestAuditWhileAppending(t *testing.T) {
	j := mustTamperable(t, nil).j
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if ctx.Err() != nil {
				done <- nil
				return
			}
			id := fmt.Sprintf("busy-%d", i)
			_, err := j.Append(ctx, rev(id, 1, "{}"))
			if err == nil {
				_, err = j.SignCheckpoint(ctx)
			}
			if err == nil && i%3 == 0 {
				_, err = j.Redact(ctx, id, 1, "erasure request")
			}
			if err != nil && ctx.Err() == nil {
				done <- err
				return
			}
		}
	}()
	for range 15 {
		rep, err := j.Audit(context.Background(), ledger.AuditOptions{ChunkSize: 7})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Errorf("audit of size %d: got faults %v, want none", rep.TreeSize, rep.Faults)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
}
