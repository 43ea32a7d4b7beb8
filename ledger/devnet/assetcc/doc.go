// Package assetcc is a small asset contract written with
// fabric-contract-api-go. The devnet hosts it for conformance tests and
// benchmarks: its transactions read, modify and write keys, so they exercise
// MVCC, and they emit chaincode events.
//
// It must never be used to hold real Tani data.
package assetcc
