// Package app assembles Tani from modules. A module is a name, the modules
// it depends on, and an init function that wires a service from the shared
// dependencies the modules before it have started. Targets pick which
// modules run in this process ("all" runs everything with an embedded NATS
// server; "ingest" runs one service against an external cluster), with the
// same code. Modules start in dependency order and stop in reverse; one that
// fails stops the process. It is what cmd/tani and the end-to-end tests run.
// It must never hold domain logic.
package app
