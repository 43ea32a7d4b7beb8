package natsbus_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
)

func TestPublishAll(t *testing.T) {
	msg := func(subject, id string) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = []byte(`{}`)
		if id != "" {
			m.Header.Set(jetstream.MsgIDHeader, id)
		}
		return m
	}

	t.Run("OK_EveryMessageOnceWithItsSequence", func(t *testing.T) {
		_, js := natstest.MustJetStream(t, natstest.MustServer(t))
		msgs := []*nats.Msg{msg("farm.submitted.a", "1"), msg("farm.submitted.a", "2"), msg("farm.submitted.a", "3")}
		seqs, err := natsbus.PublishAll(t.Context(), js, msgs)
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) != 3 || seqs[0] == 0 || seqs[1] <= seqs[0] || seqs[2] <= seqs[1] {
			t.Errorf("got sequences %v, want three increasing ones", seqs)
		}
		// A retried batch is de-duplicated by the ids.
		if _, err := natsbus.PublishAll(t.Context(), js, msgs); err != nil {
			t.Fatal(err)
		}
		if got := natstest.Count(t, js, natsbus.StreamFarm, "farm.submitted.>"); got != 3 {
			t.Errorf("got %d messages after a retry, want 3", got)
		}
	})

	t.Run("ErrMessageWithoutID_NothingPublished", func(t *testing.T) {
		_, js := natstest.MustJetStream(t, natstest.MustServer(t))
		_, err := natsbus.PublishAll(t.Context(), js, []*nats.Msg{msg("farm.submitted.a", "1"), msg("farm.submitted.a", "")})
		if err == nil || !strings.Contains(err.Error(), "message 1 has no Nats-Msg-Id") {
			t.Errorf("got %v, want a refusal naming message 1", err)
		}
		if got := natstest.Count(t, js, natsbus.StreamFarm, ""); got != 0 {
			t.Errorf("got %d messages, want none", got)
		}
	})

	t.Run("ErrNotAcknowledged_SaysWhich", func(t *testing.T) {
		_, js := natstest.MustJetStream(t, natstest.MustServer(t))
		// No stream takes this subject: JetStream answers no responders.
		msgs := []*nats.Msg{msg("farm.submitted.a", "1"), msg("nowhere.a", "2")}
		seqs, err := natsbus.PublishAll(t.Context(), js, msgs)
		if err == nil {
			t.Fatal("PublishAll succeeded on a subject no stream takes")
		}
		if natsbus.FailedAt(err, 0) != nil || seqs[0] == 0 {
			t.Errorf("message 0: got %v, sequence %d, want acknowledged", natsbus.FailedAt(err, 0), seqs[0])
		}
		if e := natsbus.FailedAt(err, 1); e == nil || !strings.Contains(e.Error(), "publish 2") || seqs[1] != 0 {
			t.Errorf("message 1: got %v, sequence %d, want an error naming id 2", e, seqs[1])
		}
	})

}
