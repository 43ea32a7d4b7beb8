// Package ingest turns submitted farm records into stored ones. It consumes
// farm.submitted.<type> from JetStream, stores each record exactly once in
// the append-only submissions table, and publishes farm.ingested.<type>
// after the commit. It must never ack a message before its transaction
// commits, and never drop one: undecodable or conflicting records go to the
// dead-letter stream with the reason.
package ingest
