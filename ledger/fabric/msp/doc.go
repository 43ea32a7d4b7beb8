// Package msp is the membership service of the Fabric networks Tani runs or
// lays out (the devnet, `tani network init`): it creates and loads the X.509
// crypto material of each organization (laid out like Fabric's cryptogen
// output) and checks serialized identities and their signatures the way a
// Fabric peer's MSP does: the certificate must chain to the organization's CA,
// be inside its validity window, belong to a known MSP ID, and sign with
// ECDSA P-256 over SHA-256 with a low-S signature.
//
// It must never accept an identity it cannot chain to a configured root, and
// it must never hand out private keys of one organization to another.
package msp
