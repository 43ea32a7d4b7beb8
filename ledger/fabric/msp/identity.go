package msp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// Roles are carried in the certificate subject's OU, as with Fabric NodeOUs.
const (
	RoleClient  = "client"
	RolePeer    = "peer"
	RoleAdmin   = "admin"
	RoleOrderer = "orderer"
)

// Identity is a deserialized, not necessarily validated, member of an MSP.
type Identity struct {
	MSPID      string
	Role       string
	Cert       *x509.Certificate
	Serialized []byte
}

// ecdsaSignature is the ASN.1 shape of an ECDSA signature.
type ecdsaSignature struct{ R, S *big.Int }

// Verify checks an ECDSA SHA-256 signature over msg. High-S signatures are
// rejected, as Fabric does, so that a signature cannot be malleated into a
// second valid one.
func (id *Identity) Verify(msg, sig []byte) error {
	pub, ok := id.Cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("identity public key is not ECDSA")
	}
	if len(sig) == 0 {
		return errors.New("empty signature")
	}
	var s ecdsaSignature
	rest, err := asn1.Unmarshal(sig, &s)
	if err != nil {
		return fmt.Errorf("unmarshal ecdsa signature: %w", err)
	}
	if len(rest) != 0 || s.R == nil || s.S == nil || s.R.Sign() <= 0 || s.S.Sign() <= 0 {
		return errors.New("malformed ecdsa signature")
	}
	if !isLowS(pub.Curve, s.S) {
		return fmt.Errorf("invalid S, must be smaller than half the order [%s][%s]", s.S, halfOrder(pub.Curve))
	}
	digest := sha256.Sum256(msg)
	if !ecdsa.Verify(pub, digest[:], s.R, s.S) {
		return errors.New("the signature is invalid")
	}
	return nil
}

func halfOrder(c elliptic.Curve) *big.Int { return new(big.Int).Rsh(c.Params().N, 1) }

func isLowS(c elliptic.Curve, s *big.Int) bool { return s.Cmp(halfOrder(c)) <= 0 }

// SigningIdentity is an Identity together with its private key.
type SigningIdentity struct {
	*Identity
	Key *ecdsa.PrivateKey
}

// Sign returns a low-S ECDSA signature over SHA-256(msg).
func (s *SigningIdentity) Sign(msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	r, sv, err := ecdsa.Sign(rand.Reader, s.Key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if !isLowS(s.Key.Curve, sv) {
		sv = new(big.Int).Sub(s.Key.Curve.Params().N, sv)
	}
	return asn1.Marshal(ecdsaSignature{R: r, S: sv})
}

// NewIdentity builds an Identity for cert under mspID, serialized as Fabric's
// msp.SerializedIdentity with a PEM certificate.
func NewIdentity(mspID string, cert *x509.Certificate) (*Identity, error) {
	ser, err := proto.Marshal(&mspproto.SerializedIdentity{
		Mspid:   mspID,
		IdBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
	})
	if err != nil {
		return nil, fmt.Errorf("serialize identity: %w", err)
	}
	return &Identity{MSPID: mspID, Role: roleOf(cert), Cert: cert, Serialized: ser}, nil
}

func roleOf(cert *x509.Certificate) string {
	for _, ou := range cert.Subject.OrganizationalUnit {
		switch ou {
		case RoleClient, RolePeer, RoleAdmin, RoleOrderer:
			return ou
		}
	}
	return ""
}

// Manager knows the MSPs of the channel and checks identities against them.
// It caches successful chain verifications by serialized identity because
// every transaction carries the same few creators; the validity window is
// still checked on every call.
type Manager struct {
	roots map[string]*x509.CertPool
	now   func() time.Time
	cache sync.Map // string(serialized) -> *Identity (chain verified)
}

// NewManager returns a Manager trusting roots, keyed by MSP ID.
func NewManager(roots map[string][]*x509.Certificate) *Manager {
	m := &Manager{roots: make(map[string]*x509.CertPool), now: time.Now}
	for id, certs := range roots {
		pool := x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
		m.roots[id] = pool
	}
	return m
}

// Known reports whether mspID is a member of the channel.
func (m *Manager) Known(mspID string) bool { _, ok := m.roots[mspID]; return ok }

// ErrUnknownMSP is returned when an identity names an MSP the channel does not know.
var ErrUnknownMSP = errors.New("unknown MSP")

// Deserialize parses a serialized identity. It fails when the bytes are
// malformed or the MSP ID is unknown; it does not validate the certificate.
func (m *Manager) Deserialize(serialized []byte) (*Identity, error) {
	if v, ok := m.cache.Load(string(serialized)); ok {
		return v.(*Identity), nil
	}
	var sid mspproto.SerializedIdentity
	if err := proto.Unmarshal(serialized, &sid); err != nil {
		return nil, fmt.Errorf("could not deserialize a SerializedIdentity: %w", err)
	}
	if !m.Known(sid.Mspid) {
		return nil, fmt.Errorf("%w %q", ErrUnknownMSP, sid.Mspid)
	}
	block, _ := pem.Decode(sid.IdBytes)
	if block == nil {
		return nil, errors.New("could not decode pem bytes")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return &Identity{MSPID: sid.Mspid, Role: roleOf(cert), Cert: cert, Serialized: serialized}, nil
}

// Validate checks that id chains to its MSP's CA and is currently valid.
func (m *Manager) Validate(id *Identity) error {
	now := m.now()
	if now.Before(id.Cert.NotBefore) || now.After(id.Cert.NotAfter) {
		return fmt.Errorf("certificate of %s is outside its validity window [%s, %s]", id.MSPID, id.Cert.NotBefore.Format(time.RFC3339), id.Cert.NotAfter.Format(time.RFC3339))
	}
	if _, ok := m.cache.Load(string(id.Serialized)); ok {
		return nil
	}
	pool, ok := m.roots[id.MSPID]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownMSP, id.MSPID)
	}
	if _, err := id.Cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("could not obtain certification chain for %s: %w", id.MSPID, err)
	}
	if id.Role == "" {
		return fmt.Errorf("certificate of %s carries no node OU (client, peer, admin, orderer)", id.MSPID)
	}
	m.cache.Store(string(id.Serialized), id)
	return nil
}

// DeserializeValid deserializes and validates in one step.
func (m *Manager) DeserializeValid(serialized []byte) (*Identity, error) {
	id, err := m.Deserialize(serialized)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(id); err != nil {
		return nil, err
	}
	return id, nil
}
