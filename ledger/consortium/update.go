package consortium

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"

	fabricmsp "github.com/tani-platform/tani/ledger/fabric/msp"
)

// AddOrgConfig names the organization to add and the existing
// organizations whose admins sign the configuration update.
type AddOrgConfig struct {
	MSPID   string
	Signers []string
	// Hosts are extra DNS names or IPs for the new peer's TLS certificate.
	Hosts []string
}

// Update is a signed channel configuration update, ready for the orderer
// (`peer channel update -f EnvelopePath`).
type Update struct {
	Org          Org
	EnvelopePath string
	Signers      []string
}

// Majority is how many of n organizations' admins the channel's
// "MAJORITY Admins" policy needs.
func Majority(n int) int { return n/2 + 1 }

// AddOrg creates the new organization's material, computes the channel
// configuration update that adds it, has the admins of cfg.Signers sign it,
// checks the signatures satisfy MAJORITY Admins, and writes the signed
// envelope. The consortium's current configuration then includes the
// organization.
func (c *Consortium) AddOrg(cfg AddOrgConfig) (*Update, error) {
	if cfg.MSPID == "" || cfg.MSPID == fabricmsp.OrdererMSPID {
		return nil, fmt.Errorf("consortium: organization %q is empty or reserved", cfg.MSPID)
	}
	existing := make([]string, len(c.Orgs))
	for i, o := range c.Orgs {
		existing[i] = o.MSPID
	}
	if slices.Contains(existing, cfg.MSPID) {
		return nil, fmt.Errorf("consortium: %s is already a member", cfg.MSPID)
	}
	signers := slices.Compact(slices.Sorted(slices.Values(cfg.Signers)))
	for _, s := range signers {
		if !slices.Contains(existing, s) {
			return nil, fmt.Errorf("consortium: signer %s is not a member", s)
		}
	}
	if need := Majority(len(existing)); len(signers) < need {
		return nil, fmt.Errorf("consortium: adding %s needs signatures from %d of the %d member admins, got %d (%v)", cfg.MSPID, need, len(existing), len(signers), signers)
	}
	config, err := c.Config()
	if err != nil {
		return nil, err
	}
	if err := fabricmsp.GenerateMaterial(c.Dir, []string{cfg.MSPID}, cfg.Hosts); err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	org := newOrg(cfg.MSPID, 7051)
	corg, err := c.organization(org, true)
	if err != nil {
		return nil, err
	}
	tx := configtx.New(config)
	if err := tx.Application().SetOrganization(corg); err != nil {
		return nil, fmt.Errorf("consortium: add %s to the channel configuration: %w", cfg.MSPID, err)
	}
	update, err := tx.ComputeMarshaledUpdate(c.Channel)
	if err != nil {
		return nil, fmt.Errorf("consortium: compute configuration update: %w", err)
	}
	var sigs []*cb.ConfigSignature
	var ids []*configtx.SigningIdentity
	for _, s := range signers {
		id, err := c.adminIdentity(s)
		if err != nil {
			return nil, err
		}
		sig, err := id.CreateConfigSignature(update)
		if err != nil {
			return nil, fmt.Errorf("consortium: %s admin signs the update: %w", s, err)
		}
		sigs, ids = append(sigs, sig), append(ids, id)
	}
	if err := VerifyAdminsMajority(config, update, sigs); err != nil {
		return nil, err
	}
	env, err := configtx.NewEnvelope(update, sigs...)
	if err != nil {
		return nil, fmt.Errorf("consortium: update envelope: %w", err)
	}
	if err := ids[0].SignEnvelope(env); err != nil {
		return nil, fmt.Errorf("consortium: sign update envelope: %w", err)
	}
	path := filepath.Join(c.Dir, updatesDir, "add-"+cfg.MSPID+".tx")
	if err := writeProto(path, env); err != nil {
		return nil, err
	}
	if err := writeProto(filepath.Join(c.Dir, artifactsDir, configFile), tx.UpdatedConfig()); err != nil {
		return nil, err
	}
	c.Orgs = append(c.Orgs, org)
	if err := c.writeProfiles(); err != nil {
		return nil, err
	}
	return &Update{Org: org, EnvelopePath: path, Signers: signers}, c.save()
}

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
