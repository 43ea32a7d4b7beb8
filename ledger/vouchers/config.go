package vouchers

import (
	"flag"
	"fmt"
	"regexp"
	"strings"
)

// Config is how a Tani process uses the vouchers chaincode; where the
// network is (endpoint, TLS, channel, timeouts) comes from the Fabric
// client's own configuration (-fabric.*).
type Config struct {
	// Chaincode is the vouchers chaincode's name on the channel.
	Chaincode string
	// Identities are the organizations' client identities the process
	// acts as, "MSPID=MSPDIR" separated by commas (MSPDIR holds
	// signcerts/ and keystore/, as Fabric CA enrollment writes it). Empty:
	// the -fabric.* identity only, which can read and project but issue,
	// redeem or settle only for its own organization's role.
	Identities string
}

// RegisterFlags registers the flags, each prefixed with prefix (for
// example "vouchers.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&c.Chaincode, prefix+"chaincode", DefaultChaincode, "name of the vouchers chaincode on the channel")
	fs.StringVar(&c.Identities, prefix+"identities", "", "identities to act as for vouchers: MSPID=MSPDIR,... (MSPDIR holds signcerts/ and keystore/); empty: the -fabric.* identity")
}

var mspIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseIdentities reads Config.Identities.
func (c Config) ParseIdentities() ([]Identity, error) {
	var out []Identity
	seen := map[string]bool{}
	for _, item := range strings.Split(c.Identities, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		msp, dir, ok := strings.Cut(item, "=")
		if !ok || !mspIDRE.MatchString(msp) || dir == "" {
			return nil, fmt.Errorf("vouchers: identity %q is not MSPID=MSPDIR", item)
		}
		if seen[msp] {
			return nil, fmt.Errorf("vouchers: two identities for %s", msp)
		}
		seen[msp] = true
		out = append(out, MSPDirIdentity(msp, dir))
	}
	return out, nil
}
