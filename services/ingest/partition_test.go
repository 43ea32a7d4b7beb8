package ingest_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
	"github.com/tani-platform/tani/services/ingest"
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
	// The platform under test gives the database, the agent and its
	// device; the batch goes through a service of the test's own on a
	// second NATS server, so the platform's ingest never sees it.
	platformNATS := natstest.MustServer(t)
	tani := apptest.MustStart(t, "-nats.url="+platformNATS.ClientURL())
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	other := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, other)
	ctx := context.Background()
	if err := natsbus.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, pii.KeySize)
	rand.Read(key)
	keys, err := pii.New(key)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ingest.New(ingest.Config{MaxBatch: 512, Partitions: 4}, ingest.Deps{
		Pool: tani.DB, JS: js, PII: keys, Logger: slog.New(slog.DiscardHandler),
		Consumer: natsbus.NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		t.Fatal(err)
	}

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
	publish(t, js, ids, records)
	cons, err := js.CreateOrUpdateConsumer(ctx, natsbus.StreamFarm, jetstream.ConsumerConfig{Durable: "partitions-test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	fetched, err := cons.Fetch(len(records), jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for msg := range fetched.Messages() {
		msgs = append(msgs, msg)
	}
	if len(msgs) != len(records) {
		t.Fatalf("fetched %d messages, want the %d published", len(msgs), len(records))
	}

	errs := svc.HandleBatch(ctx, msgs)

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
		for i, msg := range msgs {
			var env struct {
				ID      string
				Payload struct {
					FarmerID string `json:"farmer_id"`
				}
			}
			if err := json.Unmarshal(msg.Data(), &env); err != nil {
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
