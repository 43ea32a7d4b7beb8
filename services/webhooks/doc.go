// Package webhooks tells banks and distributors what happened, as Standard
// Webhooks (https://www.standardwebhooks.com): organizations register
// endpoints (/bank/v1/webhooks, /distributor/v1/webhooks), a durable
// JetStream consumer on EVENTS fans each event out to the endpoints that
// subscribed to its type and may receive it, and dispatchers deliver every
// one signed, retried with exponential backoff and jitter for the retry
// window (72 h by default), with the same webhook-id on every attempt.
// Organizations audit deliveries, replay them from a point in time, and
// poll the same events (/events) when they were offline.
//
// Deliveries are scheduled in Postgres (webhooks.deliveries), so nothing
// acknowledged on EVENTS is lost across restarts; each endpoint has its
// own concurrency limit and queue, so a slow endpoint never holds up
// another. A farmer-scoped event is delivered only while the organization
// holds a live consent covering it, checked again before every attempt.
//
// It must never deliver to a loopback, link-local, private or multicast
// address outside development (the address is vetted when the endpoint is
// registered and again, after resolution, at every connection), never
// follow a redirect, never read more than a small part of a response, and
// never show a secret after the answer that created it.
package webhooks
