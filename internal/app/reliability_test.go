package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/porttest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestReliability_NothingAcknowledgedIsLost sends batches the way a phone
// does (the same batch again until it is acknowledged) while the ingest
// process is stopped and replaced and the NATS server is restarted. Every
// record the API acknowledged must end up in Postgres exactly once.
func TestReliability_NothingAcknowledgedIsLost(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts servers")
	}
	dir, addr := t.TempDir(), porttest.Addr(t)
	nats := natstest.MustServerOn(t, dir, addr)
	url := "nats://" + addr
	api := apptest.MustStart(t, "-target=mobile-api", "-nats.url="+url, "-mobile.publish-timeout=2s")
	ingest := apptest.MustStart(t, "-target=ingest", "-nats.url="+url, "-database.url="+api.DatabaseURL)
	agent := clienttest.MustAgent(t, api.URL, api.OperatorToken, "Central Java")
	ctx := context.Background()
	farmer := uuid.NewString()
	loc := client.Location{Lat: -7.25, Lon: 110.4, AccuracyM: 4}

	var mu sync.Mutex
	acked := map[string]bool{}
	send := func(batches int) {
		for range batches {
			var batch []json.RawMessage
			if len(acked) == 0 {
				raw, _, _ := agent.Record("farmer.registered", time.Now(), loc, clienttest.Payloads(farmer, "", time.Now())["farmer.registered"])
				batch = append(batch, raw)
			}
			for range 20 {
				raw, _, err := agent.Record("harvest.recorded", time.Now(), loc, clienttest.Payloads(farmer, uuid.NewString(), time.Now())["harvest.recorded"])
				if err != nil {
					t.Error(err)
					return
				}
				batch = append(batch, raw)
			}
			for attempt := 0; ; attempt++ {
				res, err := agent.Sync(ctx, batch)
				if err == nil {
					mu.Lock()
					for _, r := range res {
						if r.Status == "accepted" || r.Status == "duplicate" {
							acked[r.ID] = true
						} else {
							t.Errorf("record %s %s: %v", r.ID, r.Status, r.Errors)
						}
					}
					mu.Unlock()
					break
				}
				if attempt > 200 {
					t.Errorf("batch never acknowledged: %v", err)
					return
				}
				time.Sleep(100 * time.Millisecond) // a phone retries later
			}
		}
	}

	done := make(chan struct{})
	go func() { defer close(done); send(30) }()

	time.Sleep(300 * time.Millisecond)
	if err := ingest.Stop(); err != nil { // the ingest process goes away mid-stream…
		t.Errorf("stop ingest: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	apptest.MustStart(t, "-target=ingest", "-nats.url="+url, "-database.url="+api.DatabaseURL) // …and a new one takes over

	time.Sleep(300 * time.Millisecond)
	nats.Shutdown() // the broker restarts on the same store
	nats.WaitForShutdown()
	time.Sleep(500 * time.Millisecond)
	natstest.MustServerOn(t, dir, addr)
	<-done

	mu.Lock()
	want := len(acked)
	ids := make([]string, 0, want)
	for id := range acked {
		ids = append(ids, id)
	}
	mu.Unlock()
	if want < 600 {
		t.Fatalf("only %d records acknowledged; the test did not exercise the path", want)
	}
	var stored, rows int
	polltest.Wait(60*time.Second, func() error { // then say what was stored, either way
		if err := api.DB.QueryRow(ctx, `SELECT count(DISTINCT id), count(*) FROM ingest.submissions WHERE id = ANY($1::uuid[])`, ids).Scan(&stored, &rows); err != nil {
			return err
		}
		if stored != want {
			return fmt.Errorf("%d of %d stored", stored, want)
		}
		return nil
	})
	if stored != want || rows != want {
		t.Errorf("%d records acknowledged; %d stored in %d rows, want each exactly once", want, stored, rows)
	}
}
