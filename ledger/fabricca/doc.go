// Package fabricca is a client of the few Fabric CA REST calls a
// consortium member needs: the CA's information, registering an identity
// (as a registrar, with Fabric CA's signed token) and enrolling one (a
// fresh P-256 key and a certificate signing request, for the signing or
// the TLS profile). It speaks the API of fabric-ca-server 1.5.
//
// It must never send a private key anywhere: keys are generated here and
// only certificate requests leave the process.
package fabricca
