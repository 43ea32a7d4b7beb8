package consent_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/services/ingest"
)

// Sizes of the benchmark's world: the target.
const (
	benchFarmers       = 100_000
	benchConsents      = 500_000 // 5 per farmer
	benchOrganizations = 50
)

// benchWorld is a database seeded (with COPY) with farmers, organizations
// and consents, and for each farmer an organization with a live consent
// covering identity.
type benchWorld struct {
	pool    *pgxpool.Pool
	farmers []string
	reader  []identity.Principal // reader[i] may read farmers[i]
}

func mustBenchWorld(b *testing.B) *benchWorld {
	b.Helper()
	ctx := context.Background()
	// A pool as tani up opens it (-database.max-conns 16).
	pool, err := postgres.Open(ctx, postgres.Config{URL: pgtest.URL(b, pgtest.MustDatabase(b, identity.Migrations, ingest.Migrations, consent.Migrations)), MaxConns: 16},
		slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	w := &benchWorld{pool: pool}
	rng := rand.New(rand.NewPCG(1, 2))
	orgs := make([]string, benchOrganizations)
	var orgRows [][]any
	for i := range orgs {
		orgs[i] = uuid.NewString()
		orgRows = append(orgRows, []any{orgs[i], fmt.Sprintf("Bank %d", i), "bank"})
	}
	copyRows(b, pool, "identity", "organizations", []string{"id", "name", "kind"}, orgRows)

	now := time.Now()
	farmerRows := make([][]any, 0, benchFarmers)
	consentRows := make([][]any, 0, benchConsents)
	all := []string{"identity", "plots", "crops", "inputs", "harvests", "sales", "credit", "orders"}
	for i := range benchFarmers {
		f := uuid.NewString()
		w.farmers = append(w.farmers, f)
		farmerRows = append(farmerRows, []any{f, "Farmer", []byte{1}, []byte{2}, []byte{3}, "Sukamaju", "female", 1980, uuid.NewString(), uuid.NewString(), now})
		// Five consents per farmer with five organizations: one live
		// and covering identity (the reader), the others a mix of live
		// with other scopes, expired and revoked.
		perm := rng.Perm(benchOrganizations)[:5]
		for j, o := range perm {
			scopes, expires := all, now.Add(90*24*time.Hour)
			var revoked any
			switch j {
			case 1:
				scopes = []string{"plots", "harvests"}
			case 2:
				expires = now.Add(-24 * time.Hour)
			case 3:
				revoked = now.Add(-time.Hour)
			}
			consentRows = append(consentRows, []any{uuid.NewString(), f, orgs[o], scopes, expires, uuid.NewString(), now.Add(-48 * time.Hour), revoked})
		}
		w.reader = append(w.reader, identity.Principal{OrganizationID: orgs[perm[0]], Kind: identity.Bank, APIKeyID: uuid.NewString(), Scopes: all})
		_ = i
	}
	copyRows(b, pool, "ingest", "farmers",
		[]string{"farmer_id", "name", "national_id_hmac", "phone_enc", "phone_hmac", "village", "gender", "birth_year", "agent_id", "record_id", "captured_at"}, farmerRows)
	copyRows(b, pool, "ingest", "consents",
		[]string{"consent_id", "farmer_id", "grantee_org_id", "scopes", "expires_at", "granted_record_id", "granted_at", "revoked_at"}, consentRows)
	if _, err := pool.Exec(ctx, `ANALYZE ingest.farmers; ANALYZE ingest.consents`); err != nil {
		b.Fatal(err)
	}
	return w
}

func copyRows(b *testing.B, pool *pgxpool.Pool, schema, table string, cols []string, rows [][]any) {
	b.Helper()
	n, err := pool.CopyFrom(context.Background(), pgx.Identifier{schema, table}, cols, pgx.CopyFromRows(rows))
	if err != nil || n != int64(len(rows)) {
		b.Fatalf("copy %s.%s: %d of %d rows: %v", schema, table, n, len(rows), err)
	}
}

var benchCache struct {
	b *testing.B
	w *benchWorld
}

// readFarmer is the read being gated: one farmer's row.
const readFarmer = `SELECT name, village, gender, birth_year FROM ingest.farmers WHERE farmer_id = $1`

func scanFarmer(row pgx.Row) error {
	var name, village, gender string
	var year int
	return row.Scan(&name, &village, &gender, &year)
}

// round is one measurement of ungated and gated reads of the same rows.
type round struct {
	// One reader at a time; the batch ways are Gate.ReadBatch.
	ungatedP50, ungatedP99, gatedP50, gatedP99, durableP50, durableP99 time.Duration
	batchP50, batchP99, durableBatchP50, durableBatchP99               time.Duration
	// Reads/s with `workers` readers.
	ungatedRate, gatedRate, durableRate, batchRate, durableBatchRate float64
}

// BenchmarkGate measures what the consent gate costs a read, with 100,000
// farmers and 500,000 consents seeded by COPY: each iteration is one round
// in which the same random farmers' rows are read without the gate (one
// SELECT on the pool), through Gate.Read (find the live consent, write
// the access-log row, the same SELECT, in one transaction: three round
// trips) and through Gate.ReadBatch (the same in one round trip), each
// with the commit not waiting for the WAL flush (WithDurableLog(false))
// and waiting for it (the default), first one at a time for latency, then
// with 16 readers (the pool's 16 connections) for throughput. It reports
// the min/median/max over the rounds of the p99 the gate adds, the gated
// p50/p99 and the gated reads/s. Run it with -benchtime=5x (5 rounds):
//
//	go test -run '^$' -bench BenchmarkGate -benchtime 5x ./internal/consent
func BenchmarkGate(b *testing.B) {
	// The testing package calls a benchmark once with b.N = 1 before the
	// measured run, on the same B: seed once.
	if benchCache.b != b {
		benchCache.b, benchCache.w = b, mustBenchWorld(b)
	}
	w := benchCache.w
	gate, durable := consent.NewGate(w.pool).WithDurableLog(false), consent.NewGate(w.pool)
	ctx := context.Background()
	const serial, parallel, workers = 4000, 20000, 16
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = rng.IntN(len(w.farmers))
		}
		return out
	}
	ungated := func(i int) error { return scanFarmer(w.pool.QueryRow(ctx, readFarmer, w.farmers[i])) }
	through := func(g *consent.Gate) func(int) error {
		return func(i int) error {
			return g.Read(ctx, w.reader[i], consent.Access{FarmerID: w.farmers[i], Scopes: []consent.Scope{consent.Identity}, Purpose: "credit profile", RequestID: "bench", ReadOnly: true},
				func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
					return scanFarmer(tx.QueryRow(ctx, readFarmer, w.farmers[i]))
				})
		}
	}
	gated, gatedDurable := through(gate), through(durable)
	// The same read through ReadBatch: its SELECT queued behind the
	// check, the COMMIT in the same round trip.
	batched := func(g *consent.Gate) func(int) error {
		return func(i int) error {
			var scanErr error
			_, err := g.ReadBatch(ctx, w.reader[i], consent.Access{FarmerID: w.farmers[i], Scopes: []consent.Scope{consent.Identity}, Purpose: "credit profile", RequestID: "bench", ReadOnly: true},
				func(b *pgx.Batch) {
					b.Queue(readFarmer, w.farmers[i]).QueryRow(func(row pgx.Row) error { scanErr = scanFarmer(row); return scanErr })
				}, nil)
			if err != nil {
				return err
			}
			return scanErr
		}
	}
	gatedBatch, durableBatch := batched(gate), batched(durable)
	// latencies reads each farmer once per way, the ways interleaved so
	// that every way sees the same moments of a shared machine.
	latencies := func(ids []int, ways ...func(int) error) (p50, p99 []time.Duration) {
		d := make([][]time.Duration, len(ways))
		for _, i := range ids {
			for w, read := range ways {
				start := time.Now()
				if err := read(i); err != nil {
					b.Fatal(err)
				}
				d[w] = append(d[w], time.Since(start))
			}
		}
		for _, x := range d {
			slices.Sort(x)
			p50, p99 = append(p50, x[len(x)/2]), append(p99, x[len(x)*99/100])
		}
		return p50, p99
	}
	rate := func(read func(int) error, ids []int) float64 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed error
		start := time.Now()
		for k := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := k; j < len(ids); j += workers {
					if err := read(ids[j]); err != nil {
						mu.Lock()
						failed = err
						mu.Unlock()
						return
					}
				}
			}()
		}
		wg.Wait()
		if failed != nil {
			b.Fatal(failed)
		}
		return float64(len(ids)) / time.Since(start).Seconds()
	}
	// Warm the caches (indexes, pool) once before the first round.
	warm := pick(2000)
	latencies(warm, ungated, gated, gatedDurable, gatedBatch, durableBatch)

	var rounds []round
	b.ResetTimer()
	for b.Loop() {
		var r round
		ids := pick(serial)
		p50, p99 := latencies(ids, ungated, gated, gatedDurable, gatedBatch, durableBatch)
		r.ungatedP50, r.gatedP50, r.durableP50, r.batchP50, r.durableBatchP50 = p50[0], p50[1], p50[2], p50[3], p50[4]
		r.ungatedP99, r.gatedP99, r.durableP99, r.batchP99, r.durableBatchP99 = p99[0], p99[1], p99[2], p99[3], p99[4]
		ids = pick(parallel)
		r.ungatedRate = rate(ungated, ids)
		r.gatedRate = rate(gated, ids)
		r.durableRate = rate(gatedDurable, ids)
		r.batchRate = rate(gatedBatch, ids)
		r.durableBatchRate = rate(durableBatch, ids)
		rounds = append(rounds, r)
	}
	b.StopTimer()
	report := func(name string, unit string, f func(round) float64) {
		vs := make([]float64, len(rounds))
		for i, r := range rounds {
			vs[i] = f(r)
		}
		slices.Sort(vs)
		b.ReportMetric(vs[len(vs)/2], strings.ReplaceAll(name, " ", "-")+"-median-"+strings.ReplaceAll(unit, "/", "-per-"))
		// Printed, not logged: a benchmark's log is cut after ten lines.
		fmt.Printf("  %-24s min %9.3f  median %9.3f  max %9.3f %s\n", name, vs[0], vs[len(vs)/2], vs[len(vs)-1], unit)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Printf("BenchmarkGate: %d rounds; %d farmers, %d consents; %d serial reads and %d reads by %d readers per round\n", len(rounds), benchFarmers, benchConsents, serial, parallel, workers)
	report("ungated p50", "ms", func(r round) float64 { return ms(r.ungatedP50) })
	report("ungated p99", "ms", func(r round) float64 { return ms(r.ungatedP99) })
	report("gated p50", "ms", func(r round) float64 { return ms(r.gatedP50) })
	report("gated p99", "ms", func(r round) float64 { return ms(r.gatedP99) })
	report("p99 added by the gate", "ms", func(r round) float64 { return ms(r.gatedP99 - r.ungatedP99) })
	report("ungated reads/s", "reads/s", func(r round) float64 { return r.ungatedRate })
	report("gated reads/s", "reads/s", func(r round) float64 { return r.gatedRate })
	report("gated/ungated rate", "ratio", func(r round) float64 { return r.gatedRate / r.ungatedRate })
	report("durable gated p50", "ms", func(r round) float64 { return ms(r.durableP50) })
	report("durable gated p99", "ms", func(r round) float64 { return ms(r.durableP99) })
	report("p99 added (durable)", "ms", func(r round) float64 { return ms(r.durableP99 - r.ungatedP99) })
	report("durable gated reads/s", "reads/s", func(r round) float64 { return r.durableRate })
	report("batch gated p50", "ms", func(r round) float64 { return ms(r.batchP50) })
	report("batch gated p99", "ms", func(r round) float64 { return ms(r.batchP99) })
	report("p99 added (batch)", "ms", func(r round) float64 { return ms(r.batchP99 - r.ungatedP99) })
	report("batch gated reads/s", "reads/s", func(r round) float64 { return r.batchRate })
	report("batch/ungated rate", "ratio", func(r round) float64 { return r.batchRate / r.ungatedRate })
	report("durable batch p50", "ms", func(r round) float64 { return ms(r.durableBatchP50) })
	report("durable batch p99", "ms", func(r round) float64 { return ms(r.durableBatchP99) })
	report("p99 added (durable batch)", "ms", func(r round) float64 { return ms(r.durableBatchP99 - r.ungatedP99) })
	report("durable batch reads/s", "reads/s", func(r round) float64 { return r.durableBatchRate })
}
