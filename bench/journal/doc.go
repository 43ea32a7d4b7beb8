// Package journalbench measures the journal against a durable reference
// log on the same disk: Tessera's POSIX driver (github.com/transparency-dev/tessera),
// the tile-based transparency log of the Trillian team, fed the same
// entries, fsyncing, and publishing a checkpoint at the end of every run.
//
// It is its own Go module, next to the tani module and never imported by
// it, so that Tessera and its dependencies are never linked into the tani
// binary nor change the versions tani builds with. Run it with
// `make bench-journal`; docs/ledger-benchmarks.md explains the method and
// records the figures.
package journalbench
