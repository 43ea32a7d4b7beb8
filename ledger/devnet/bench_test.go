package devnet_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"

	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/devnet/devnettest"
)

// BenchmarkSubmit measures committed transactions per second through the
// official client, with the default 2-of-3 organization endorsement policy
// and TLS. Each transaction is endorsed by two peers, ordered, validated
// and committed; the client waits for its commit status.
func BenchmarkSubmit(b *testing.B) {
	n := devnettest.MustStartConfig(b, devnet.Config{Dir: b.TempDir(), BatchTimeout: 50 * time.Millisecond})
	const clients = 128
	var contracts []*client.Contract
	for i := 0; i < 4; i++ {
		contracts = append(contracts, contract(b, devnettest.MustGateway(b, n, n.Orgs()[i%len(n.Orgs())]), n))
	}
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := contracts[w%len(contracts)]
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := c.SubmitTransaction("Create", fmt.Sprintf("bench-%d-%d", b.N, i), "x", "1"); err != nil {
					failed.Add(1)
					b.Errorf("submit %d: %v", i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d transactions failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tx/s")
}
