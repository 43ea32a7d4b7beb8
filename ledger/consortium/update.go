package consortium

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// Majority is how many of n organizations' admins the channel's
// "MAJORITY Admins" policy needs: more than half.
func Majority(n int) int { return n/2 + 1 }

func (c *Consortium) adminIdentity(mspID string) (*configtx.SigningIdentity, error) {
	certPath, keyPath := c.AdminPaths(mspID)
	cert, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("consortium: %s admin key: %w", mspID, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("consortium: no PEM data in %s", keyPath)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("consortium: %s admin key: %w", mspID, err)
	}
	return &configtx.SigningIdentity{Certificate: cert, PrivateKey: key, MSPID: mspID}, nil
}

// VerifyAdminsMajority checks, against the current channel configuration,
// what the orderer checks for /Channel/Application/Admins: each signature
// is by a certificate issued by its organization's CA with the admin
// NodeOU, it signs this update, and the distinct signing organizations are
// a majority of the application organizations.
func VerifyAdminsMajority(config *cb.Config, update []byte, sigs []*cb.ConfigSignature) error {
	tx := configtx.New(config)
	app, err := tx.Application().Configuration()
	if err != nil {
		return fmt.Errorf("consortium: application configuration: %w", err)
	}
	roots := map[string]*x509.CertPool{}
	for _, o := range app.Organizations {
		pool := x509.NewCertPool()
		for _, c := range o.MSP.RootCerts {
			pool.AddCert(c)
		}
		roots[o.MSP.Name] = pool
	}
	signed := map[string]bool{}
	var errs []error
	for i, s := range sigs {
		org, err := verifyAdminSignature(roots, update, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("signature %d: %w", i, err))
			continue
		}
		signed[org] = true
	}
	if need := Majority(len(roots)); len(signed) < need {
		errs = append(errs, fmt.Errorf("valid admin signatures from %d organizations, the Admins policy needs %d of %d", len(signed), need, len(roots)))
		return fmt.Errorf("consortium: update rejected: %w", errors.Join(errs...))
	}
	return nil
}

func verifyAdminSignature(roots map[string]*x509.CertPool, update []byte, s *cb.ConfigSignature) (string, error) {
	var hdr cb.SignatureHeader
	if err := proto.Unmarshal(s.SignatureHeader, &hdr); err != nil {
		return "", fmt.Errorf("decode signature header: %w", err)
	}
	var sid msp.SerializedIdentity
	if err := proto.Unmarshal(hdr.Creator, &sid); err != nil {
		return "", fmt.Errorf("decode creator: %w", err)
	}
	pool, ok := roots[sid.Mspid]
	if !ok {
		return "", fmt.Errorf("%s is not a member", sid.Mspid)
	}
	cert, err := parseCertPEM(sid.IdBytes)
	if err != nil {
		return "", fmt.Errorf("%s creator: %w", sid.Mspid, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", fmt.Errorf("%s creator is not issued by its CA: %w", sid.Mspid, err)
	}
	if !slices.Contains(cert.Subject.OrganizationalUnit, "admin") {
		return "", fmt.Errorf("%s creator %q is not an admin", sid.Mspid, cert.Subject.CommonName)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("%s creator key is not ECDSA", sid.Mspid)
	}
	digest := sha256.Sum256(append(append([]byte{}, s.SignatureHeader...), update...))
	if !ecdsa.VerifyASN1(pub, digest[:], s.Signature) {
		return "", fmt.Errorf("%s admin signature does not verify over this update", sid.Mspid)
	}
	return sid.Mspid, nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
