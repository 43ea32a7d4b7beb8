package attest_test

import (
	"context"
	"testing"

	"github.com/tani-platform/tani/services/attest"
)

// BenchmarkProcess measures rule evaluation, the decision transaction and
// journaling for batches of 1000 records (200 farms of five records each,
// plots spread so that none overlap), one Process call per batch. Inputs
// are signed beforehand: signing is the phone's work.
func BenchmarkProcess(b *testing.B) {
	e := mustEnv(b, nil)
	a := e.mustAgent(b, "Central Java")
	const farms = 200
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
			if d.Status == attest.StatusVerified {
				verified++
			}
		}
	}
	b.StopTimer()
	records := float64(b.N * farms * 5)
	b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
	if verified != int(records) {
		b.Fatalf("got %d verified of %.0f, want all (the fixtures are consistent)", verified, records)
	}
}
