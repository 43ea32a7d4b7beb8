// Package events is Tani's transactional outbox of the events an
// organization may receive (pushed as Standard Webhooks by
// services/webhooks, or polled).
//
// A producer records an event with Record in the same Postgres transaction
// as the state change it reports, so an event exists exactly when its
// change committed; the Relay publishes the outbox to the EVENTS stream in
// order, with the event id as JetStream message id, and marks the rows
// published. The Catalogue names every event type, who may receive it and
// what its data holds.
//
// An event carries ids and links, never a farmer's personal data: it is
// delivered to organizations outside Tani and kept for the retention
// period. It must never be published other than through the outbox, and
// never be recorded outside the transaction of the change it reports.
package events
