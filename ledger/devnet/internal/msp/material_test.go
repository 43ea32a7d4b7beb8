package msp

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// caKeyUsage is what cryptogen gives a CA.
const caKeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment

var (
	serverAndClient = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	clientOnly      = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
)

func mustOrgs(t *testing.T, hosts []string) (root string, peer, orderer *Org) {
	t.Helper()
	root = t.TempDir()
	peer, err := LoadOrCreateOrg(root, "TaniMSP", RolePeer, hosts)
	if err != nil {
		t.Fatal(err)
	}
	orderer, err = LoadOrCreateOrg(root, "OrdererMSP", RoleOrderer, hosts)
	if err != nil {
		t.Fatal(err)
	}
	return root, peer, orderer
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func mustRead(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := ReadCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMaterialUsages(t *testing.T) {
	hosts := []string{"gateway.tani.example", "10.1.2.3"}
	_, peer, orderer := mustOrgs(t, hosts)
	for _, o := range []*Org{peer, orderer} {
		t.Run(o.MSPID, func(t *testing.T) {
			t.Run("CAs", func(t *testing.T) {
				for name, ca := range map[string]*x509.Certificate{"ca": o.CACert, "tlsca": o.TLSCACert} {
					if !ca.IsCA || !ca.BasicConstraintsValid {
						t.Errorf("%s: got IsCA %v, basic constraints %v, want CA:TRUE", name, ca.IsCA, ca.BasicConstraintsValid)
					}
					if ca.KeyUsage != caKeyUsage {
						t.Errorf("%s: got key usage %b, want %b (cert sign, CRL sign, digital signature, key encipherment)", name, ca.KeyUsage, caKeyUsage)
					}
					if !sameUsages(ca.ExtKeyUsage, serverAndClient) || len(ca.UnknownExtKeyUsage) != 0 {
						t.Errorf("%s: got extended key usage %v %v, want exactly serverAuth and clientAuth (no anyExtendedKeyUsage)", name, ca.ExtKeyUsage, ca.UnknownExtKeyUsage)
					}
					pub := ca.PublicKey.(*ecdsa.PublicKey)
					k, _ := pub.ECDH()
					if want := sha256.Sum256(k.Bytes()); !slices.Equal(ca.SubjectKeyId, want[:]) {
						t.Errorf("%s: subject key id %x, want SHA-256 of the public point %x", name, ca.SubjectKeyId, want)
					}
					if err := ca.CheckSignatureFrom(ca); err != nil {
						t.Errorf("%s: not self-signed: %v", name, err)
					}
				}
			})
			t.Run("SigningCertificates", func(t *testing.T) {
				for _, role := range []string{RoleAdmin, RoleClient, o.NodeRole} {
					c := mustRead(t, o.CertPath(role))
					if c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.ExtKeyUsage) != 0 || c.IsCA || !c.BasicConstraintsValid {
						t.Errorf("%s: got key usage %b, extended %v, CA %v, want digital signature only, no extended usage, CA:FALSE", role, c.KeyUsage, c.ExtKeyUsage, c.IsCA)
					}
					if !slices.Equal(c.Subject.OrganizationalUnit, []string{role}) {
						t.Errorf("%s: got OU %v, want the NodeOU %q", role, c.Subject.OrganizationalUnit, role)
					}
					// A Fabric peer's MSP verifies identities with empty
					// KeyUsages, which Go reads as serverAuth.
					if _, err := c.Verify(x509.VerifyOptions{Roots: pool(o.CACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
						t.Errorf("%s: does not chain to the CA as a Fabric MSP checks it: %v", role, err)
					}
					if _, err := c.Verify(x509.VerifyOptions{Roots: pool(o.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
						t.Errorf("%s: signing certificate chains to the TLS CA, want only to the signing CA", role)
					}
				}
			})
			t.Run("ServerTLS", func(t *testing.T) {
				certPath, _ := o.ServerTLSPaths()
				c := mustRead(t, certPath)
				if c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment || !sameUsages(c.ExtKeyUsage, serverAndClient) || c.IsCA {
					t.Errorf("got key usage %b, extended %v, CA %v, want digital signature and key encipherment, serverAuth and clientAuth, CA:FALSE", c.KeyUsage, c.ExtKeyUsage, c.IsCA)
				}
				cn := o.NodeName() + "." + o.Domain()
				if diff := cmp.Diff([]string{cn, o.NodeName(), "localhost", "gateway.tani.example"}, c.DNSNames); diff != "" {
					t.Errorf("DNS names (-want +got):\n%s", diff)
				}
				wantIPs := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP("10.1.2.3")}
				if !slices.EqualFunc(wantIPs, c.IPAddresses, net.IP.Equal) {
					t.Errorf("got IP addresses %v, want %v", c.IPAddresses, wantIPs)
				}
				for _, name := range []string{cn, o.NodeName(), "localhost", "127.0.0.1", "::1", "gateway.tani.example", "10.1.2.3"} {
					if _, err := c.Verify(x509.VerifyOptions{DNSName: name, Roots: pool(o.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
						t.Errorf("as server %s: %v", name, err)
					}
				}
				if _, err := c.Verify(x509.VerifyOptions{Roots: pool(o.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
					t.Errorf("as client toward other nodes: %v", err)
				}
				if _, err := c.Verify(x509.VerifyOptions{DNSName: "elsewhere.example", Roots: pool(o.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
					t.Error("valid for elsewhere.example, want a host name error")
				}
				if _, err := c.Verify(x509.VerifyOptions{Roots: pool(o.CACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
					t.Error("TLS certificate chains to the signing CA, want only to the TLS CA")
				}
			})
			t.Run("ClientTLS", func(t *testing.T) {
				for _, role := range []string{RoleAdmin, RoleClient} {
					certPath, keyPath := o.ClientTLSPaths(role)
					c := mustRead(t, certPath)
					if c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment || !sameUsages(c.ExtKeyUsage, clientOnly) || c.IsCA {
						t.Errorf("%s: got key usage %b, extended %v, CA %v, want digital signature and key encipherment, clientAuth only, CA:FALSE", role, c.KeyUsage, c.ExtKeyUsage, c.IsCA)
					}
					if _, err := c.Verify(x509.VerifyOptions{Roots: pool(o.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
						t.Errorf("%s: as client: %v", role, err)
					}
					if _, err := c.Verify(x509.VerifyOptions{Roots: pool(o.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
						t.Errorf("%s: a user's TLS certificate is valid for a server, want clientAuth only", role)
					}
					key, err := ReadPrivateKey(keyPath)
					if err != nil {
						t.Fatal(err)
					}
					if !key.PublicKey.Equal(c.PublicKey) {
						t.Errorf("%s: client.key does not match client.crt", role)
					}
				}
			})
		})
	}
	t.Run("ErrOtherOrgTLSCA", func(t *testing.T) {
		certPath, _ := peer.ServerTLSPaths()
		if _, err := mustRead(t, certPath).Verify(x509.VerifyOptions{Roots: pool(orderer.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Error("TaniMSP's server certificate chains to OrdererMSP's TLS CA")
		}
	})
}

// TestMaterialOpenSSL checks the TLS certificates with OpenSSL's own purpose
// checks, the ones the Node, Java and Python SDKs apply ("unsuitable
// certificate purpose" when a CA lacks the usage).
func TestMaterialOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	_, peer, _ := mustOrgs(t, nil)
	server, _ := peer.ServerTLSPaths()
	client, _ := peer.ClientTLSPaths(RoleClient)
	verify := func(purpose, cert string) error {
		out, err := exec.Command("openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", peer.TLSCAPath(), cert).CombinedOutput()
		if err != nil {
			return &opensslError{string(out)}
		}
		return nil
	}
	for _, c := range []struct {
		name, purpose, cert string
		ok                  bool
	}{
		{"OKServer", "sslserver", server, true},
		{"OKNodeAsClient", "sslclient", server, true},
		{"OKClient", "sslclient", client, true},
		{"ErrClientAsServer", "sslserver", client, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := verify(c.purpose, c.cert)
			if c.ok && err != nil {
				t.Errorf("openssl verify -purpose %s %s: %v", c.purpose, filepath.Base(c.cert), err)
			}
			if !c.ok && (err == nil || !strings.Contains(err.Error(), "unsuitable certificate purpose")) {
				t.Errorf("openssl verify -purpose %s %s: got %v, want unsuitable certificate purpose", c.purpose, filepath.Base(c.cert), err)
			}
		})
	}
}

type opensslError struct{ out string }

func (e *opensslError) Error() string { return strings.TrimSpace(e.out) }

// TestUpgradeLegacyMaterial starts from material as earlier versions wrote
// it (CAs with anyExtendedKeyUsage only, no user TLS certificates) and
// checks that loading it re-signs the CAs with the same key and keeps every
// existing certificate valid.
func TestUpgradeLegacyMaterial(t *testing.T) {
	root := t.TempDir()
	o, err := LoadOrCreateOrg(root, "TaniMSP", RolePeer, nil)
	if err != nil {
		t.Fatal(err)
	}
	legacy := func(ca *x509.Certificate, key *ecdsa.PrivateKey) *x509.Certificate {
		tmpl := caTemplate(ca.Subject, ca.NotBefore, ca.NotAfter, ca.SubjectKeyId)
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
		c, err := issue(tmpl, &key.PublicKey, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	oldCA, oldTLSCA := legacy(o.CACert, o.CAKey), legacy(o.TLSCACert, o.TLSCAKey)
	for path, c := range map[string]*x509.Certificate{
		filepath.Join(o.Dir, "ca", "ca.crt"):                     oldCA,
		filepath.Join(o.MSPDir(RoleClient), "cacerts", "ca.crt"): oldCA,
		o.TLSCAPath(): oldTLSCA,
		filepath.Join(o.MSPDir(RoleClient), "tlscacerts", "ca.crt"): oldTLSCA,
		filepath.Join(o.TLSDir(RolePeer), "ca.crt"):                 oldTLSCA,
	} {
		if err := writePEM(path, "CERTIFICATE", c.Raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range []string{RoleAdmin, RoleClient} {
		cert, key := o.ClientTLSPaths(role)
		os.Remove(cert)
		os.Remove(key)
	}

	up, err := LoadOrCreateOrg(root, "TaniMSP", RolePeer, nil)
	if err != nil {
		t.Fatalf("load legacy material: %v", err)
	}
	t.Run("CAsResigned", func(t *testing.T) {
		for name, c := range map[string]struct{ old, now *x509.Certificate }{"ca": {oldCA, up.CACert}, "tlsca": {oldTLSCA, up.TLSCACert}} {
			if !hasCAUsages(c.now) {
				t.Errorf("%s: got usages %b %v, want cryptogen's", name, c.now.KeyUsage, c.now.ExtKeyUsage)
			}
			if !c.now.PublicKey.(*ecdsa.PublicKey).Equal(c.old.PublicKey) || !slices.Equal(c.now.RawSubject, c.old.RawSubject) || !slices.Equal(c.now.SubjectKeyId, c.old.SubjectKeyId) {
				t.Errorf("%s: re-signed CA changed key, subject or key identifier", name)
			}
		}
	})
	t.Run("CopiesUpdated", func(t *testing.T) {
		for path, want := range map[string]*x509.Certificate{
			filepath.Join(o.MSPDir(RoleClient), "cacerts", "ca.crt"):    up.CACert,
			filepath.Join(o.MSPDir(RoleClient), "tlscacerts", "ca.crt"): up.TLSCACert,
			filepath.Join(o.TLSDir(RolePeer), "ca.crt"):                 up.TLSCACert,
			filepath.Join(o.Dir, "msp", "cacerts", "ca.crt"):            up.CACert,
		} {
			if !mustRead(t, path).Equal(want) {
				t.Errorf("%s still holds the old CA certificate", path)
			}
		}
	})
	t.Run("OldLeavesStillValid", func(t *testing.T) {
		server, _ := up.ServerTLSPaths()
		if _, err := mustRead(t, server).Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: pool(up.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate: %v", err)
		}
		if !up.Client.Cert.Equal(o.Client.Cert) {
			t.Error("client signing certificate was reissued, want it kept")
		}
		if _, err := up.Client.Cert.Verify(x509.VerifyOptions{Roots: pool(up.CACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("client signing certificate: %v", err)
		}
	})
	t.Run("ClientTLSCreated", func(t *testing.T) {
		for _, role := range []string{RoleAdmin, RoleClient} {
			cert, _ := up.ClientTLSPaths(role)
			if _, err := mustRead(t, cert).Verify(x509.VerifyOptions{Roots: pool(up.TLSCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("%s: %v", role, err)
			}
		}
	})
	t.Run("OKIdempotent", func(t *testing.T) {
		again, err := LoadOrCreateOrg(root, "TaniMSP", RolePeer, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !again.TLSCACert.Equal(up.TLSCACert) || !again.CACert.Equal(up.CACert) {
			t.Error("loading upgraded material re-signed the CAs again")
		}
	})
}

func sameUsages(got, want []x509.ExtKeyUsage) bool {
	return len(got) == len(want) && !slices.ContainsFunc(want, func(u x509.ExtKeyUsage) bool { return !slices.Contains(got, u) })
}
