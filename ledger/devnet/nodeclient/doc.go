// Package nodeclient checks the devnet against the official Node.js Fabric
// Gateway client (@hyperledger/fabric-gateway over @grpc/grpc-js, whose TLS
// is OpenSSL's), the client most banks' and distributors' integrations use.
// The Node program (gateway.mjs) and its pinned npm dependencies
// (package.json, package-lock.json) live here; the Go test installs them
// with `npm ci`, starts a devnet and runs the program with TLS verification
// on; with the suite's real Fabric network (TANI_FABRIC_NETWORK) it runs
// the same scenarios against a real peer.
//
// It has no Go API and must never be imported.
package nodeclient
