package attest_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/natsbus/natstest"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/services/attest"
)

// tombstone records that attest erased the farmer, as its erasure does
// first.
func (e *env) tombstone(t *testing.T, farmer string) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO attest.erasures (erasure_id, farmer_id) VALUES ($1, $2)`, uuid.NewString(), farmer); err != nil {
		t.Fatal(err)
	}
}

func TestProcess_ErasedFarmer(t *testing.T) {
	ctx := context.Background()
	t.Run("OK_RecordsAreNeitherDecidedNorJournaled", func(t *testing.T) {
		e := mustEnv(t, nil)
		a := e.mustAgent(t, "Central Java")
		gone := farm(t, a, 110.40, -7.25, 0.001, nationalID(), phone())
		kept := farm(t, a, 110.50, -7.25, 0.001, nationalID(), phone())
		e.tombstone(t, record.FarmerID(gone[0].Payload))
		ds := mustProcess(t, e, append(gone, kept...)...)
		for i, d := range ds {
			want := attest.StatusVerified
			if i < len(gone) {
				want = attest.StatusErased
			}
			if d.Status != want {
				t.Errorf("%s: got %s (%s), want %s", d.Type, d.Status, d.Reason, want)
			}
		}
		var records, farmers, entries int
		e.pool.QueryRow(ctx, `SELECT count(*) FROM attest.records WHERE farmer_id = $1`, record.FarmerID(gone[0].Payload)).Scan(&records)
		e.pool.QueryRow(ctx, `SELECT count(*) FROM attest.farmers WHERE farmer_id = $1`, record.FarmerID(gone[0].Payload)).Scan(&farmers)
		e.pool.QueryRow(ctx, `SELECT count(*) FROM ledger.entries WHERE record_id = $1`, gone[0].Env.ID).Scan(&entries)
		if records+farmers+entries != 0 {
			t.Errorf("stored %d decisions, %d projections, %d journal entries about an erased farmer; want none", records, farmers, entries)
		}
	})
	t.Run("OK_ErasedBetweenDecisionAndJournal", func(t *testing.T) {
		// Both farmers' records are decided while the journal is down;
		// then one farmer is erased. The journal refuses that farmer's
		// records from then on, and the sweeper must still journal the
		// other's.
		_, js := natstest.MustJetStream(t, natstest.MustServer(t))
		e := mustEnvJS(t, nil, js)
		a := e.mustAgent(t, "Central Java")
		gone := farm(t, a, 110.40, -7.25, 0.001, nationalID(), phone())
		kept := farm(t, a, 110.50, -7.25, 0.001, nationalID(), phone())
		mustExec(t, e.pool, `CREATE FUNCTION public.journal_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'journal down'; END $$`)
		mustExec(t, e.pool, `CREATE TRIGGER journal_down BEFORE INSERT ON ledger.entries FOR EACH STATEMENT EXECUTE FUNCTION public.journal_down()`)
		if _, err := e.svc.Process(ctx, append(gone, kept...)); err == nil {
			t.Fatal("process: got no error while the journal is down, want one")
		}
		mustExec(t, e.pool, `DROP TRIGGER journal_down ON ledger.entries`)
		farmer := record.FarmerID(gone[0].Payload)
		e.tombstone(t, farmer)
		var ids []string
		for _, in := range gone {
			ids = append(ids, in.Env.ID)
		}
		if _, err := e.journal.Erase(ctx, ledger.Erasure{ID: uuid.NewString(), Revision: 2, Kind: "farmer.erasure.executed",
			Subject: "farmer " + farmer, RecordIDs: ids, OccurredAt: time.Now(), SignatureRef: "attest"}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		var journaled, erased int
		e.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE farmer_id <> $1), count(*) FILTER (WHERE farmer_id = $1)
			FROM attest.records WHERE leaf_index IS NOT NULL`, farmer).Scan(&journaled, &erased)
		if journaled != len(kept) || erased != 0 {
			t.Errorf("journaled %d of the other farmer's records and %d of the erased one's, want %d and 0", journaled, erased, len(kept))
		}
	})
}
