package consent_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/services/ingest"
)

// TestSweep_AnyGap: expiries that passed long before a sweep (no process
// swept for most of a year) and a grant that reached Tani after its own
// expiry are recorded and journaled once; live consents and answered
// requests are left alone.
func TestSweep_AnyGap(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.MustDB(t, ledger.Migrations, identity.Migrations, ingest.Migrations, consent.Migrations)
	j, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: t.TempDir(), CheckpointInterval: ledger.DefaultCheckpointInterval},
		pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := consent.New(consent.Config{AnswerWithin: 30 * 24 * time.Hour, SweepInterval: time.Hour},
		consent.Deps{Pool: pool, Journal: j, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	consent.SetNow(svc, func() time.Time { return now })
	bank := uuid.NewString()
	if _, err := pool.Exec(ctx, `INSERT INTO identity.organizations (id, name, kind) VALUES ($1, 'Bank Sweep', 'bank')`, bank); err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	request := func(answerBy time.Time) string {
		t.Helper()
		id := uuid.NewString()
		if _, err := pool.Exec(ctx, `
			INSERT INTO consent.requests (id, organization_id, farmer_id, scopes, duration_days, purpose, requested_by, request_id, requested_at, answer_by)
			VALUES ($1, $2, $3, '{plots}', 30, 'working capital', 'key:x', 'req', $4, $5)`,
			id, bank, uuid.NewString(), answerBy.Add(-30*day), answerBy); err != nil {
			t.Fatal(err)
		}
		return id
	}
	farmer := uuid.NewString()
	oldRequest := request(now.Add(-300 * day))  // unanswered, expired ten months ago
	recentRequest := request(now.Add(-2 * day)) // unanswered, expired two days ago
	openRequest := request(now.Add(10 * day))   // still awaiting its answer
	answered := request(now.Add(-200 * day))    // answered (granted) before it expired
	oldGrant := grant(t, pool, farmer, bank, []string{"plots"}, now.Add(-250*day), nil)
	lateGrant := grant(t, pool, farmer, bank, []string{"plots"}, now.Add(-45*day), nil) // synced after its expiry
	liveGrant := grant(t, pool, farmer, bank, []string{"plots"}, now.Add(20*day), nil)
	revokedFirst := grant(t, pool, farmer, bank, []string{"plots"}, now.Add(-100*day), ptr(now.Add(-120*day)))
	if _, err := pool.Exec(ctx, `
		INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at)
		VALUES ($1, $2, $3, '{plots}', $4, $5, $6)`, answered, farmer, bank, now.Add(60*day), uuid.NewString(), now.Add(-201*day)); err != nil {
		t.Fatal(err)
	}

	for range 2 { // a second sweep records nothing more
		if err := svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := pool.Query(ctx, `SELECT consent_id::text, event, occurred_at, leaf_index IS NOT NULL FROM consent.events`)
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		event      string
		at         time.Time
		journaled  bool
		recordedAs int
	}
	got := map[string]event{}
	for rows.Next() {
		var id string
		var e event
		if err := rows.Scan(&id, &e.event, &e.at, &e.journaled); err != nil {
			t.Fatal(err)
		}
		e.recordedAs = got[id].recordedAs + 1
		got[id] = e
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		event string
		at    time.Time
	}{
		oldRequest:    {"request_expired", now.Add(-300 * day)},
		recentRequest: {"request_expired", now.Add(-2 * day)},
		oldGrant:      {"expired", now.Add(-250 * day)},
		lateGrant:     {"expired", now.Add(-45 * day)},
	}
	for id, w := range want {
		e, ok := got[id]
		switch {
		case !ok:
			t.Errorf("consent %s: no %s event", id, w.event)
		case e.event != w.event || !e.at.Equal(w.at.Truncate(time.Microsecond)) || !e.journaled || e.recordedAs != 1:
			t.Errorf("consent %s: got %s at %s (journaled %v, %d events), want one journaled %s at %s", id, e.event, e.at, e.journaled, e.recordedAs, w.event, w.at)
		}
	}
	for name, id := range map[string]string{"open request": openRequest, "answered request": answered, "live grant": liveGrant, "revoked before expiry": revokedFirst} {
		if e, ok := got[id]; ok {
			t.Errorf("%s: got event %s, want none", name, e.event)
		}
	}
	var journaled int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM ledger.entries WHERE type = 'revision' AND kind LIKE 'consent.%'`).Scan(&journaled); err != nil {
		t.Fatal(err)
	}
	if journaled != len(want) {
		t.Errorf("journal holds %d consent entries, want %d", journaled, len(want))
	}

	t.Run("OK_BetweenFullSweeps", func(t *testing.T) {
		// Ten minutes on: a consent that expired meanwhile is recorded by
		// the next (windowed) sweep; a grant that reached Tani only now
		// but expired 60 days ago waits for the next full sweep, which
		// comes within the hour.
		start := now
		now = start.Add(10 * time.Minute)
		expiredMeanwhile := grant(t, pool, farmer, bank, []string{"plots"}, start.Add(5*time.Minute), nil)
		lateAgain := grant(t, pool, farmer, bank, []string{"plots"}, start.Add(-60*day), nil)
		expiredEvent := func(id string) bool {
			var ok bool
			if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM consent.events WHERE consent_id = $1 AND event = 'expired' AND leaf_index IS NOT NULL)`, id).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if err := svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if !expiredEvent(expiredMeanwhile) {
			t.Error("a consent that expired since the last sweep: no journaled expiry")
		}
		if expiredEvent(lateAgain) {
			t.Fatal("a windowed sweep recorded an expiry before its window: the test does not test the full sweep")
		}
		now = start.Add(61 * time.Minute)
		if err := svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if !expiredEvent(lateAgain) {
			t.Error("a grant synced after its expiry: not recorded by the full sweep an hour on")
		}
	})
}

func ptr[T any](v T) *T { return &v }
