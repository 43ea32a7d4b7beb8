package consent_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/ledger"
)

// BenchmarkSweep measures the expiry sweep in its steady state: 500,000
// consents of 100,000 farmers, 100,000 of them expired over the past two
// years, each expiry already recorded and journaled, so a sweep finds
// nothing new and its cost is the checking. A full sweep looks back
// without limit (hourly); the minutely ones look back to the last full
// one's start. References in the same run: the sweep as it was (a fixed
// 30-day window, which missed expiries after a longer outage) and one
// sequential scan of the consents (count(*)), which every sweep needs
// (expires_at has no index of its own).
//
//	go test -run '^$' -bench BenchmarkSweep -benchtime 5x -count 3 ./internal/consent
func BenchmarkSweep(b *testing.B) {
	ctx := context.Background()
	w := mustBenchWorld(b)
	if _, err := w.pool.Exec(ctx, `
		UPDATE ingest.consents SET expires_at = now() - (random() * interval '730 days') - interval '1 hour'
		WHERE expires_at < now();
		INSERT INTO consent.events (consent_id, event, revision, payload, signature_ref, occurred_at, leaf_index)
		SELECT consent_id, 'expired', 1, convert_to(json_build_object('consent_id', consent_id, 'farmer_id', farmer_id)::text, 'UTF8'),
		       'consent-service', expires_at, 0
		FROM ingest.consents WHERE expires_at < now() AND (revoked_at IS NULL OR revoked_at > expires_at);
		ANALYZE ingest.consents; ANALYZE consent.events`); err != nil {
		b.Fatal(err)
	}
	svc, err := consent.New(consent.Config{AnswerWithin: 30 * 24 * time.Hour, SweepInterval: time.Minute},
		consent.Deps{Pool: w.pool, Journal: &ledger.Journal{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	// A full sweep (a process's first, then one an hour) and the sweeps
	// in between (every minute).
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			consent.ForgetFullSweep(svc)
			if err := svc.Sweep(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("minutely", func(b *testing.B) {
		for b.Loop() {
			if err := svc.Sweep(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The sweep as it was (a 30-day window): the same statements, bounded
	// below. It missed expiries after an outage longer than the window.
	b.Run("reference_window_30d", func(b *testing.B) {
		for b.Loop() {
			tx, err := w.pool.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, q := range windowedSweep {
				if _, err := tx.Exec(ctx, q, time.Now(), time.Now().Add(-30*24*time.Hour)); err != nil {
					b.Fatal(err)
				}
			}
			tx.Rollback(ctx)
		}
	})
	b.Run("reference_scan", func(b *testing.B) {
		for b.Loop() {
			var n int
			if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM ingest.consents WHERE expires_at <= now()`).Scan(&n); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// windowedSweep are the sweep's two statements before it looked back
// without limit (commit 1ff901d), for BenchmarkSweep's reference.
var windowedSweep = []string{`
	INSERT INTO consent.events (consent_id, event, revision, payload, signature_ref, occurred_at)
	SELECT r.id, 'request_expired', 1, '\x7b7d'::bytea, 'consent-service', r.answer_by
	FROM consent.requests r
	WHERE r.answer_by <= $1 AND r.answer_by > $2
	  AND NOT EXISTS (SELECT 1 FROM ingest.consent_grants g WHERE g.consent_id = r.id)
	  AND NOT EXISTS (SELECT 1 FROM ingest.consent_refusals f WHERE f.consent_id = r.id)
	  AND NOT EXISTS (SELECT 1 FROM consent.events e WHERE e.consent_id = r.id AND e.event = 'request_expired')
	ON CONFLICT DO NOTHING`, `
	INSERT INTO consent.events (consent_id, event, revision, payload, signature_ref, occurred_at)
	SELECT g.consent_id, 'expired', 1, '\x7b7d'::bytea, 'consent-service', g.expires_at
	FROM ingest.consent_grants g
	WHERE g.expires_at <= $1 AND g.expires_at > $2 AND (g.revoked_at IS NULL OR g.revoked_at > g.expires_at)
	  AND NOT EXISTS (SELECT 1 FROM consent.events e WHERE e.consent_id = g.consent_id AND e.event = 'expired')
	ON CONFLICT DO NOTHING`}
