package ledger

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rejoin is the group commit's wait for the callers it has just answered.
//
// Services append in loops: attest's workers, request handlers under load,
// the benchmarks' 64 callers. Each calls Append again as soon as its
// previous append returns. A one-round-trip append is answered with its
// commit, and seq is given back at that moment. Without a wait, the
// goroutine that takes seq next finds only the appends queued during that
// transaction. The callers just answered queue a moment later and wait a
// whole transaction for the one after it. The callers then split into two
// cohorts that take turns, each transaction carrying half of them (32.7
// entries per transaction with 64 callers, docs/ledger-benchmarks.md,
// "Seventh pass").
//
// So before it takes the queue, the next sequencer waits (linger) until as
// many appends have queued since the answer as the answered transaction
// carried. It waits at most half that transaction's round trip, and never
// more than maxLinger: the wait can double a group and costs a caller at
// most half a commit. When fewer callers come back than the transaction
// carried (requests from many clients, then a lull), the next append
// waits out the bound once. A lone caller is back before any sequencer
// looks, and never waits.
type rejoin struct {
	// arrived is signalled, without blocking, whenever an append is
	// queued.
	arrived chan struct{}
	// queued counts the appends ever queued. Guarded by Journal.qmu.
	queued int64
	// mark, want and bound are guarded by seq: the next sequencer waits
	// until queued reaches mark+want, for at most bound. want is 0 when
	// there is no one to wait for.
	mark, want int64
	bound      time.Duration
	// lingers counts the waits by how they ended.
	lingers *prometheus.CounterVec
}

// maxLinger bounds the wait when commits are slow (a stalled disk), so
// that it never adds more than this to an append's latency.
const maxLinger = 2 * time.Millisecond

// enqueue queues req for the next sequencer transaction.
func (j *Journal) enqueue(req *appendReq) {
	j.qmu.Lock()
	j.queue = append(j.queue, req)
	j.rejoin.queued++
	j.qmu.Unlock()
	select {
	case j.rejoin.arrived <- struct{}{}:
	default:
	}
}

// expectRejoin is called holding seq once a one-round-trip transaction
// has been answered, trip after it was sent. It carried the appends of
// n callers, and the next sequencer lingers for them.
func (j *Journal) expectRejoin(n int, trip time.Duration) {
	j.qmu.Lock()
	j.rejoin.mark = j.rejoin.queued
	j.qmu.Unlock()
	j.rejoin.want, j.rejoin.bound = int64(n), min(trip/2, maxLinger)
}

// linger is called holding seq, before taking the queue: it waits until
// the callers expectRejoin named have had time to queue again (see
// rejoin). It does not watch a context: the wait is bounded.
func (j *Journal) linger() {
	r := &j.rejoin
	if r.want == 0 {
		return
	}
	defer func() { r.want = 0 }()
	var timer *time.Timer
	for {
		j.qmu.Lock()
		back := r.queued - r.mark
		j.qmu.Unlock()
		if back >= r.want {
			if timer != nil {
				r.lingers.WithLabelValues("rejoined").Inc()
			}
			return
		}
		if timer == nil {
			timer = time.NewTimer(r.bound)
			defer timer.Stop()
		}
		select {
		case <-r.arrived:
		case <-timer.C:
			r.lingers.WithLabelValues("bound").Inc()
			return
		}
	}
}
