package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tani-platform/tani/ledger/consortium"
	"github.com/tani-platform/tani/ledger/devnet"
	"github.com/tani-platform/tani/ledger/localnet"
)

const networkUsage = `Usage: tani network <command> [flags]

Create and run a Fabric consortium, and change its membership by vote:

  init       create organizations, CAs, identities, the channel genesis block (anchor peers
             included), the endorsement policy, connection profiles and settings
  members    list the channel's organizations
  up         run the network on this machine (orderers, a CA, peer and chaincode server per
             organization), create and join the channel, commit the anchor chaincode; idempotent
  down       stop the processes up started
  status     list the network's processes and their memory
  propose    propose add-member or remove-member (a new member's CA is started and issues its identities)
  vote       vote on a proposal as a member's admin; applied once more than half said yes
  apply      submit an approved proposal to the ordering service (vote does this itself)
  proposals  list proposals and their votes`

// runNetwork is `tani network ...`: the consortium management a managed
// blockchain service offers (ledger/consortium), and the local network
// that runs it (ledger/localnet).
func runNetwork(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, networkUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("network "+sub, flag.ContinueOnError)
	dir := fs.String("dir", "fabric-network", "consortium directory (also usable as `tani devnet -dir`)")
	var bins binFlags
	switch sub {
	case "init":
		orgs := fs.String("orgs", strings.Join(devnet.DefaultOrgs, ","), "comma-separated MSP IDs of the member organizations")
		channel := fs.String("channel", devnet.DefaultChannel, "channel name")
		cc := fs.String("chaincode", "anchor", "anchor chaincode name")
		policy := fs.String("policy", "", "anchor chaincode endorsement policy (default: a majority of the organizations' peers)")
		hosts := fs.String("hosts", "", "comma-separated extra DNS names or IPs for the nodes' TLS certificates")
		host := fs.String("host", consortium.DefaultHost, "host every node listens on and is reached at")
		basePort := fs.Int("base-port", consortium.DefaultBasePort, "first port: the orderers, then each organization, take ten ports each")
		freePorts := fs.Bool("free-ports", false, "pick a base port whose ports are free now (overrides -base-port)")
		orderers := fs.Int("orderers", 1, "number of etcdraft orderers: 1 or 3")
		batchTimeout := fs.Duration("batch-timeout", 2*time.Second, "the ordering service's batch timeout")
		networkFile := fs.String("config", "", "network file (JSON) placing each orderer and organization; replaces -orgs, -host and -base-port")
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		cfg := consortium.InitConfig{Dir: *dir, Channel: *channel, Chaincode: *cc, Policy: *policy, Hosts: splitList(*hosts),
			Host: *host, BasePort: *basePort, Orderers: *orderers, BatchTimeout: *batchTimeout}
		if *networkFile != "" {
			l, err := consortium.ReadLayout(*networkFile)
			if err != nil {
				return err
			}
			cfg.Layout = l
			if len(l.Orgs) == 0 {
				cfg.Orgs = splitList(*orgs)
			}
		} else {
			cfg.Orgs = splitList(*orgs)
			if *freePorts {
				base, err := consortium.FreeBasePort(*host, *orderers+len(cfg.Orgs)+3)
				if err != nil {
					return err
				}
				cfg.BasePort = base
			}
		}
		c, err := consortium.Init(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "consortium created in %s\n  channel:            %s (genesis block channel-artifacts/%s.block)\n  endorsement policy: %s\n", c.Dir, c.Channel, c.Channel, c.EndorsementPolicy)
		for _, n := range c.Orderer.Nodes {
			fmt.Fprintf(stdout, "  %-16s %s, admin %s\n", n.Name, n.Endpoint, n.AdminEndpoint)
		}
		for _, o := range c.Orgs {
			fmt.Fprintf(stdout, "  %-16s peer %s, CA %s, profile connection-%s.json, settings tani-%s.env\n", o.MSPID, o.PeerEndpoint, o.CAEndpoint, o.MSPID, o.MSPID)
		}
		fmt.Fprintf(stdout, "run it with `tani network up -dir %s`\n", c.Dir)
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
		fmt.Fprintf(stdout, "channel %s: %d organizations, configuration changes need %d admin signatures; anchor chaincode policy %s (sequence %d)\n",
			c.Channel, len(ms), consortium.Majority(len(ms)), c.EndorsementPolicy, c.ChaincodeSequence)
		for _, m := range ms {
			fmt.Fprintf(stdout, "  %-16s CA %q, anchor peers %v, admins %s\n", m.MSPID, m.RootCA, m.AnchorPeers, m.AdminsPolicy)
		}
		return nil
	case "up":
		bins.register(fs)
		timeout := fs.Duration("timeout", 5*time.Minute, "give up when the network is not up by then")
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		n, err := openNetwork(*dir, bins, env, stderr)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		began := time.Now()
		if err := n.Up(ctx); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "network up in %s: channel %s, chaincode %s, policy %s\n", time.Since(began).Round(100*time.Millisecond), n.C.Channel, n.C.Chaincode, n.C.EndorsementPolicy)
		for _, o := range n.C.Orgs {
			fmt.Fprintf(stdout, "  %-16s peer %s  (tani up: source %s; peer CLI: source %s)\n", o.MSPID, o.PeerEndpoint,
				filepath.Join(n.C.Dir, "tani-"+o.MSPID+".env"), filepath.Join(n.C.Dir, "peer-"+o.MSPID+".env"))
		}
		fmt.Fprintf(stdout, "logs and data under %s; stop with `tani network down -dir %s`\n", n.RunDir(), n.C.Dir)
		return nil
	case "down":
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		c, err := consortium.Load(*dir)
		if err != nil {
			return err
		}
		if err := localnet.Open(c, localnet.Config{}).Down(15 * time.Second); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "network in %s stopped (data kept; `tani network up` starts it again)\n", c.Dir)
		return nil
	case "status":
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		c, err := consortium.Load(*dir)
		if err != nil {
			return err
		}
		ps, err := localnet.Open(c, localnet.Config{}).Status()
		if err != nil {
			return err
		}
		var total int64
		for _, p := range ps {
			state := "stopped"
			if p.Running {
				state = fmt.Sprintf("pid %d, %d MiB", p.PID, p.RSS>>20)
				total += p.RSS
			}
			fmt.Fprintf(stdout, "  %-26s %s\n", p.Name, state)
		}
		fmt.Fprintf(stdout, "%d processes, %d MiB resident\n", len(ps), total>>20)
		return nil
	case "propose":
		return runPropose(ctx, fs, dir, args, stdout, stderr, env)
	case "vote", "apply":
		id := fs.String("proposal", "", "proposal ID (see `tani network proposals`)")
		member := fs.String("member", "", "MSP ID of the voting member (its admin signs)")
		no := fs.Bool("no", false, "vote no")
		bins.register(fs)
		if sub == "apply" {
			*member = "-"
		}
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		if *id == "" || *member == "" {
			fmt.Fprintf(stderr, "tani network %s: -proposal%s is required\n", sub, map[bool]string{true: " and -member are", false: ""}[sub == "vote"])
			return errUsage
		}
		c, err := consortium.Load(*dir)
		if err != nil {
			return err
		}
		if sub == "vote" {
			p, err := c.Vote(*id, *member, !*no)
			if err != nil {
				return err
			}
			y, nv, need := p.Tally()
			fmt.Fprintf(stdout, "%s voted %s on %s: %d yes, %d no of %d voters (%d yes needed): %s\n", *member, map[bool]string{true: "no", false: "yes"}[*no], p.ID, y, nv, len(p.Voters), need, p.Status)
			if p.Status != consortium.StatusApproved {
				return nil
			}
		}
		return applyProposal(ctx, c, *id, bins, stdout, stderr, env)
	case "proposals":
		if err := parse(fs, args, stderr, env); err != nil {
			return err
		}
		c, err := consortium.Load(*dir)
		if err != nil {
			return err
		}
		ps, err := c.Proposals()
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			fmt.Fprintln(stdout, "no proposals")
		}
		for _, p := range ps {
			y, nv, need := p.Tally()
			fmt.Fprintf(stdout, "  %-28s %-8s by %s: %d yes, %d no of %d (%d needed)", p.ID, p.Status, p.ProposedBy, y, nv, len(p.Voters), need)
			if p.ConfigBlock > 0 {
				fmt.Fprintf(stdout, ", configuration block %d", p.ConfigBlock)
			}
			if p.Note != "" {
				fmt.Fprintf(stdout, " (%s)", p.Note)
			}
			fmt.Fprintln(stdout)
		}
		return nil
	}
	fmt.Fprintf(stderr, "tani network: unknown command %q\n\n%s\n", sub, networkUsage)
	return errUsage
}

func runPropose(ctx context.Context, fs *flag.FlagSet, dir *string, args []string, stdout, stderr io.Writer, env Env) error {
	if len(args) == 0 || (args[0] != consortium.AddMember && args[0] != consortium.RemoveMember) {
		fmt.Fprintln(stderr, "Usage: tani network propose add-member|remove-member -org MSPID -by MSPID [flags]")
		return errUsage
	}
	action := args[0]
	org := fs.String("org", "", "MSP ID of the organization to add or remove")
	by := fs.String("by", "", "MSP ID of the proposing member")
	peer := fs.String("peer-endpoint", "", "add-member: the new member's peer host:port (default: the next free block of ports)")
	var bins binFlags
	bins.register(fs)
	if err := parse(fs, args[1:], stderr, env); err != nil {
		return err
	}
	if *org == "" || *by == "" {
		fmt.Fprintln(stderr, "tani network propose: -org and -by are required")
		return errUsage
	}
	c, err := consortium.Load(*dir)
	if err != nil {
		return err
	}
	member := consortium.Org{MSPID: *org}
	if action == consortium.AddMember {
		if member, err = c.Candidate(*org, *peer); err != nil {
			return err
		}
		if !c.HasMaterial(member.MSPID) {
			n, err := openNetwork(*dir, bins, env, stderr)
			if err != nil {
				return fmt.Errorf("%s's identities come from its own Fabric CA, which needs the Fabric binaries: %w", member.MSPID, err)
			}
			if err := n.EnrollMember(ctx, member); err != nil {
				return fmt.Errorf("%s's identities come from its own Fabric CA: %w", member.MSPID, err)
			}
			fmt.Fprintf(stdout, "%s's CA runs at %s and issued its admin, client, peer and chaincode server certificates\n", member.MSPID, member.CAEndpoint)
		}
	}
	p, err := c.Propose(consortium.ProposeConfig{Action: action, Member: member, By: *by})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "proposal %s: %s %s, proposed by %s; %d of the %d members %v must vote yes:\n  tani network vote -dir %s -proposal %s -member MSPID [-no]\n",
		p.ID, action, p.Member.MSPID, p.ProposedBy, consortium.Majority(len(p.Voters)), len(p.Voters), p.Voters, c.Dir, p.ID)
	return nil
}

// applyProposal submits an approved proposal and, when this machine runs
// the network, brings the change about: the new member's peer joins and
// the anchor chaincode's definition with the new policy is approved and
// committed, or the removed member's processes stop.
func applyProposal(ctx context.Context, c *consortium.Consortium, id string, bins binFlags, stdout, stderr io.Writer, env Env) error {
	actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p, err := c.Apply(actx, id)
	if err != nil {
		if errors.Is(err, consortium.ErrOrdererUnreachable) {
			return fmt.Errorf("proposal %s is approved but not applied: %w; run `tani network apply -dir %s -proposal %s` once the ordering service runs", id, err, c.Dir, id)
		}
		return err
	}
	fmt.Fprintf(stdout, "proposal %s applied: channel configuration block %d; members now %v; anchor chaincode policy %s (sequence %d)\n",
		p.ID, p.ConfigBlock, c.MSPIDs(), c.EndorsementPolicy, c.ChaincodeSequence)
	n := localnet.Open(c, localnet.Config{})
	if ps, _ := n.Status(); len(ps) == 0 {
		fmt.Fprintf(stdout, "the network does not run here: each member starts or stops its nodes, and a majority approves and commits the chaincode definition (sequence %d)\n", c.ChaincodeSequence)
		return nil
	}
	ln, err := openNetwork(c.Dir, bins, env, stderr)
	if err != nil {
		return err
	}
	if p.Action == consortium.RemoveMember {
		if err := ln.StopMember(p.Member.MSPID, 15*time.Second); err != nil {
			return err
		}
	}
	uctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := ln.Up(uctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "network updated: %v endorse with %s\n", c.MSPIDs(), c.EndorsementPolicy)
	return nil
}

// binFlags locate the programs `tani network up` runs.
type binFlags struct {
	fabricBin, chaincodeBin *string
}

func (b *binFlags) register(fs *flag.FlagSet) {
	b.fabricBin = fs.String("fabric-bin", "", "directory of Fabric's peer, orderer and fabric-ca-server (default: $FABRIC_BIN, else where `peer` is on PATH)")
	b.chaincodeBin = fs.String("chaincode-bin", "", "the tani-chaincode program (default: beside this tani, else on PATH)")
}

// openNetwork loads the consortium and finds the programs: Fabric's
// binaries from -fabric-bin, $FABRIC_BIN or PATH; tani-chaincode beside
// this executable or on PATH.
func openNetwork(dir string, b binFlags, env Env, stderr io.Writer) (*localnet.Network, error) {
	c, err := consortium.Load(dir)
	if err != nil {
		return nil, err
	}
	var fabricBin, ccBin string
	if b.fabricBin != nil {
		fabricBin, ccBin = *b.fabricBin, *b.chaincodeBin
	}
	if fabricBin == "" {
		fabricBin = env("FABRIC_BIN")
	}
	if fabricBin == "" {
		if p, err := exec.LookPath("peer"); err == nil {
			fabricBin = filepath.Dir(p)
		}
	}
	if fabricBin == "" {
		return nil, errors.New("no Fabric binaries: set FABRIC_BIN (or -fabric-bin) to the bin/ directory of a Fabric 3.1 release (hyperledger-fabric-linux-amd64-3.1.x.tar.gz and hyperledger-fabric-ca-linux-amd64-1.5.x.tar.gz from https://github.com/hyperledger/fabric/releases), or put peer on PATH")
	}
	if ccBin == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "tani-chaincode"); fileExists(p) {
				ccBin = p
			}
		}
	}
	if ccBin == "" {
		if p, err := exec.LookPath("tani-chaincode"); err == nil {
			ccBin = p
		}
	}
	if ccBin == "" {
		return nil, errors.New("no tani-chaincode program beside tani or on PATH: build it with `go build -o bin/tani-chaincode ./cmd/tani-chaincode` (or pass -chaincode-bin)")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return localnet.Open(c, localnet.Config{Bin: fabricBin, ChaincodeBin: ccBin, Logger: logger.With("module", "network")}), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
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
