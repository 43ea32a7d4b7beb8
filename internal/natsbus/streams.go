package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The streams and subjects are the contract between services.
const (
	// StreamFarm holds every farm record on its way through the platform.
	StreamFarm = "FARM"
	// StreamDead holds poison messages with the reason they were refused.
	StreamDead = "DEAD"
	// StreamErasure holds farmers' erasure requests (ids only, no personal
	// data), kept until every owner of farmer data has acted on them.
	StreamErasure = "ERASURE"
	// StreamEvents holds the events organizations may receive (webhooks),
	// published from the Postgres outbox by internal/events' relay.
	StreamEvents = "EVENTS"

	// SubjectSubmittedPrefix + <type>: records accepted by mobile-api.
	SubjectSubmittedPrefix = "farm.submitted."
	// SubjectIngestedPrefix + <type>: records stored by ingest.
	SubjectIngestedPrefix = "farm.ingested."
	// SubjectAttestedPrefix + <type>: records decided by attest.
	SubjectAttestedPrefix = "farm.attested."
	// SubjectDeadPrefix + <original subject>: dead letters.
	SubjectDeadPrefix = "dead."
	// SubjectErasureRequested: a farmer asked to be forgotten (see
	// internal/forget).
	SubjectErasureRequested = "erasure.requested"
	// SubjectEventsPrefix + <event type> (events.consent.revoked): one
	// outbox event; its message id is the event id.
	SubjectEventsPrefix = "events."
)

// Headers ingest sets on farm.ingested, so consumers need not look the
// device up again.
const (
	HeaderAgentID  = "Tani-Agent-Id"
	HeaderDeviceID = "Tani-Device-Id"
)

// Headers set on dead letters.
const (
	HeaderDeadReason   = "Tani-Dead-Reason"
	HeaderDeadConsumer = "Tani-Dead-Consumer"
	HeaderDeadSubject  = "Tani-Dead-Subject"
	HeaderDeadAt       = "Tani-Dead-At"
	// HeaderDeadClass is invalid, conflict or gave_up (the Class constants).
	HeaderDeadClass = "Tani-Dead-Class"
	// HeaderDeadNotice is the reason as the message's sender may be told
	// it: the handler's client-safe message, never internal detail.
	HeaderDeadNotice = "Tani-Dead-Notice"
)

// DuplicateWindow is how long JetStream remembers message IDs. Longer-lived
// idempotency is Postgres's job (unique keys on record ids).
const DuplicateWindow = 10 * time.Minute

// Streams returns the definitions of the shared streams.
func Streams(replicas int) []jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	return []jetstream.StreamConfig{
		{
			Name:        StreamFarm,
			Description: "farm records: submitted by devices, ingested, attested",
			Subjects:    []string{"farm.>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      30 * 24 * time.Hour,
			Duplicates:  DuplicateWindow,
			Replicas:    replicas,
		},
		{
			Name:        StreamDead,
			Description: "poison messages with the reason they were refused; listed and replayed by operators",
			Subjects:    []string{SubjectDeadPrefix + ">"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      90 * 24 * time.Hour,
			Duplicates:  DuplicateWindow,
			Replicas:    replicas,
		},
		{
			// No age limit: an owner that is down for months must still
			// erase when it comes back. One small message per erasure.
			Name:        StreamErasure,
			Description: "farmers' erasure requests, acted on by every owner of farmer data",
			Subjects:    []string{"erasure.>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Duplicates:  DuplicateWindow,
			Replicas:    replicas,
		},
		{
			// The outbox in Postgres is the durable record (replay and
			// polling read it); the stream only has to outlast a consumer
			// that is down, so it keeps what the outbox keeps by default.
			Name:        StreamEvents,
			Description: "events for organizations (webhooks), relayed from the Postgres outbox",
			Subjects:    []string{SubjectEventsPrefix + ">"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      30 * 24 * time.Hour,
			Duplicates:  DuplicateWindow,
			Replicas:    replicas,
		},
	}
}

// EnsureStreams creates or updates the shared streams; safe to call from
// every process at every start. Consumers leave their replica count unset,
// so JetStream gives each the replicas of its stream: on an R3 stream a
// consumer's delivered and acknowledged state survives losing a node too.
//
// A cluster that is still placing replicas (nodes starting, a leader being
// elected, several processes creating the same streams at once) answers
// with timeouts or "unavailable" for a while: those are retried for up to
// ensureStreamsWait, so a process started beside its cluster waits for it
// rather than failing; a refused configuration fails at once.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	giveUp := time.Now().Add(ensureStreamsWait)
	for _, sc := range Streams(replicas) {
		pause := 100 * time.Millisecond
		for {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			if err == nil {
				break
			}
			if !clusterBusy(ctx, err) || time.Now().Add(pause).After(giveUp) {
				if replicas > 1 {
					return fmt.Errorf("ensure stream %s with %d replicas (the cluster needs at least %d JetStream nodes up): %w", sc.Name, replicas, replicas, err)
				}
				return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("ensure stream %s: %w", sc.Name, ctx.Err())
			case <-time.After(pause):
			}
			pause = min(2*pause, 2*time.Second)
		}
	}
	return nil
}

// ensureStreamsWait is how long EnsureStreams waits for a busy cluster.
const ensureStreamsWait = 30 * time.Second

// clusterBusy tells an answer worth retrying (the request timed out while
// ctx is still alive, or JetStream said it cannot serve it now) from one
// that will not change (a refused configuration, a closed connection).
func clusterBusy(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && slices.Contains(clusterBusyCodes, api.ErrorCode)
}

// clusterBusyCodes are JetStream's answers while a cluster is forming or
// losing a node: no peers to place replicas on yet (10005), no meta leader
// (10008), not enough resources among the nodes up (10023). Others —
// "replicas > 1 not supported in non-clustered mode" (10074), a bad
// configuration — will not change by waiting.
var clusterBusyCodes = []jetstream.ErrorCode{10005, 10008, 10023}
