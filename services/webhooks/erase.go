package webhooks

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
)

// ErasureConsumerName is the webhooks module's durable consumer of
// erasure requests.
const ErasureConsumerName = "webhooks-erasure"

// eraser is the webhooks module as an owner of farmer data: the events
// about a farmer (outbox and EVENTS, which it reads) and their deliveries.
var eraser = forget.Owner{Name: "webhooks", Table: "webhooks.erasures"}

// Erased is what the webhooks module's erasure of a farmer removed
// (counts only).
type Erased struct {
	Events     int64 `json:"events"`     // outbox rows about the farmer
	Deliveries int64 `json:"deliveries"` // their deliveries, with their attempts
	Messages   int   `json:"messages"`   // their copies on EVENTS
}

// erase deletes the farmer's events from the outbox and EVENTS, and their
// deliveries (pending ones included: nothing more about the farmer is
// sent). What organizations already received is theirs; their endpoint's
// delivery log no longer names the farmer.
func (s *Service) erase(ctx context.Context, r forget.Request) (any, error) {
	var out Erased
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = Erased{}
		if _, err := eraser.Begin(ctx, tx, r); err != nil {
			return err
		}
		var err error
		if out.Events, err = events.Erase(ctx, tx, r.FarmerID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM webhooks.deliveries WHERE farmer_id = $1`, r.FarmerID)
		if err != nil {
			return fmt.Errorf("erase deliveries: %w", err)
		}
		out.Deliveries = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out.Messages, err = forget.Purge(ctx, s.js, natsbus.StreamEvents, []string{natsbus.SubjectEventsPrefix + ">"}, aboutFarmer(r.FarmerID)); err != nil {
		return nil, err
	}
	return out, nil
}

// aboutFarmer reports whether an EVENTS message is about farmer.
func aboutFarmer(farmer string) func(jetstream.Msg) bool {
	return func(msg jetstream.Msg) bool {
		m, err := events.Decode(msg.Data())
		return err == nil && m.FarmerID == farmer
	}
}
