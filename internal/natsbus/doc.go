// Package natsbus is Tani's messaging foundation on NATS JetStream: the
// embedded server for single-machine runs, the client connection, the
// streams every service shares (their subjects are the contract between
// services), and the consumer runner that acks only after a handler has
// committed, retries transient failures with backoff and dead-letters
// poison messages with their reason. It must never drop a message silently
// and never hold domain logic.
package natsbus
