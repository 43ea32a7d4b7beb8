package consortium

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// PeerName is the name of an organization's peer (its TLS certificate
// carries it; connection profiles key the peer by it).
func (o Org) PeerName() string { return "peer0." + o.Domain }

// CAName is the name of the organization's Fabric CA (its --ca.name).
func (o Org) CAName() string { return "ca-" + strings.ToLower(strings.TrimSuffix(o.MSPID, "MSP")) }

// WriteProfiles writes, for each organization, a Fabric common connection
// profile (connection-<MSPID>.json: its peer, the orderers, its CA) and the
// Tani client settings as environment variables (tani-<MSPID>.env) that
// `tani up` reads. Paths in them are absolute, so they work from anywhere.
func (c *Consortium) WriteProfiles() error {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	ordererCA, err := os.ReadFile(c.TLSCAPath(c.Orderer.MSPID))
	if err != nil {
		return fmt.Errorf("consortium: %w", err)
	}
	orderers := map[string]any{}
	var ordererNames []string
	for _, n := range c.Orderer.Nodes {
		name := n.Name + "." + c.Orderer.Domain
		ordererNames = append(ordererNames, name)
		orderers[name] = map[string]any{
			"url":         "grpcs://" + n.Endpoint,
			"tlsCACerts":  map[string]any{"pem": string(ordererCA)},
			"grpcOptions": map[string]any{"ssl-target-name-override": name, "hostnameOverride": name},
		}
	}
	for _, o := range c.Orgs {
		tlsca, err := os.ReadFile(c.TLSCAPath(o.MSPID))
		if err != nil {
			return fmt.Errorf("consortium: %w", err)
		}
		peer := o.PeerName()
		profile := map[string]any{
			"name":    c.Channel + "-" + o.MSPID,
			"version": "1.0.0",
			"client": map[string]any{
				"organization": o.MSPID,
				"connection":   map[string]any{"timeout": map[string]any{"peer": map[string]any{"endorser": "300"}}},
			},
			"channels": map[string]any{c.Channel: map[string]any{
				"orderers": ordererNames,
				"peers": map[string]any{peer: map[string]any{
					"endorsingPeer": true, "chaincodeQuery": true, "ledgerQuery": true, "eventSource": true,
				}},
			}},
			"organizations": map[string]any{o.MSPID: map[string]any{
				"mspid": o.MSPID, "peers": []string{peer}, "certificateAuthorities": []string{o.CAName()},
			}},
			"orderers": orderers,
			"peers": map[string]any{peer: map[string]any{
				"url":         "grpcs://" + o.PeerEndpoint,
				"tlsCACerts":  map[string]any{"pem": string(tlsca)},
				"grpcOptions": map[string]any{"ssl-target-name-override": peer, "hostnameOverride": peer},
			}},
			"certificateAuthorities": map[string]any{o.CAName(): map[string]any{
				"url":         "https://" + o.CAEndpoint,
				"caName":      o.CAName(),
				"tlsCACerts":  map[string]any{"pem": []string{string(tlsca)}},
				"httpOptions": map[string]any{"verify": true},
			}},
		}
		b, err := json.MarshalIndent(profile, "", "  ")
		if err != nil {
			return fmt.Errorf("consortium: encode profile: %w", err)
		}
		if err := writeFile(filepath.Join(c.Dir, "connection-"+o.MSPID+".json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
		// The anchoring identity is the admin: registering the journal's
		// key needs one. Switch to User1 once the log is registered.
		cert, key := c.AdminPaths(o.MSPID)
		env := fmt.Sprintf(`# Tani client settings for %[1]s on channel %[2]s (source before tani up).
TANI_FABRIC_ENDPOINT=%[3]s
TANI_FABRIC_SERVER_NAME=%[4]s
TANI_FABRIC_TLS_CA_CERT=%[5]s
TANI_FABRIC_MSP_ID=%[1]s
TANI_FABRIC_CERT=%[6]s
TANI_FABRIC_KEY_FILE=%[7]s
TANI_FABRIC_CHANNEL=%[2]s
TANI_FABRIC_CHAINCODE=%[8]s
`, o.MSPID, c.Channel, o.PeerEndpoint, peer, abs(c.TLSCAPath(o.MSPID)), abs(cert), abs(key), c.Chaincode)
		// Vouchers: the chaincode, and the identities Tani acts as. A local
		// consortium directory holds every member's client identity, so
		// the settings list all of them; a real deployment lists only
		// those the organizations issued to Tani.
		var ids []string
		for _, m := range c.Orgs {
			dir := c.ClientMSPDir(m.MSPID)
			if _, err := os.Stat(filepath.Join(dir, "signcerts")); err == nil {
				ids = append(ids, m.MSPID+"="+abs(dir))
			}
		}
		env += fmt.Sprintf("TANI_VOUCHERS_CHAINCODE=%s\nTANI_VOUCHERS_IDENTITIES=%s\n", c.Vouchers.Chaincode, strings.Join(ids, ","))
		if err := writeFile(filepath.Join(c.Dir, "tani-"+o.MSPID+".env"), []byte(env), 0o644); err != nil {
			return err
		}
	}
	return nil
}
