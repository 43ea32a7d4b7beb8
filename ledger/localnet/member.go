package localnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tani-platform/tani/ledger/consortium"
	"github.com/tani-platform/tani/ledger/fabricca"
)

// EnrollMember gives a prospective member m its own Fabric CA server
// (fabric-ca-server creates the CA's key, which never leaves the server's
// home) and has it issue the member's identities through the CA's REST
// API: its admin, a client, its peer (signing and TLS certificates) and a
// TLS certificate for its chaincode server, laid out in the consortium
// directory. Then the member can be proposed. Already enrolled members
// only get their CA started.
func (n *Network) EnrollMember(ctx context.Context, m consortium.Org) error {
	if err := n.checkPrograms(); err != nil {
		return err
	}
	p, err := n.caProc(m)
	if err != nil {
		return err
	}
	if err := n.startAll(ctx, []proc{p}); err != nil {
		return err
	}
	if n.C.HasMaterial(m.MSPID) {
		return nil
	}
	cl, registrar, err := n.CAClient(ctx, m)
	if err != nil {
		return err
	}
	info, err := cl.Info(ctx)
	if err != nil {
		return err
	}
	host := func(ep string) string { h, _, _ := net.SplitHostPort(ep); return h }
	enroll := func(name, typ string, tlsHosts []string) (sign, tls consortium.Identity, err error) {
		secret := randomSecret()
		if _, err := cl.Register(ctx, registrar, fabricca.Registration{Name: name, Type: typ, Secret: secret}); err != nil {
			return sign, tls, err
		}
		s, err := cl.Enroll(ctx, fabricca.EnrollRequest{Name: name, Secret: secret})
		if err != nil {
			return sign, tls, err
		}
		t, err := cl.Enroll(ctx, fabricca.EnrollRequest{Name: name, Secret: secret, Profile: "tls", Hosts: tlsHosts})
		if err != nil {
			return sign, tls, err
		}
		return consortium.Identity{CertPEM: s.CertPEM, Key: s.Key}, consortium.Identity{CertPEM: t.CertPEM, Key: t.Key}, nil
	}
	var mat consortium.MemberMaterial
	mat.CACertPEM = info.CAChain
	// Names qualified by the member's domain, as cryptogen names them.
	if mat.Admin, mat.AdminTLS, err = enroll("Admin@"+m.Domain, "admin", nil); err != nil {
		return err
	}
	if mat.User, mat.UserTLS, err = enroll("User1@"+m.Domain, "client", nil); err != nil {
		return err
	}
	if mat.Peer, mat.PeerTLS, err = enroll(m.PeerName(), "peer", uniq(m.PeerName(), "peer0", "localhost", "127.0.0.1", host(m.PeerEndpoint))); err != nil {
		return err
	}
	ccName := "chaincode." + m.Domain
	if _, mat.ChaincodeTLS, err = enroll(ccName, "client", uniq(ccName, "localhost", "127.0.0.1", host(m.ChaincodeEndpoint))); err != nil {
		return err
	}
	if err := n.C.WriteMemberMaterial(m.MSPID, mat); err != nil {
		return err
	}
	n.log.InfoContext(ctx, "member enrolled by its own CA", "org", m.MSPID, "ca", m.CAEndpoint, "ca_version", info.Version)
	return nil
}

func randomSecret() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// StopMember stops a former member's processes (after its removal was
// applied): its peer, chaincode server and CA.
func (n *Network) StopMember(mspID string, grace time.Duration) error {
	var errs []error
	for _, name := range []string{chaincodeProc(mspID), vouchersProc(mspID), peerProc(mspID), caProc(mspID)} {
		if _, err := os.Stat(n.pidFile(name)); err != nil {
			continue
		}
		if err := n.stopOne(name, grace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("localnet: stop %s: %v", mspID, errs)
	}
	return os.RemoveAll(filepath.Join(n.C.Dir, "peer-"+mspID+".env"))
}
