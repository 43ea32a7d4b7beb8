package webhooks_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/services/webhooks"
)

// BenchmarkDeliveries measures, per round of 5,000 events recorded in the
// outbox for one bank's endpoint on a local receiver: deliveries per
// second, from the first event on EVENTS to the last delivery, and the
// delay from each event's arrival on EVENTS to its first attempt (p50,
// p99, from the deliveries' own timestamps). Each round is followed by a
// reference in the same run: the same receiver posted the same number of
// signed bodies by a plain Go HTTP client with the same concurrency (16).
// A tenth of the events are about a consented farmer (re-checked before
// each attempt). Run with -benchtime=5x; it logs min/median/max.
//
//	go test -run '^$' -bench BenchmarkDeliveries -benchtime 5x ./services/webhooks
func BenchmarkDeliveries(b *testing.B) {
	const perRound = 5000
	var got atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(rcv.Close)
	cfg := webhooks.Config{Development: true, PollInterval: 200 * time.Millisecond, EndpointQueue: 4096}
	e := mustEnv(b, envOpts{cfg: cfg})
	bank, token := e.org(b, identity.Bank)
	ep := e.subscribe(b, "/bank/v1", token, rcv.URL+"/tani", events.LoanApplied, events.EvidenceAttested)
	farmer := uuid.NewString()
	e.grant(b, farmer, bank, "harvests")
	ctx := context.Background()

	var rates, refs, p50s, p99s, maxes, steady50, steady99, steadyMax []float64
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		b.StopTimer()
		evs := make([]events.Event, perRound)
		ids := make([]string, perRound)
		for i := range evs {
			evs[i] = toOrg(bank, events.LoanApplied, map[string]any{"loan_id": uuid.NewString(), "amount_minor": 5_000_000})
			if i%10 == 0 {
				evs[i] = aboutFarmer(farmer, consent.Harvests)
			}
			ids[i] = evs[i].ID
		}
		b.StartTimer()
		if err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return events.RecordAll(ctx, tx, evs) }); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var n int
			if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM webhooks.deliveries WHERE event_id = ANY($1::uuid[]) AND state = 'delivered'`, ids).Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n == perRound {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("round %d: %d of %d delivered after 2 minutes", round, n, perRound)
			}
			time.Sleep(20 * time.Millisecond) // a benchmark's wait for the end of a round, not a test's
		}
		b.StopTimer()
		var span, p50, p99, worst float64
		if err := e.pool.QueryRow(ctx, `
			SELECT extract(epoch FROM max(delivered_at) - min(event_published_at)),
			       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_attempt_at - event_published_at)),
			       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM first_attempt_at - event_published_at)),
			       extract(epoch FROM max(first_attempt_at - event_published_at))
			FROM webhooks.deliveries WHERE event_id = ANY($1::uuid[])`, ids).Scan(&span, &p50, &p99, &worst); err != nil {
			b.Fatal(err)
		}
		var fan50, fan99, q50, q99 float64
		if err := e.pool.QueryRow(ctx, `
			SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - event_published_at)),
			       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - event_published_at)),
			       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_attempt_at - created_at)),
			       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM first_attempt_at - created_at))
			FROM webhooks.deliveries WHERE event_id = ANY($1::uuid[])`, ids).Scan(&fan50, &fan99, &q50, &q99); err != nil {
			b.Fatal(err)
		}
		var firstSpan float64
		if err := e.pool.QueryRow(ctx, `SELECT extract(epoch FROM max(first_attempt_at) - min(event_published_at)) FROM webhooks.deliveries WHERE event_id = ANY($1::uuid[])`, ids).Scan(&firstSpan); err != nil {
			b.Fatal(err)
		}
		logf("round %d: fan-out delay p50 %.0f ms p99 %.0f ms; created → first attempt p50 %.0f ms p99 %.0f ms; first attempts %.0f/s; mean attempt %.1f ms",
			round, fan50*1000, fan99*1000, q50*1000, q99*1000, perRound/firstSpan, meanAttempt(b, e)*1000)
		rates = append(rates, perRound/span)
		p50s, p99s, maxes = append(p50s, p50*1000), append(p99s, p99*1000), append(maxes, worst*1000)
		refs = append(refs, reference(b, rcv.URL+"/tani", perRound, 16))
		sp50, sp99, smax := steady(b, e, bank, farmer, steadyRate, 5*time.Second)
		steady50, steady99, steadyMax = append(steady50, sp50), append(steady99, sp99), append(steadyMax, smax)
		b.StartTimer()
	}
	b.StopTimer()
	_ = ep
	ratios := make([]float64, len(rates))
	for i := range rates {
		ratios[i] = rates[i] / refs[i]
	}
	b.ReportMetric(median(rates), "deliveries/s")
	b.ReportMetric(median(refs), "reference-req/s")
	b.ReportMetric(median(p99s), "p99-first-attempt-ms")
	logf("%d rounds of a burst of %d events, one endpoint, concurrency 16:", len(rates), perRound)
	logf("  deliveries/s (first event on EVENTS → last delivered):   %s", mmm(rates, "%.0f"))
	logf("  reference: plain Go client, same receiver, req/s:          %s", mmm(refs, "%.0f"))
	logf("  ratio webhooks / reference:                                %s", mmm(ratios, "%.2f"))
	logf("  event on EVENTS → first attempt, p50 ms:                   %s", mmm(p50s, "%.0f"))
	logf("  event on EVENTS → first attempt, p99 ms:                   %s", mmm(p99s, "%.0f"))
	logf("  event on EVENTS → first attempt, max ms:                   %s", mmm(maxes, "%.0f"))
	logf("steady %d events/s for 5 s (recorded every 50 ms), event on EVENTS → first attempt:", steadyRate)
	logf("  p50 ms: %s", mmm(steady50, "%.0f"))
	logf("  p99 ms: %s", mmm(steady99, "%.0f"))
	logf("  max ms: %s", mmm(steadyMax, "%.0f"))
	b.ReportMetric(median(steady99), "steady-p99-first-attempt-ms")
}

// steadyRate is the rate of the steady phase: the 2,000
// deliveries/s target.
const steadyRate = 2000

// steady records rate events per second for d, in a batch every 50 ms as
// producers' transactions would, waits for every first attempt, and
// returns the p50, p99 and max delay in ms from EVENTS to first attempt.
func steady(b *testing.B, e *env, bank, farmer string, rate int, d time.Duration) (float64, float64, float64) {
	b.Helper()
	ctx := context.Background()
	var ids []string
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		evs := make([]events.Event, rate/20)
		for i := range evs {
			evs[i] = toOrg(bank, events.LoanApplied, map[string]any{"loan_id": uuid.NewString()})
			if i%10 == 0 {
				evs[i] = aboutFarmer(farmer, consent.Harvests)
			}
			ids = append(ids, evs[i].ID)
		}
		if err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return events.RecordAll(ctx, tx, evs) }); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM webhooks.deliveries WHERE event_id = ANY($1::uuid[]) AND first_attempt_at IS NOT NULL`, ids).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("steady: %d of %d attempted after a minute", n, len(ids))
		}
		time.Sleep(20 * time.Millisecond) // a benchmark's wait for the end of a phase
	}
	var p50, p99, worst float64
	if err := e.pool.QueryRow(ctx, `
		SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_attempt_at - event_published_at)),
		       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM first_attempt_at - event_published_at)),
		       extract(epoch FROM max(first_attempt_at - event_published_at))
		FROM webhooks.deliveries WHERE event_id = ANY($1::uuid[])`, ids).Scan(&p50, &p99, &worst); err != nil {
		b.Fatal(err)
	}
	return p50 * 1000, p99 * 1000, worst * 1000
}

// reference posts n signed bodies to url from workers goroutines with a
// plain client and returns requests per second.
func reference(b *testing.B, url string, n, workers int) float64 {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	key := make([]byte, 32)
	secret := webhooks.SecretPrefix + base64.StdEncoding.EncodeToString(key)
	_ = secret
	body := []byte(`{"type":"loan.applied","timestamp":"2025-01-01T00:00:00Z","data":{"amount_minor":5000000,"loan_id":"` + uuid.NewString() + `"}}`)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				id := uuid.NewString()
				now := time.Now()
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", id)
				req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
				req.Header.Set("webhook-signature", webhooks.SignatureHeader([][]byte{key}, id, now, body))
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// meanAttempt is the mean duration of an attempt so far, from the
// module's own histogram.
func meanAttempt(b *testing.B, e *env) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tani_webhook_attempt_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleSum() / float64(h.GetSampleCount())
		}
	}
	return 0
}

// logf prints a figure: a benchmark's own log is cut to a few lines.
func logf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func mmm(v []float64, f string) string {
	s := slices.Clone(v)
	slices.Sort(s)
	return fmt.Sprintf("min "+f+" / median "+f+" / max "+f, s[0], s[len(s)/2], s[len(s)-1])
}
