package ingest_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

var loc = client.Location{Lat: -7.25, Lon: 110.4, AccuracyM: 4}

// sign makes a signed record of typ about farmer and plot, captured at.
func sign(t testing.TB, c *client.Client, id, typ, farmer, plot string, at time.Time) json.RawMessage {
	t.Helper()
	raw, _, err := c.RecordWithID(id, record.Type(typ), at, loc, clienttest.Payloads(farmer, plot, time.Now())[typ])
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// publish sends records straight to the stream, as a compromised or buggy
// publisher could, without waiting between them so that ingest takes them
// in batches. msgIDs may differ from record ids to get past JetStream's
// de-duplication, as a republish after its window would.
func publish(t testing.TB, js jetstream.JetStream, msgIDs []string, records []json.RawMessage) {
	t.Helper()
	for i, raw := range records {
		var env struct{ Type string }
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(natsbus.SubjectSubmittedPrefix + env.Type)
		msg.Data = raw
		msg.Header.Set(jetstream.MsgIDHeader, msgIDs[i])
		if _, err := js.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("publish not acked within 10s")
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	polltest.Eventually(t, 30*time.Second, func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	})
}

// TestHandleBatch sends good records mixed with every kind of record
// ingest must refuse, in one burst: the good ones are stored exactly once
// whatever batches they land in, each bad one is refused alone, with its
// reason, and dead-lettered.
func TestHandleBatch(t *testing.T) {
	s := natstest.MustServer(t)
	_, js := natstest.MustJetStream(t, s)
	tani := apptest.MustStart(t, "-nats.url="+s.ClientURL())
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	hour := time.Now().Add(-time.Hour)

	// Two farmers of the agent; the plot belongs to the first.
	alice, bob, plot := uuid.NewString(), uuid.NewString(), uuid.NewString()
	setup := []json.RawMessage{
		sign(t, agent.Client, uuid.NewString(), "farmer.registered", alice, "", hour),
		sign(t, agent.Client, uuid.NewString(), "farmer.registered", bob, "", hour),
		sign(t, agent.Client, uuid.NewString(), "plot.mapped", alice, plot, hour),
	}
	if _, err := agent.Sync(ctx, setup); err != nil {
		t.Fatal(err)
	}
	stored := func(ids ...string) int {
		var n int
		if err := tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.submissions WHERE id = ANY($1::uuid[])`, ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var setupIDs []string
	for _, raw := range setup {
		var env struct{ ID string }
		json.Unmarshal(raw, &env)
		setupIDs = append(setupIDs, env.ID)
	}
	waitFor(t, "set-up stored", func() bool { return stored(setupIDs...) == len(setupIDs) })

	var records []json.RawMessage
	var msgIDs, good []string
	add := func(msgID string, raw json.RawMessage) { msgIDs, records = append(msgIDs, msgID), append(records, raw) }
	for i := range 42 {
		id := uuid.NewString()
		typ := []string{"crop.planted", "input.applied", "harvest.recorded", "sale.recorded", "loan.applied", "loan.accepted", "repayment.collected"}[i%7]
		add(id, sign(t, agent.Client, id, typ, alice, plot, hour))
		good = append(good, id)
	}
	// Signed by a key that is not the device's enrolled one.
	forger := client.New(tani.URL, nil)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	forger.UseDevice(agent.DeviceID, otherKey)
	forged := uuid.NewString()
	add(forged, sign(t, forger, forged, "harvest.recorded", alice, plot, hour))
	// Alice's plot mapped again, newer, as Bob's.
	stolen := uuid.NewString()
	add(stolen, sign(t, agent.Client, stolen, "plot.mapped", bob, plot, time.Now()))
	// The same record id twice with different content.
	twin := uuid.NewString()
	add(twin, sign(t, agent.Client, twin, "crop.planted", alice, plot, hour))
	changed := sign(t, agent.Client, twin, "crop.planted", alice, plot, hour.Add(time.Minute))
	add(twin+"-again", changed)
	good = append(good, twin)

	deadBefore := natstest.Count(t, js, natsbus.StreamDead, "")
	publish(t, js, msgIDs, records)

	waitFor(t, "good records stored", func() bool { return stored(good...) == len(good) })
	waitFor(t, "bad records dead-lettered", func() bool { return natstest.Count(t, js, natsbus.StreamDead, "") >= deadBefore+3 })

	t.Run("OK_GoodRecordsStoredOnce", func(t *testing.T) {
		var rows, events int
		err := tani.DB.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM ingest.submissions WHERE id = ANY($1::uuid[])),
			       (SELECT count(*) FROM ingest.crop_cycles WHERE record_id = ANY($1::uuid[])) +
			       (SELECT count(*) FROM ingest.input_applications WHERE record_id = ANY($1::uuid[])) +
			       (SELECT count(*) FROM ingest.harvests WHERE record_id = ANY($1::uuid[])) +
			       (SELECT count(*) FROM ingest.sales WHERE record_id = ANY($1::uuid[])) +
			       (SELECT count(*) FROM ingest.loan_records WHERE record_id = ANY($1::uuid[]))`, good).Scan(&rows, &events)
		if err != nil {
			t.Fatal(err)
		}
		if rows != len(good) || events != len(good) {
			t.Errorf("%d submissions and %d domain rows, want %d of each", rows, events, len(good))
		}
	})
	t.Run("ErrRefused_EachWithItsReason", func(t *testing.T) {
		for id, want := range map[string]string{
			forged: "signature does not verify",
			stolen: "belongs to another farmer",
			twin:   "different content",
		} {
			// Projected from the dead letter by mobile-api, for the
			// agent's status view and the operators' list.
			var reason string
			waitFor(t, "refusal of "+id+" recorded", func() bool {
				return tani.DB.QueryRow(ctx, `SELECT notice FROM mobile.refusals WHERE record_id = $1 AND stage = 'ingest'`, id).Scan(&reason) == nil
			})
			if !strings.Contains(reason, want) {
				t.Errorf("refusal of %s = %q, want it to say %q", id, reason, want)
			}
		}
		if n := stored(forged, stolen); n != 0 {
			t.Errorf("%d refused records stored, want 0", n)
		}
		if n := natstest.Count(t, js, natsbus.StreamDead, "") - deadBefore; n != 3 {
			t.Errorf("%d dead letters, want 3", n)
		}
	})
	t.Run("OK_OriginalsKept", func(t *testing.T) {
		var owner string
		if err := tani.DB.QueryRow(ctx, `SELECT farmer_id::text FROM ingest.plots WHERE plot_id = $1`, plot).Scan(&owner); err != nil {
			t.Fatal(err)
		}
		if owner != alice {
			t.Errorf("plot owner = %s, want Alice %s", owner, alice)
		}
		var captured time.Time
		if err := tani.DB.QueryRow(ctx, `SELECT captured_at FROM ingest.submissions WHERE id = $1`, twin).Scan(&captured); err != nil {
			t.Fatal(err)
		}
		if want := hour.UTC().Truncate(time.Second); !captured.Equal(want) {
			t.Errorf("stored twin captured at %s, want the first content's %s", captured, want)
		}
	})
}

// BenchmarkIngest measures ingest alone: signed records already on the
// stream, through verification, one transaction per batch and the
// farm.ingested announcement, until Postgres has them all. MaxBatch=1 is
// the one-transaction-per-record baseline.
func BenchmarkIngest(b *testing.B) {
	const perOp = 2000
	for _, maxBatch := range []int{1, 256} {
		b.Run(fmt.Sprintf("MaxBatch=%d", maxBatch), func(b *testing.B) {
			s := natstest.MustServer(b)
			_, js := natstest.MustJetStream(b, s)
			tani := apptest.MustStart(b, "-nats.url="+s.ClientURL(), fmt.Sprintf("-ingest.max-batch=%d", maxBatch))
			agent := clienttest.MustAgent(b, tani.URL, tani.OperatorToken, "Central Java")
			farmer, plot := uuid.NewString(), uuid.NewString()
			hour := time.Now().Add(-time.Hour)
			if _, err := agent.Sync(context.Background(), []json.RawMessage{sign(b, agent.Client, uuid.NewString(), "farmer.registered", farmer, "", hour)}); err != nil {
				b.Fatal(err)
			}
			types := []string{"crop.planted", "input.applied", "harvest.recorded", "sale.recorded", "plot.mapped"}
			var total time.Duration
			for range b.N {
				b.StopTimer()
				ids := make([]string, perOp)
				records := make([]json.RawMessage, perOp)
				for i := range records {
					ids[i] = uuid.NewString()
					records[i] = sign(b, agent.Client, ids[i], types[i%len(types)], farmer, plot, hour)
				}
				b.StartTimer()
				start := time.Now()
				publish(b, js, ids, records)
				waitFor(b, "records stored", func() bool {
					var n int
					if err := tani.DB.QueryRow(context.Background(), `SELECT count(*) FROM ingest.submissions WHERE id = ANY($1::uuid[])`, ids).Scan(&n); err != nil {
						b.Fatal(err)
					}
					return n == perOp
				})
				total += time.Since(start)
			}
			b.ReportMetric(float64(perOp*b.N)/total.Seconds(), "records/s")
		})
	}
}
