package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tani-platform/tani/ledger/consortium"
	"github.com/tani-platform/tani/ledger/devnet"
)

// runNetwork is `tani network init|add-org|members`: the consortium
// management a managed blockchain service would offer (ledger/consortium).
func runNetwork(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "Usage: tani network init|add-org|members [flags]\n\n  init      create organizations, CAs, identities, the channel genesis block, the endorsement policy and connection profiles\n  add-org   add an organization by a channel configuration update signed by a majority of the member admins\n  members   list the channel's organizations")
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("network "+sub, flag.ContinueOnError)
	dir := fs.String("dir", "fabric-network", "consortium directory (also usable as `tani devnet -dir`)")
	switch sub {
	case "init":
		orgs := fs.String("orgs", strings.Join(devnet.DefaultOrgs, ","), "comma-separated MSP IDs of the member organizations")
		channel := fs.String("channel", devnet.DefaultChannel, "channel name")
		cc := fs.String("chaincode", "anchor", "anchor chaincode name")
		policy := fs.String("policy", "", "anchor chaincode endorsement policy (default: a majority of the organizations' peers)")
		hosts := fs.String("hosts", "", "comma-separated extra DNS names or IPs for the nodes' TLS certificates")
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		c, err := consortium.Init(consortium.InitConfig{Dir: *dir, Channel: *channel, Chaincode: *cc, Orgs: splitList(*orgs), Policy: *policy, Hosts: splitList(*hosts)})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "consortium created in %s\n  channel:            %s (genesis block channel-artifacts/%s.block)\n  endorsement policy: %s\n", c.Dir, c.Channel, c.Channel, c.EndorsementPolicy)
		for _, o := range c.Orgs {
			fmt.Fprintf(stdout, "  %-16s peer %s, profile connection-%s.json, settings tani-%s.env\n", o.MSPID, o.PeerEndpoint, o.MSPID, o.MSPID)
		}
		return nil
	case "add-org":
		org := fs.String("org", "", "MSP ID of the organization to add")
		signers := fs.String("signers", "", "comma-separated member MSP IDs whose admins sign the update (a majority is needed)")
		hosts := fs.String("hosts", "", "comma-separated extra DNS names or IPs for the new peer's TLS certificate")
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		c, err := consortium.Load(*dir)
		if err != nil {
			return err
		}
		u, err := c.AddOrg(consortium.AddOrgConfig{MSPID: *org, Signers: splitList(*signers), Hosts: splitList(*hosts)})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s added, signed by the admins of %v\n  update envelope: %s (submit with `peer channel update -c %s -f ...`)\n", u.Org.MSPID, u.Signers, u.EnvelopePath, c.Channel)
		fmt.Fprintf(stdout, "  the anchor chaincode's endorsement policy is still %s; approve a new chaincode definition to change it\n", c.EndorsementPolicy)
		return nil
	case "members":
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		c, err := consortium.Load(*dir)
		if err != nil {
			return err
		}
		ms, err := c.Members()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "channel %s: %d organizations, configuration changes need %d admin signatures\n", c.Channel, len(ms), consortium.Majority(len(ms)))
		for _, m := range ms {
			fmt.Fprintf(stdout, "  %-16s CA %q, anchor peers %v, admins %s\n", m.MSPID, m.RootCA, m.AnchorPeers, m.AdminsPolicy)
		}
		return nil
	}
	fmt.Fprintf(stderr, "tani network: unknown subcommand %q (init, add-org, members)\n", sub)
	return errUsage
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
