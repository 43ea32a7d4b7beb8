// Package cli is the tani command line: subcommands, flags and their
// TANI_* environment variables. main is a thin shell around Main so that
// tests run the binary's exact code path. It must never hold domain logic.
package cli
