package parallel_test

import (
	"sync/atomic"
	"testing"

	"github.com/tani-platform/tani/internal/parallel"
)

func TestFor_EveryIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 1000} {
		calls := make([]atomic.Int32, n)
		parallel.For(n, func(i int) { calls[i].Add(1) })
		for i := range calls {
			if got := calls[i].Load(); got != 1 {
				t.Errorf("n=%d: f(%d) called %d times, want 1", n, i, got)
			}
		}
	}
}
