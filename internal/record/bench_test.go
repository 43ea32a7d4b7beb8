package record

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/validate"
)

// cpuTime is the process's user and system CPU time: the figure that
// matters when several requests compete for the cores, and one that other
// processes on the machine do not inflate as they do wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ms/op to a benchmark's figures.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op") }
}

// walkedPlot is a signed plot.mapped record whose boundary is a circle of
// n positions written with 15 decimals, as a careless phone would.
func walkedPlot(tb testing.TB, key ed25519.PrivateKey, n int) []byte {
	tb.Helper()
	ring := make([][2]float64, n+1)
	for i := range n {
		a := 2 * math.Pi * float64(i) / float64(n)
		ring[i] = [2]float64{110.4 + 0.001*math.Cos(a) + 1e-13, -7.25 + 0.001*math.Sin(a) + 1e-13}
	}
	ring[n] = ring[0]
	payload, _ := json.Marshal(map[string]any{
		"farmer_id": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", "plot_id": "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a",
		"boundary":      map[string]any{"type": "Polygon", "coordinates": [][][2]float64{ring}},
		"declared_area": map[string]any{"value": 1.2, "unit": "ha"}, "tenure": "owned", "gps_accuracy_m": 3.5, "mock_location": false,
	})
	lat, lon := -7.25, 110.4
	_, raw, err := Sign(key, Envelope{ID: "0d9c3a4e-5b7f-4c1e-9a2b-3c4d5e6f7a8b", Type: "plot.mapped", CapturedAt: time.Now().UTC().Format(time.RFC3339),
		DeviceID: "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", Location: &Location{Lat: &lat, Lon: &lon, AccuracyM: 4}, Payload: payload})
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// BenchmarkHostileRecord is what mobile-api spends on one record before
// it knows whether one of the agent's devices signed it (Decode, then
// Verify), and what an honest record of the largest boundary accepted
// costs in full.
func BenchmarkHostileRecord(b *testing.B) {
	v := validate.New()
	_, key, _ := ed25519.GenerateKey(nil)
	other, _, _ := ed25519.GenerateKey(nil)
	huge, large := walkedPlot(b, key, 98_000), walkedPlot(b, key, 21_000)
	b.Logf("records: %d and %d bytes", len(huge), len(large))
	refuse := func(b *testing.B, raw []byte) {
		defer reportCPU(b)()
		for b.Loop() {
			rec, problems := Decode(v, raw, time.Now())
			if problems == nil && !errors.Is(rec.Verify(other), ErrBadSignature) {
				b.Fatal("bad signature verified")
			}
		}
	}
	b.Run("3.9MB_BadSignature", func(b *testing.B) { refuse(b, huge) }) // refused by size before parsing
	b.Run("1MB_BadSignature", func(b *testing.B) { refuse(b, large) })  // parsed, canonicalized, signature refused
	b.Run("3.9MB_ParseAndCanonicalOnly", func(b *testing.B) {           // what the size cap spares
		defer reportCPU(b)()
		for b.Loop() {
			root, perr := parseObject(huge)
			if perr != nil {
				b.Fatal(perr)
			}
			appendCanonical(nil, &root)
		}
	})
	max := walkedPlot(b, key, MaxRingPositions-1) // the largest ring accepted
	b.Run("5000Positions_ValidFullCheck", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			rec, problems := Decode(v, max, time.Now())
			if problems == nil {
				if err := rec.Verify(key.Public().(ed25519.PublicKey)); err != nil {
					b.Fatal(err)
				}
				problems = rec.CheckPayload(v, time.Now())
			}
			if problems != nil {
				b.Fatal(problems)
			}
		}
	})
}

// BenchmarkSelfIntersection compares the sweep with testing every pair of
// edges, on a valid ring of the largest size accepted.
func BenchmarkSelfIntersection(b *testing.B) {
	n := MaxRingPositions - 1
	ring := make([][2]float64, n+1)
	for i := range n {
		a := 2 * math.Pi * float64(i) / float64(n)
		ring[i] = [2]float64{110.4 + 0.01*math.Cos(a), -7.25 + 0.01*math.Sin(a)}
	}
	ring[n] = ring[0]
	g := snapRings(Polygon{Coordinates: [][][2]float64{ring}}, 110.39, -7.26)
	for name, find := range map[string]func([]*edge) (*edge, *edge){"Sweep": findContact, "EveryPair": findContactSlowly} {
		b.Run(name, func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				if e, _ := find(g.edges()); e != nil {
					b.Fatal("valid ring has a contact")
				}
			}
		})
	}
}
