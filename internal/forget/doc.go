// Package forget is the contract every owner of farmer data follows when a
// farmer asks to be forgotten: the erasure request as it travels on the
// ERASURE stream, the durable consumer each owner runs on it, the
// per-farmer lock that orders an owner's erasure against that owner's own
// writers, the row each owner keeps in its own schema (a tombstone that
// refuses the farmer's new records, and the progress the operator's status
// shows), and the scan that deletes a farmer's messages from JetStream for
// good (SecureDeleteMsg overwrites their bytes).
//
// It never reads or deletes another owner's data: each owner erases its own
// schema, its own subjects and files, with the helpers here.
package forget
