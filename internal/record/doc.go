// Package record defines the farm record envelope: what a device submits,
// what mobile-api publishes on farm.submitted.<type> and what ingest stores.
// It is the contract between those services, so it holds only the envelope,
// its one strict parse into RFC 8785 canonical bytes, its validation
// (boundary geometry included) and its signing input, never storage or
// transport.
//
// Every reader of a record goes through Decode or Check: reading a record
// with encoding/json (case-insensitive keys, last duplicate wins) would let
// two services see two different records in the same bytes.
package record
