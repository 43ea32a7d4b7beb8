package consortium

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/tani-platform/tani/ledger/fabric"
	fabricmsp "github.com/tani-platform/tani/ledger/fabric/msp"
)

// Proposal actions.
const (
	AddMember    = "add-member"
	RemoveMember = "remove-member"
)

// Proposal states: open until more than half of the voters said yes
// (approved) or that can no longer happen (rejected); applied once the
// ordering service has committed the configuration update.
const (
	StatusOpen     = "open"
	StatusApproved = "approved"
	StatusApplied  = "applied"
	StatusRejected = "rejected"
)

// Vote is one member's vote. A yes vote is the member admin's signature
// over the configuration update (votes/<MSPID>.sig); the orderer checks
// those signatures against the channel's MAJORITY Admins policy.
type Vote struct {
	MSPID string    `json:"msp_id"`
	Yes   bool      `json:"yes"`
	At    time.Time `json:"at"`
}

// Proposal is a membership change put to the members' vote, as Managed
// Blockchain's proposals: the channel configuration update that makes the
// change, computed when proposed, and the votes cast on it.
type Proposal struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	// Member is the organization added or removed, with its endpoints.
	Member     Org       `json:"member"`
	ProposedBy string    `json:"proposed_by"`
	CreatedAt  time.Time `json:"created_at"`
	// Voters are the members when the proposal was made; more than half
	// of them must vote yes.
	Voters []string `json:"voters"`
	Votes  []Vote   `json:"votes"`
	Status string   `json:"status"`
	// BaseSequence is the channel configuration's sequence the update was
	// computed from; the orderer refuses the update once the
	// configuration has moved on.
	BaseSequence uint64 `json:"base_sequence"`
	// ConfigBlock is the block holding the applied configuration.
	ConfigBlock uint64 `json:"config_block,omitempty"`
	// Note says why a proposal was rejected.
	Note string `json:"note,omitempty"`
}

// Tally counts the votes: yes, no, and how many yes votes approval needs.
func (p *Proposal) Tally() (yes, no, need int) {
	for _, v := range p.Votes {
		if v.Yes {
			yes++
		} else {
			no++
		}
	}
	return yes, no, Majority(len(p.Voters))
}

func (c *Consortium) proposalDir(id string) string { return filepath.Join(c.Dir, updatesDir, id) }

// Proposals lists every proposal, oldest first.
func (c *Consortium) Proposals() ([]*Proposal, error) {
	entries, err := os.ReadDir(filepath.Join(c.Dir, updatesDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	var out []*Proposal
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p, err := c.Proposal(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Proposal) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Proposal reads one proposal.
func (c *Consortium) Proposal(id string) (*Proposal, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		return nil, fmt.Errorf("consortium: proposal id %q is invalid", id)
	}
	b, err := os.ReadFile(filepath.Join(c.proposalDir(id), "proposal.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("consortium: no proposal %q (see `tani network proposals`)", id)
	}
	if err != nil {
		return nil, fmt.Errorf("consortium: %w", err)
	}
	var p Proposal
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("consortium: decode proposal %s: %w", id, err)
	}
	return &p, nil
}

func (c *Consortium) saveProposal(p *Proposal) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("consortium: encode proposal: %w", err)
	}
	return writeFile(filepath.Join(c.proposalDir(p.ID), "proposal.json"), append(b, '\n'), 0o644)
}

// Candidate is the organization a new member would be: its MSP ID, domain
// and endpoints (peerEndpoint, or the next free block of ports). Its CA
// must issue its identities (crypto/<MSPID>) before it is proposed.
func (c *Consortium) Candidate(mspID, peerEndpoint string) (Org, error) {
	if mspID == "" || mspID == fabricmsp.OrdererMSPID || !validMSPID(mspID) {
		return Org{}, fmt.Errorf("consortium: organization %q is empty, reserved or not a plain name", mspID)
	}
	if _, ok := c.Org(mspID); ok {
		return Org{}, fmt.Errorf("consortium: %s is already a member", mspID)
	}
	props, err := c.Proposals()
	if err != nil {
		return Org{}, err
	}
	for _, p := range props {
		if p.Member.MSPID == mspID && p.Action == AddMember && (p.Status == StatusOpen || p.Status == StatusApproved) {
			return p.Member, nil // the same candidate, still under vote
		}
	}
	o := Org{MSPID: mspID, PeerEndpoint: peerEndpoint}
	if o.PeerEndpoint == "" {
		// After every member and every candidate under vote.
		top := *c
		for _, p := range props {
			if p.Action == AddMember {
				top.Orgs = append(slices.Clone(top.Orgs), p.Member)
			}
		}
		if o.PeerEndpoint, err = top.nextPeerEndpoint(); err != nil {
			return Org{}, err
		}
	}
	if err := c.fillOrg(&o); err != nil {
		return Org{}, err
	}
	return o, nil
}

func validMSPID(id string) bool {
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// ProposeConfig says what membership change to put to the vote.
type ProposeConfig struct {
	Action string
	// Member is the organization to add (from Candidate, its material
	// issued) or remove (only MSPID is read).
	Member Org
	// By is the proposing member.
	By string
}

// Propose computes the channel configuration update that makes the change
// against the current configuration and opens it for the members' votes.
// Nothing is signed yet: every member, the proposer included, votes.
func (c *Consortium) Propose(cfg ProposeConfig) (*Proposal, error) {
	if _, ok := c.Org(cfg.By); !ok {
		return nil, fmt.Errorf("consortium: the proposer %q is not a member", cfg.By)
	}
	props, err := c.Proposals()
	if err != nil {
		return nil, err
	}
	for _, p := range props {
		if p.Member.MSPID == cfg.Member.MSPID && (p.Status == StatusOpen || p.Status == StatusApproved) {
			return nil, fmt.Errorf("consortium: proposal %s about %s is still %s", p.ID, p.Member.MSPID, p.Status)
		}
	}
	config, err := c.Config()
	if err != nil {
		return nil, err
	}
	tx := configtx.New(config)
	member := cfg.Member
	switch cfg.Action {
	case AddMember:
		if _, ok := c.Org(member.MSPID); ok {
			return nil, fmt.Errorf("consortium: %s is already a member", member.MSPID)
		}
		if err := c.fillOrg(&member); err != nil {
			return nil, err
		}
		org, err := c.organization(member)
		if err != nil {
			return nil, fmt.Errorf("%w (the new member's CA issues its identities before it is proposed)", err)
		}
		if err := tx.Application().SetOrganization(org); err != nil {
			return nil, fmt.Errorf("consortium: add %s to the channel configuration: %w", member.MSPID, err)
		}
	case RemoveMember:
		o, ok := c.Org(member.MSPID)
		if !ok {
			return nil, fmt.Errorf("consortium: %s is not a member", member.MSPID)
		}
		if len(c.Orgs) == 1 {
			return nil, fmt.Errorf("consortium: %s is the last member", member.MSPID)
		}
		member = o
		tx.Application().RemoveOrganization(member.MSPID)
	default:
		return nil, fmt.Errorf("consortium: unknown proposal action %q (%s, %s)", cfg.Action, AddMember, RemoveMember)
	}
	update, err := tx.ComputeMarshaledUpdate(c.Channel)
	if err != nil {
		return nil, fmt.Errorf("consortium: compute configuration update: %w", err)
	}
	p := &Proposal{
		ID: fmt.Sprintf("%d-%s-%s", len(props)+1, cfg.Action, member.MSPID), Action: cfg.Action, Member: member,
		ProposedBy: cfg.By, CreatedAt: time.Now().UTC(), Voters: c.MSPIDs(), Status: StatusOpen, BaseSequence: config.Sequence,
	}
	if err := writeFile(filepath.Join(c.proposalDir(p.ID), "update.pb"), update, 0o644); err != nil {
		return nil, err
	}
	return p, c.saveProposal(p)
}

// Vote casts mspID's vote on proposal id, signing the update with the
// member admin's key for a yes. A proposal is approved once more than half
// of its voters said yes, rejected once that can no longer happen. Each
// member votes once.
func (c *Consortium) Vote(id, mspID string, yes bool) (*Proposal, error) {
	p, err := c.Proposal(id)
	if err != nil {
		return nil, err
	}
	if p.Status != StatusOpen {
		return p, fmt.Errorf("consortium: proposal %s is %s, not open for votes", id, p.Status)
	}
	if !slices.Contains(p.Voters, mspID) {
		return p, fmt.Errorf("consortium: %s may not vote on %s (voters: %v)", mspID, id, p.Voters)
	}
	if slices.ContainsFunc(p.Votes, func(v Vote) bool { return v.MSPID == mspID }) {
		return p, fmt.Errorf("consortium: %s has already voted on %s", mspID, id)
	}
	if yes {
		update, err := os.ReadFile(filepath.Join(c.proposalDir(id), "update.pb"))
		if err != nil {
			return p, fmt.Errorf("consortium: %w", err)
		}
		admin, err := c.adminIdentity(mspID)
		if err != nil {
			return p, err
		}
		sig, err := admin.CreateConfigSignature(update)
		if err != nil {
			return p, fmt.Errorf("consortium: %s admin signs %s: %w", mspID, id, err)
		}
		if err := writeProto(filepath.Join(c.proposalDir(id), "votes", mspID+".sig"), sig); err != nil {
			return p, err
		}
	}
	p.Votes = append(p.Votes, Vote{MSPID: mspID, Yes: yes, At: time.Now().UTC()})
	y, n, need := p.Tally()
	switch {
	case y >= need:
		p.Status = StatusApproved
	case n > len(p.Voters)-need:
		p.Status = StatusRejected
		p.Note = fmt.Sprintf("%d of %d voted no: %d yes votes can no longer be reached", n, len(p.Voters), need)
	}
	return p, c.saveProposal(p)
}

// Envelope is the signed configuration update of proposal id carrying
// every yes vote's signature, signed as a transaction by the first yes
// voter's admin, ready for the ordering service.
func (c *Consortium) Envelope(id string) (*cb.Envelope, string, error) {
	p, err := c.Proposal(id)
	if err != nil {
		return nil, "", err
	}
	update, err := os.ReadFile(filepath.Join(c.proposalDir(id), "update.pb"))
	if err != nil {
		return nil, "", fmt.Errorf("consortium: %w", err)
	}
	var sigs []*cb.ConfigSignature
	submitter := ""
	for _, v := range p.Votes {
		if !v.Yes {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.proposalDir(id), "votes", v.MSPID+".sig"))
		if err != nil {
			return nil, "", fmt.Errorf("consortium: %s's vote: %w", v.MSPID, err)
		}
		var s cb.ConfigSignature
		if err := proto.Unmarshal(b, &s); err != nil {
			return nil, "", fmt.Errorf("consortium: decode %s's vote: %w", v.MSPID, err)
		}
		sigs = append(sigs, &s)
		if submitter == "" {
			submitter = v.MSPID
		}
	}
	if submitter == "" {
		return nil, "", fmt.Errorf("consortium: proposal %s has no yes vote", id)
	}
	env, err := configtx.NewEnvelope(update, sigs...)
	if err != nil {
		return nil, "", fmt.Errorf("consortium: update envelope: %w", err)
	}
	admin, err := c.adminIdentity(submitter)
	if err != nil {
		return nil, "", err
	}
	if err := admin.SignEnvelope(env); err != nil {
		return nil, "", fmt.Errorf("consortium: sign update envelope: %w", err)
	}
	return env, submitter, nil
}

// Apply submits an approved proposal's update to the ordering service and
// waits until the channel's configuration holds it; then the consortium's
// members, endorsement policy (when it is the default majority) and
// client settings follow. The anchor chaincode's new definition is
// approved and committed by `tani network up` (localnet).
func (c *Consortium) Apply(ctx context.Context, id string) (*Proposal, error) {
	p, err := c.Proposal(id)
	if err != nil {
		return nil, err
	}
	switch p.Status {
	case StatusApplied:
		return p, nil
	case StatusApproved:
	default:
		y, _, need := p.Tally()
		return p, fmt.Errorf("consortium: proposal %s is %s with %d of the %d yes votes it needs: not submitted", id, p.Status, y, need)
	}
	config, err := c.Config()
	if err != nil {
		return p, err
	}
	update, err := os.ReadFile(filepath.Join(c.proposalDir(id), "update.pb"))
	if err != nil {
		return p, fmt.Errorf("consortium: %w", err)
	}
	env, submitter, err := c.Envelope(id)
	if err != nil {
		return p, err
	}
	var cue cb.ConfigUpdateEnvelope
	if err := unmarshalEnvelopeData(env, &cue); err != nil {
		return p, err
	}
	if err := VerifyAdminsMajority(config, update, cue.Signatures); err != nil {
		return p, err
	}
	live, _, err := c.FetchConfig(ctx, submitter)
	if err != nil {
		return p, err
	}
	if live.Sequence == p.BaseSequence {
		if err := c.Broadcast(ctx, submitter, env); err != nil {
			return p, err
		}
	} else if live.Sequence < p.BaseSequence {
		return p, fmt.Errorf("consortium: the channel's configuration (sequence %d) is older than the proposal's base (%d): wrong network?", live.Sequence, p.BaseSequence)
	}
	// Wait for the configuration block (or find it, when an earlier Apply
	// was interrupted after the orderer took the update).
	var block uint64
	for {
		if live, block, err = c.FetchConfig(ctx, submitter); err != nil {
			return p, err
		}
		if live.Sequence > p.BaseSequence {
			break
		}
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("consortium: waiting for proposal %s's configuration block: %w", id, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := c.adopt(live, p); err != nil {
		return p, err
	}
	p.Status, p.ConfigBlock = StatusApplied, block
	return p, c.saveProposal(p)
}

// adopt makes the applied configuration the consortium's: members,
// endorsement policy, profiles and settings.
func (c *Consortium) adopt(config *cb.Config, p *Proposal) error {
	present := map[string]bool{}
	tx := configtx.New(config)
	app, err := tx.Application().Configuration()
	if err != nil {
		return fmt.Errorf("consortium: application configuration: %w", err)
	}
	for _, o := range app.Organizations {
		present[o.Name] = true
	}
	if present[p.Member.MSPID] != (p.Action == AddMember) {
		return fmt.Errorf("consortium: the channel's configuration moved on, but %s is %s", p.Member.MSPID, map[bool]string{true: "still a member", false: "not a member"}[present[p.Member.MSPID]])
	}
	before := c.MSPIDs()
	switch p.Action {
	case AddMember:
		if _, ok := c.Org(p.Member.MSPID); !ok {
			c.Orgs = append(c.Orgs, p.Member)
		}
	case RemoveMember:
		c.Orgs = slices.DeleteFunc(c.Orgs, func(o Org) bool { return o.MSPID == p.Member.MSPID })
		for _, f := range []string{"connection-" + p.Member.MSPID + ".json", "tani-" + p.Member.MSPID + ".env"} {
			if err := os.Remove(filepath.Join(c.Dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("consortium: %w", err)
			}
		}
	}
	if c.EndorsementPolicy == fabric.MajorityPolicy(before) {
		c.EndorsementPolicy = fabric.MajorityPolicy(c.MSPIDs())
		c.ChaincodeSequence++
	}
	if c.Vouchers.EndorsementPolicy == fabric.MajorityPolicy(before) {
		c.Vouchers.EndorsementPolicy = fabric.MajorityPolicy(c.MSPIDs())
		c.Vouchers.ChaincodeSequence++
	}
	if err := writeProto(c.artifact(configFile), config); err != nil {
		return err
	}
	if err := c.WriteProfiles(); err != nil {
		return err
	}
	return c.save()
}

func unmarshalEnvelopeData(env *cb.Envelope, into proto.Message) error {
	var payload cb.Payload
	if err := proto.Unmarshal(env.Payload, &payload); err != nil {
		return fmt.Errorf("consortium: decode payload: %w", err)
	}
	if err := proto.Unmarshal(payload.Data, into); err != nil {
		return fmt.Errorf("consortium: decode payload data: %w", err)
	}
	return nil
}

// HasMaterial reports whether mspID's CA and admin identity are in the
// consortium directory.
func (c *Consortium) HasMaterial(mspID string) bool {
	cert, key := c.AdminPaths(mspID)
	for _, f := range []string{c.CACertPath(mspID), c.TLSCAPath(mspID), cert, key} {
		if _, err := os.Stat(f); err != nil {
			return false
		}
	}
	return true
}
