package forget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/natsbus"
)

// Purge deletes for good every message of stream on subjects for which
// match is true, among the messages stored when it starts, and returns how
// many it deleted. SecureDeleteMsg overwrites the bytes in the store, so
// the message is gone from disk too, not only from the index.
//
// Messages are on subjects by record type, not by farmer, so Purge reads
// every message on subjects (an ephemeral consumer, no acks): an erasure
// costs one pass over what the stream retains. A message published after
// Purge starts is the owner's to refuse and delete when it consumes it
// (see Owner.Fence).
//
// match is asked about each record of a bundle (natsbus.Units) and the
// count is of records: a bundle is excised (Excise), so the records of
// other farmers it carried stay in the stream.
func Purge(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, match func(jetstream.Msg) bool) (int, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	last := info.State.LastSeq
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects:    subjects,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 5 * time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return 0, fmt.Errorf("scan %s %v: %w", stream, subjects, err)
	}
	defer st.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name) //nolint:errcheck // the server drops it when inactive anyway
	var found []jetstream.Msg
	for done := cons.CachedInfo().NumPending == 0; !done; {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return 0, fmt.Errorf("scan %s %v: %w", stream, subjects, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				return 0, fmt.Errorf("scan %s: %w", stream, err)
			}
			if md.Sequence.Stream > last || md.NumPending == 0 {
				done = true
			}
			if md.Sequence.Stream <= last && slices.ContainsFunc(natsbus.Units(msg), match) {
				found = append(found, msg)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return 0, fmt.Errorf("scan %s %v: %w", stream, subjects, err)
		}
		if n == 0 {
			done = true
		}
	}
	deleted := 0
	for _, msg := range found {
		n, err := Excise(ctx, js, stream, msg, match)
		if err != nil {
			return 0, err
		}
		deleted += n
	}
	return deleted, nil
}

// Excise deletes for good the records of msg (a message of stream, as a
// consumer delivered it, or one record of it) for which drop is true, and
// returns how many it deleted. A message none of whose records is kept is
// deleted (SecureDeleteMsg); a bundle that keeps some is first published
// again with only those, then deleted. The kept records are delivered
// again from the end of the stream: handlers take that as the redelivery
// it is, and records arrive in any order from offline phones anyway. A
// retry after a failed delete publishes the same records under the same
// message ID, which JetStream de-duplicates.
func Excise(ctx context.Context, js jetstream.JetStream, stream string, msg jetstream.Msg, drop func(jetstream.Msg) bool) (int, error) {
	whole := natsbus.Whole(msg)
	md, err := whole.Metadata()
	if err != nil {
		return 0, fmt.Errorf("excise from %s: %w", stream, err)
	}
	var keep [][]byte
	dropped := 0
	for _, u := range natsbus.Units(whole) {
		if drop(u) {
			dropped++
		} else {
			keep = append(keep, u.Data())
		}
	}
	if dropped == 0 {
		return 0, nil
	}
	if len(keep) > 0 {
		if _, err := js.PublishMsg(ctx, natsbus.Keeping(whole, keep)); err != nil {
			return 0, fmt.Errorf("publish again what message %d of %s keeps: %w", md.Sequence.Stream, stream, err)
		}
	}
	if err := Delete(ctx, js, stream, md.Sequence.Stream); err != nil {
		return 0, err
	}
	return dropped, nil
}

// Delete deletes one message for good (see Purge), by its stream sequence;
// a message already gone is no error.
func Delete(ctx context.Context, js jetstream.JetStream, stream string, seq uint64) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	if err := st.SecureDeleteMsg(ctx, seq); err != nil {
		if _, gerr := st.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil
		}
		return fmt.Errorf("delete message %d of %s: %w", seq, stream, err)
	}
	return nil
}

// FarmerOf returns the farmer a farm record is about (its payload's
// farmer_id, lower-cased), or "" for anything that does not decode as one.
// It is deliberately lenient: it finds a farmer's records among messages
// that were refused as invalid too.
func FarmerOf(data []byte) string {
	_, farmer := identify(data)
	return farmer
}

// RecordIDOf returns a farm record's id, or "" for anything that does not
// decode as one.
func RecordIDOf(data []byte) string {
	id, _ := identify(data)
	return id
}

func identify(data []byte) (id, farmer string) {
	var rec struct {
		ID      string `json:"id"`
		Payload struct {
			FarmerID string `json:"farmer_id"`
		} `json:"payload"`
	}
	if json.Unmarshal(data, &rec) != nil {
		return "", ""
	}
	return rec.ID, strings.ToLower(rec.Payload.FarmerID)
}

// IsFarmers reports whether a message carries a record about farmer.
func IsFarmers(farmer string) func(jetstream.Msg) bool {
	farmer = strings.ToLower(farmer)
	return func(msg jetstream.Msg) bool { return FarmerOf(msg.Data()) == farmer }
}
