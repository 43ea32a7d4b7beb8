package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishError says which messages of a PublishAll were not acknowledged.
// Errs is indexed like the messages: nil for each message JetStream acked.
type PublishError struct {
	Errs []error
}

func (e *PublishError) Error() string {
	var first error
	n := 0
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	if n == 1 {
		return first.Error()
	}
	return fmt.Sprintf("%d of %d messages not acknowledged, first: %v", n, len(e.Errs), first)
}

// Unwrap lets errors.Is see every failure (a deadline, a closed connection).
func (e *PublishError) Unwrap() []error { return e.Errs }

// PublishAll publishes msgs without waiting between them and then waits
// for every acknowledgement: one round trip per batch rather than per
// message. It returns each message's stream sequence, in order (0 for a
// message not acknowledged), and a *PublishError if any was not.
//
// Every message must carry a Nats-Msg-Id: a publisher retries a batch that
// was not fully acknowledged, and only the id lets JetStream drop the
// repeats. A message without one is refused before anything is published.
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) ([]uint64, error) {
	for i, m := range msgs {
		if m.Header.Get(jetstream.MsgIDHeader) == "" {
			return nil, fmt.Errorf("publish %s: message %d has no %s header; every message needs one so that a retry is de-duplicated", m.Subject, i, jetstream.MsgIDHeader)
		}
	}
	seqs := make([]uint64, len(msgs))
	errs := make([]error, len(msgs))
	acks := make([]jetstream.PubAckFuture, len(msgs))
	failed := false
	for i, m := range msgs {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			errs[i], failed = fmt.Errorf("publish %s: %w", m.Header.Get(jetstream.MsgIDHeader), err), true
			continue
		}
		acks[i] = f
	}
	for i, f := range acks {
		if f == nil {
			continue
		}
		select {
		case pa := <-f.Ok():
			seqs[i] = pa.Sequence
		case err := <-f.Err():
			errs[i], failed = fmt.Errorf("publish %s: %w", msgs[i].Header.Get(jetstream.MsgIDHeader), err), true
		case <-ctx.Done():
			errs[i], failed = fmt.Errorf("publish %s: %w", msgs[i].Header.Get(jetstream.MsgIDHeader), ctx.Err()), true
		}
	}
	if failed {
		return seqs, &PublishError{Errs: errs}
	}
	return seqs, nil
}

// FailedAt returns the error of message i of a PublishAll that returned
// err, or nil if that message was acknowledged.
func FailedAt(err error, i int) error {
	var pe *PublishError
	if errors.As(err, &pe) && i < len(pe.Errs) {
		return pe.Errs[i]
	}
	return err
}
