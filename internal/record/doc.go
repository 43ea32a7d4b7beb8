// Package record defines the farm record envelope: what a device submits,
// what mobile-api publishes on farm.submitted.<type> and what ingest stores.
// It is the contract between those services, so it holds only the envelope,
// its validation and its canonical form, never storage or transport.
package record
