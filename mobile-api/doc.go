// Package mobileapi is the field agents' API under /mobile/v1: phones sync
// batches of records captured offline and ask what became of them. It
// answers 2xx for a record only after JetStream has acked its publish, so an
// acknowledged record is never lost, and it stores nothing for input it
// refuses. It must never write domain tables: ingest does that.
package mobileapi
