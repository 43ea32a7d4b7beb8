// Package consortium is the part of a managed blockchain service a Tani
// consortium needs: it creates the organizations of a Fabric channel (CAs,
// admin, client and peer identities in cryptogen's layout), the channel's
// genesis block with fabric-config, the anchor chaincode's endorsement
// policy and a connection profile per organization; it adds an organization
// through a channel configuration update signed by a majority of the
// existing organizations' admins; and it lists the members.
//
// A consortium directory is also a devnet directory (`tani devnet -dir`),
// and its genesis block, profiles and client settings are what
// deploy/fabric feeds a real network.
//
// It must never sign with an identity other than an organization's admin,
// never write a configuration update that lacks the majority the channel's
// Admins policy requires, and never overwrite an existing consortium.
package consortium
