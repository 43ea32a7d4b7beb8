package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/record"
)

// TestHandleBatch_Partitions hands one batch straight to an ingest
// service that stores it in several transactions side by side, and checks
// the two properties that splitting a batch must keep:
//   - a message's outcome is nil only if its record is stored: a
//     partition whose transaction fails (here a trigger refuses one
//     farmer's records) leaves its records unacknowledged and changes
//     nothing for the other partitions' records, which are stored and
//     acknowledged;
//   - each farmer's records are stored together and in order: a consent
//     granted and revoked in the same batch ends revoked for every farmer
//     (split across transactions running side by side, neither would see
//     the other and the consent would stay granted).
func TestHandleBatch_Partitions(t *testing.T) {
	// A service of the test's own, storing a batch in 4 transactions.
	rig := mustBatchRig(t, 4)
	ctx, tani, agent := context.Background(), rig.tani, rig.agent

	hour := time.Now().Add(-time.Hour)
	doomed := uuid.NewString()
	if _, err := tani.DB.Exec(ctx, fmt.Sprintf(`
		CREATE FUNCTION refuse_doomed_farmer() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
		    IF NEW.payload->>'farmer_id' = '%s' THEN RAISE EXCEPTION 'the test refuses this farmer'; END IF;
		    RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_doomed BEFORE INSERT ON ingest.submissions FOR EACH ROW EXECUTE FUNCTION refuse_doomed_farmer();`, doomed)); err != nil {
		t.Fatal(err)
	}

	type rec struct {
		id, farmer, consent string
	}
	var records []json.RawMessage
	var ids []string
	var all []rec
	add := func(r rec, raw json.RawMessage) {
		records, ids, all = append(records, raw), append(ids, r.id), append(all, r)
	}
	farmers := []string{doomed}
	for range 24 {
		farmers = append(farmers, uuid.NewString())
	}
	for i, farmer := range farmers {
		consent := uuid.NewString()
		id := uuid.NewString()
		add(rec{id, farmer, ""}, sign(t, agent.Client, id, "farmer.registered", farmer, "", hour))
		id = uuid.NewString()
		raw, _, err := agent.Client.RecordWithID(id, record.TypeConsentGranted, hour, loc, map[string]any{
			"farmer_id": farmer, "consent_id": consent, "grantee_organization_id": uuid.NewString(), "scopes": []string{"plots"},
			"expires_at": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339), "otp_challenge_id": uuid.NewString(), "otp_code": "123456"})
		if err != nil {
			t.Fatal(err)
		}
		add(rec{id, farmer, consent}, raw)
		id = uuid.NewString()
		raw, _, err = agent.Client.RecordWithID(id, record.TypeConsentRevoked, hour.Add(time.Duration(i+1)*time.Second), loc, map[string]any{
			"farmer_id": farmer, "consent_id": consent, "reason": "changed bank"})
		if err != nil {
			t.Fatal(err)
		}
		add(rec{id, farmer, ""}, raw)
	}
	errs := rig.batch(records...)

	t.Run("OK_AckedOnlyWhatIsStored", func(t *testing.T) {
		var storedIDs []string
		rows, err := tani.DB.Query(ctx, `SELECT id::text FROM ingest.submissions WHERE id = ANY($1::uuid[])`, ids)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			rows.Scan(&id)
			storedIDs = append(storedIDs, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		stored := map[string]bool{}
		for _, id := range storedIDs {
			stored[id] = true
		}
		for i, raw := range records {
			var env struct {
				ID      string
				Payload struct {
					FarmerID string `json:"farmer_id"`
				}
			}
			if err := json.Unmarshal(raw, &env); err != nil {
				t.Fatal(err)
			}
			isDoomed := env.Payload.FarmerID == doomed
			switch {
			case errs[i] == nil && !stored[env.ID]:
				t.Errorf("record %s: outcome nil (it would be acked) but not stored", env.ID)
			case isDoomed && errs[i] == nil:
				t.Errorf("record %s of the refused farmer: outcome nil, want an error", env.ID)
			case isDoomed && (apperr.Is(errs[i], apperr.Invalid) || apperr.Is(errs[i], apperr.Conflict)):
				t.Errorf("record %s of the refused farmer: %v, want a transient error (retried, not dead-lettered)", env.ID, errs[i])
			case !isDoomed && errs[i] != nil:
				t.Errorf("record %s of another farmer: %v, want it stored whatever happened to the refused farmer's partition", env.ID, errs[i])
			}
		}
		if want := len(records) - 3; len(storedIDs) != want {
			t.Errorf("%d records stored, want %d (all but the refused farmer's 3)", len(storedIDs), want)
		}
	})
	t.Run("OK_EachFarmersRecordsTogetherInOrder", func(t *testing.T) {
		for _, r := range all {
			if r.consent == "" || r.farmer == doomed {
				continue
			}
			var revoked bool
			if err := tani.DB.QueryRow(ctx, `SELECT revoked_at IS NOT NULL FROM ingest.consents WHERE consent_id = $1`, r.consent).Scan(&revoked); err != nil {
				t.Fatalf("consent %s of farmer %s: %v", r.consent, r.farmer, err)
			}
			if !revoked {
				t.Errorf("consent %s of farmer %s: granted and revoked in one batch, stored as not revoked", r.consent, r.farmer)
			}
		}
	})
}
