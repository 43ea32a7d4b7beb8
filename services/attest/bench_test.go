package attest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tani-platform/tani/services/attest"
)

// BenchmarkProcess measures rule evaluation, the decision transaction and
// journaling, one Process call per batch of farms of five records each
// (plots spread so that none overlap): 1,000 records, the size the
// throughput target is stated for, and 250, about what the consumer hands
// over under load (natsbus MaxBatch 256). Tables grow with b.N: run with
// -benchtime 100x to see a batch against 100,000 stored records. Inputs
// are signed beforehand: signing is the phone's work.
func BenchmarkProcess(b *testing.B) {
	for _, farms := range []int{200, 50} {
		b.Run(fmt.Sprintf("records=%d", farms*5), func(b *testing.B) { benchmarkProcess(b, farms) })
	}
}

func benchmarkProcess(b *testing.B, farms int) {
	e := mustEnv(b, nil)
	a := e.mustAgent(b, "Central Java")
	batches := make([][]attest.Input, b.N)
	for i := range batches {
		for f := 0; f < farms; f++ {
			n := i*farms + f
			lon, lat := 110.0+float64(n%1000)*0.002, -7.0-float64(n/1000)*0.002
			batches[i] = append(batches[i], farm(b, a, lon, lat, 0.001, nationalID(), phone())...)
		}
	}
	ctx := context.Background()
	b.ResetTimer()
	verified := 0
	for i := 0; i < b.N; i++ {
		ds, err := e.svc.Process(ctx, batches[i])
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range ds {
			if d.Status == attest.StatusVerified && d.LeafIndex != nil {
				verified++
			}
		}
	}
	b.StopTimer()
	records := float64(b.N * farms * 5)
	b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
	if verified != int(records) {
		b.Fatalf("got %d verified and journaled of %.0f, want all (the fixtures are consistent)", verified, records)
	}
}
