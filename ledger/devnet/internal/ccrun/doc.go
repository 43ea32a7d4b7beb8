// Package ccrun runs real Go chaincode the way a Fabric peer does: it serves
// the chaincode as a shim.ChaincodeServer on an in-memory gRPC connection,
// plays the peer's side of the chaincode protocol (REGISTER, READY,
// TRANSACTION, GET_STATE, PUT_STATE, ...) and turns each invocation into a
// response, a chaincode event and a read/write set.
//
// It must never let a simulation observe uncommitted writes, its own or
// another transaction's: reads always come from committed state.
package ccrun
