// Package parallel spreads independent CPU-bound work of one batch (decoding,
// canonicalizing, checking signatures, evaluating rules) over every core.
// It must never be used for I/O, which belongs in one batched round trip.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls f(0) … f(n-1) on up to GOMAXPROCS goroutines and returns when
// all calls have. f must be safe to call concurrently for distinct i.
func For(n int, f func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}
