package webhooks

import (
	"context"

	"github.com/tani-platform/tani/internal/consent"
)

// consentChecker asks the consent gate whether deliveries may go, right
// before each attempt, in batches: a worker waits for its own answer, and
// whatever questions arrived meanwhile are asked in one query, so the
// check costs one round trip per batch, not per delivery.
type consentChecker struct {
	gate *consent.Gate
	asks chan consentAsk
}

type consentAsk struct {
	check consent.Check
	reply chan consentAnswer
}

type consentAnswer struct {
	ok  bool
	err error
}

func newConsentChecker(g *consent.Gate) *consentChecker {
	return &consentChecker{gate: g, asks: make(chan consentAsk, 1024)}
}

// allows reports whether c holds now. It fails with ctx.
func (k *consentChecker) allows(ctx context.Context, c consent.Check) (bool, error) {
	reply := make(chan consentAnswer, 1)
	select {
	case k.asks <- consentAsk{check: c, reply: reply}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case a := <-reply:
		return a.ok, a.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// run answers until ctx is done.
func (k *consentChecker) run(ctx context.Context) {
	const most = 512
	batch := make([]consentAsk, 0, most)
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-k.asks:
			batch = append(batch[:0], a)
		}
	fill:
		for len(batch) < most {
			select {
			case a := <-k.asks:
				batch = append(batch, a)
			default:
				break fill
			}
		}
		checks := make([]consent.Check, len(batch))
		for i, a := range batch {
			checks[i] = a.check
		}
		ok, err := k.gate.AllowsAll(ctx, checks)
		for i, a := range batch {
			if err != nil {
				a.reply <- consentAnswer{err: err}
			} else {
				a.reply <- consentAnswer{ok: ok[i]}
			}
		}
	}
}
