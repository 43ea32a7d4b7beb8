package attest_test

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"strings"
	"testing"

	"github.com/tani-platform/tani/internal/natsbus"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/services/attest"
)

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// progress counts, among ids, the records journaled and the decisions
// announced.
func progress(t *testing.T, e *env, ids []string) (journaled, announced int) {
	t.Helper()
	if err := e.pool.QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE leaf_index IS NOT NULL), count(*) FILTER (WHERE published = decision)
		FROM attest.records WHERE record_id = ANY($1::uuid[]) AND status = 'verified'`, ids).Scan(&journaled, &announced); err != nil {
		t.Fatal(err)
	}
	return journaled, announced
}

func idsOf(ins []attest.Input) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.Env.ID
	}
	return out
}

// TestSweep_RetriesAfterFailures makes journaling, then announcing, fail
// after the decisions are committed, and checks that the sweeper finishes
// the work once the failure is gone.
func TestSweep_RetriesAfterFailures(t *testing.T) {
	srv := natstest.MustServer(t)
	brokenConn, brokenJS := natstest.MustJetStream(t, srv)
	_, js := natstest.MustJetStream(t, srv)
	e := mustEnvJS(t, nil, js)
	ag := e.mustAgent(t, "Central Java")
	ctx := context.Background()

	t.Run("OK_JournalingRetried", func(t *testing.T) {
		// The journal's database refuses every new entry until the
		// trigger is dropped.
		mustExec(t, e.pool, `CREATE FUNCTION public.journal_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'journal storage unavailable'; END $$`)
		mustExec(t, e.pool, `CREATE TRIGGER journal_down BEFORE INSERT ON ledger.entries FOR EACH STATEMENT EXECUTE FUNCTION public.journal_down()`)
		ins := farm(t, ag, 110.40, -7.25, 0.001, nationalID(), phone())
		if _, err := e.svc.Process(ctx, ins); err == nil {
			t.Fatal("process: got no error while the journal is down, want one")
		}
		if journaled, _ := progress(t, e, idsOf(ins)); journaled != 0 {
			t.Fatalf("got %d journaled while the journal is down, want 0", journaled)
		}
		var verified int
		e.pool.QueryRow(ctx, `SELECT count(*) FROM attest.records WHERE record_id = ANY($1::uuid[]) AND status = 'verified'`, idsOf(ins)).Scan(&verified)
		if verified != len(ins) {
			t.Fatalf("got %d decisions stored, want all %d (only journaling failed)", verified, len(ins))
		}
		// Verified means journaled: until then the public status says so.
		var shown string
		e.pool.QueryRow(ctx, `SELECT status FROM attest.record_status WHERE id = $1`, ins[0].Env.ID).Scan(&shown)
		if shown != attest.StatusJournaling {
			t.Errorf("public status while the journal is down: got %q, want %q", shown, attest.StatusJournaling)
		}
		if why, err := attest.NotJournaledReason(ctx, e.pool, ins[0].Env.ID); err != nil || !strings.HasPrefix(why, "not yet journaled") {
			t.Errorf("NotJournaledReason: got %q, %v, want not yet journaled", why, err)
		}

		mustExec(t, e.pool, `DROP TRIGGER journal_down ON ledger.entries`)
		if err := e.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		if journaled, announced := progress(t, e, idsOf(ins)); journaled != len(ins) || announced != len(ins) {
			t.Errorf("after the sweep: got %d journaled and %d announced, want all %d", journaled, announced, len(ins))
		}
		e.pool.QueryRow(ctx, `SELECT status FROM attest.record_status WHERE id = $1`, ins[0].Env.ID).Scan(&shown)
		if why, err := attest.NotJournaledReason(ctx, e.pool, ins[0].Env.ID); shown != attest.StatusVerified || why != "" || err != nil {
			t.Errorf("once journaled: got status %q and reason %q, %v, want verified and none", shown, why, err)
		}
		// The sweeper rebuilt the revisions from the sealed records; the
		// journal must hold the protected registration, without the
		// national ID and phone the device signed.
		protected, err := record.Protected(ins[0].Canonical, mustPII(t))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := e.journal.Receipt(ctx, ins[0].Env.ID, 1)
		if err != nil {
			t.Fatalf("receipt: %v", err)
		}
		res, err := rec.Verify(e.journal.Verifier())
		if err != nil {
			t.Fatalf("receipt does not verify: %v", err)
		}
		if got, want := res.Entry.PayloadHash, sha256.Sum256(protected); got != want {
			t.Errorf("journaled payload hash %x, want the protected registration's %x", got, want)
		}
	})
	t.Run("OK_CrashBeforeLeafIndexStoredRepairedInPlace", func(t *testing.T) {
		// Process journals fresh records from memory; the sweeper rebuilds
		// them from the stored row. Both must be the same revision, or the
		// journal refuses the second as a conflicting one.
		ins := farm(t, ag, 110.45, -7.25, 0.001, nationalID(), phone())
		ds := mustProcess(t, e, ins...)
		var size, after int64
		e.pool.QueryRow(ctx, `SELECT size FROM ledger.tree`).Scan(&size)
		mustExec(t, e.pool, `UPDATE attest.records SET leaf_index = NULL WHERE leaf_index IS NOT NULL`)

		if err := e.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		for i, d := range ds {
			var leaf *int64
			e.pool.QueryRow(ctx, `SELECT leaf_index FROM attest.records WHERE record_id = $1`, d.RecordID).Scan(&leaf)
			if leaf == nil || d.LeafIndex == nil || *leaf != *d.LeafIndex {
				t.Errorf("%s: got leaf %v after the sweep, want the original %v", ins[i].Env.Type, leaf, d.LeafIndex)
			}
		}
		e.pool.QueryRow(ctx, `SELECT size FROM ledger.tree`).Scan(&after)
		if after != size {
			t.Errorf("journal grew from %d to %d leaves, want unchanged", size, after)
		}
	})
	t.Run("OK_AnnouncingRetried", func(t *testing.T) {
		flaky := attest.New(attest.Config{}, attest.Deps{Pool: e.pool, JS: brokenJS, Journal: e.journal, PII: mustPII(t), Logger: slog.New(slog.DiscardHandler)})
		brokenConn.Close()
		ins := farm(t, ag, 110.50, -7.25, 0.001, nationalID(), phone())
		if _, err := flaky.Process(ctx, ins); err != nil {
			t.Fatalf("process: %v", err)
		}
		if err := flaky.Sweep(ctx); err == nil {
			t.Fatal("sweep: got no error with NATS unreachable, want one")
		}
		if journaled, announced := progress(t, e, idsOf(ins)); journaled != len(ins) || announced != 0 {
			t.Fatalf("got %d journaled and %d announced with NATS unreachable, want %d and 0", journaled, announced, len(ins))
		}
		before := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectAttestedPrefix+">")

		if err := e.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		if _, announced := progress(t, e, idsOf(ins)); announced != len(ins) {
			t.Errorf("after the sweep: got %d announced, want all %d", announced, len(ins))
		}
		if got := natstest.Count(t, js, natsbus.StreamFarm, natsbus.SubjectAttestedPrefix+">") - before; got != uint64(len(ins)) {
			t.Errorf("got %d farm.attested messages from the sweep, want %d", got, len(ins))
		}
	})
}
