// Package loadgen drives a running Tani through its public API the way a
// fleet of field phones would, to measure the capture path: it creates
// agents with the operator token, logs them in, enrolls device keys,
// registers each agent's farmers, then syncs signed records of every type
// in concurrent batches and reports acceptance throughput, /sync latency
// percentiles and, given the database, how long until every accepted record
// was stored by ingest.
//
// It talks HTTP like a phone and only reads the database to count what was
// stored; it must never write to Postgres or NATS, and every run is bounded
// in records and in time.
package loadgen
