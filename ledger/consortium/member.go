package consortium

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Identity is an enrolled identity: its certificate (PEM) and key.
type Identity struct {
	CertPEM []byte
	Key     *ecdsa.PrivateKey
}

// MemberMaterial is what a member's own Fabric CA issued: its CA
// certificate (also its TLS root: one CA signs both profiles), signing
// identities for its admin, client and peer, and TLS certificates for
// them and its chaincode server.
type MemberMaterial struct {
	CACertPEM                                []byte
	Admin, User, Peer                        Identity
	AdminTLS, UserTLS, PeerTLS, ChaincodeTLS Identity
}

// WriteMemberMaterial lays out a member's CA-issued material in the
// directory layout every other organization has (cryptogen's), so that the
// consortium, the peer and the clients find it in the same places. There
// is no CA key: it stays in the member's CA server.
func (c *Consortium) WriteMemberMaterial(mspID string, m MemberMaterial) error {
	blk, _ := pem.Decode(m.CACertPEM)
	if blk == nil {
		return errors.New("consortium: no PEM CA certificate")
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return fmt.Errorf("consortium: CA certificate: %w", err)
	}
	ca := pem.EncodeToMemory(blk)
	org := c.orgDir(mspID)
	files := map[string][]byte{
		filepath.Join(org, "ca", "ca.crt"):    ca,
		filepath.Join(org, "tlsca", "ca.crt"): ca,
	}
	mspDir := func(dir string, id *Identity) error {
		files[filepath.Join(dir, "cacerts", "ca.crt")] = ca
		files[filepath.Join(dir, "tlscacerts", "ca.crt")] = ca
		files[filepath.Join(dir, "config.yaml")] = []byte(nodeOUsConfig)
		if id == nil {
			return nil
		}
		key, err := keyPEM(id.Key)
		if err != nil {
			return err
		}
		files[filepath.Join(dir, "signcerts", "cert.pem")] = id.CertPEM
		files[filepath.Join(dir, "keystore", "priv_sk")] = key
		return nil
	}
	tlsDir := func(dir, certName, keyName string, id Identity) error {
		key, err := keyPEM(id.Key)
		if err != nil {
			return err
		}
		files[filepath.Join(dir, "ca.crt")] = ca
		files[filepath.Join(dir, certName)] = id.CertPEM
		files[filepath.Join(dir, keyName)] = key
		return nil
	}
	steps := []error{
		mspDir(filepath.Join(org, "msp"), nil),
		mspDir(filepath.Join(org, "users", "Admin", "msp"), &m.Admin),
		mspDir(filepath.Join(org, "users", "User1", "msp"), &m.User),
		mspDir(filepath.Join(org, "peers", "peer0", "msp"), &m.Peer),
		tlsDir(filepath.Join(org, "users", "Admin", "tls"), "client.crt", "client.key", m.AdminTLS),
		tlsDir(filepath.Join(org, "users", "User1", "tls"), "client.crt", "client.key", m.UserTLS),
		tlsDir(filepath.Join(org, "peers", "peer0", "tls"), "server.crt", "server.key", m.PeerTLS),
		tlsDir(filepath.Join(org, "services", "chaincode", "tls"), "server.crt", "server.key", m.ChaincodeTLS),
	}
	if err := errors.Join(steps...); err != nil {
		return fmt.Errorf("consortium: %w", err)
	}
	for path, b := range files {
		perm := 0o644
		if filepath.Base(path) == "priv_sk" || filepath.Ext(path) == ".key" {
			perm = 0o600
		}
		if err := writeFile(path, b, os.FileMode(perm)); err != nil {
			return err
		}
	}
	return nil
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	if k == nil {
		return nil, errors.New("missing private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// nodeOUsConfig is an MSP directory's config.yaml: roles from the OU the
// CA puts in each certificate (Fabric CA writes the identity type there).
const nodeOUsConfig = `NodeOUs:
  Enable: true
  ClientOUIdentifier:
    Certificate: cacerts/ca.crt
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    Certificate: cacerts/ca.crt
    OrganizationalUnitIdentifier: peer
  AdminOUIdentifier:
    Certificate: cacerts/ca.crt
    OrganizationalUnitIdentifier: admin
  OrdererOUIdentifier:
    Certificate: cacerts/ca.crt
    OrganizationalUnitIdentifier: orderer
`
