// Package verify checks Tani ledger receipts offline: given a receipt and the
// log's public key, it proves that one exact journal entry is included in a
// tree the log signed. It also owns the canonical encoding of journal entries,
// so that the verifier and the journal can never disagree about leaf bytes.
//
// It must never depend on a database, the network or the rest of Tani: a bank
// or an auditor runs it on their own machine against a file they were handed.
package verify
