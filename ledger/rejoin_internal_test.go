package ledger

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newRejoinJournal() *Journal {
	lingers := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lingers"}, []string{"ended"})
	return &Journal{rejoin: rejoin{arrived: make(chan struct{}, 1), lingers: lingers}}
}

// lingers returns how many waits ended so.
func lingers(j *Journal, ended string) float64 {
	return testutil.ToFloat64(j.rejoin.lingers.WithLabelValues(ended))
}

// lingerDone runs j.linger in a goroutine and reports when it returns.
func lingerDone(j *Journal) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		j.linger()
		close(done)
	}()
	return done
}

// returns fails t unless done is closed within a generous time: linger
// must return, whether its callers came back or its bound passed.
func returns(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("linger did not return %s", what)
	}
}

func TestLingerWaitsForTheCallersAnswered(t *testing.T) {
	j := newRejoinJournal()
	j.enqueue(&appendReq{}) // queued before the answer: not one of its callers
	j.expectRejoin(3, time.Hour)
	j.rejoin.bound = time.Hour // only the callers' return ends this wait
	done := lingerDone(j)
	j.enqueue(&appendReq{})
	j.enqueue(&appendReq{})
	select {
	case <-done:
		t.Fatal("linger returned with 2 of the 3 callers answered queued again")
	case <-time.After(50 * time.Millisecond):
	}
	j.enqueue(&appendReq{})
	returns(t, done, "once the 3 callers had queued again")
	if len(j.queue) != 4 {
		t.Fatalf("queue holds %d appends, want 4", len(j.queue))
	}
	if j.rejoin.want != 0 {
		t.Fatalf("want is %d after the wait, want 0: the next sequencer would wait again", j.rejoin.want)
	}
	if r, b := lingers(j, "rejoined"), lingers(j, "bound"); r != 1 || b != 0 {
		t.Fatalf("lingers rejoined %v, bound %v; want 1 and 0", r, b)
	}
}

func TestLingerIsBounded(t *testing.T) {
	j := newRejoinJournal()
	j.expectRejoin(5, 2*time.Millisecond)
	if j.rejoin.bound != time.Millisecond {
		t.Fatalf("bound %v after a 2 ms round trip, want half of it", j.rejoin.bound)
	}
	returns(t, lingerDone(j), "when the callers answered did not come back")
	if r, b := lingers(j, "rejoined"), lingers(j, "bound"); r != 0 || b != 1 {
		t.Fatalf("lingers rejoined %v, bound %v; want 0 and 1", r, b)
	}

	j.expectRejoin(5, time.Hour)
	if j.rejoin.bound != maxLinger {
		t.Fatalf("bound %v after an hour's round trip, want maxLinger (%v)", j.rejoin.bound, maxLinger)
	}
}

func TestLingerNoOneToWaitFor(t *testing.T) {
	j := newRejoinJournal()
	returns(t, lingerDone(j), "with no transaction answered")

	// A caller arriving after a quiet spell has already made up the count.
	j.expectRejoin(1, time.Hour)
	j.rejoin.bound = time.Hour
	j.enqueue(&appendReq{})
	returns(t, lingerDone(j), "for a caller that had queued again")
	if r, b := lingers(j, "rejoined"), lingers(j, "bound"); r != 0 || b != 0 {
		t.Fatalf("lingers rejoined %v, bound %v; want no wait counted", r, b)
	}
}
