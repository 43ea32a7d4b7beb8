package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// Principal is an MSP role such as TaniMSP.peer.
type Principal struct {
	MSPID string
	Role  string // member, admin, client, peer or orderer
}

// Signer is what a policy is evaluated against: the MSP and role of a
// verified signature.
type Signer struct {
	MSPID string
	Role  string
}

// Policy is a parsed signature policy: either a principal or n-out-of rules.
type Policy struct {
	principal *Principal
	n         int
	rules     []*Policy
	src       string
}

// String returns the expression the policy was parsed from.
func (p *Policy) String() string { return p.src }

// Parse parses a signature-policy expression.
func Parse(expr string) (*Policy, error) {
	ps := &parser{s: expr}
	p, err := ps.rule()
	if err != nil {
		return nil, fmt.Errorf("parse policy %q: %w", expr, err)
	}
	ps.skip()
	if ps.i != len(ps.s) {
		return nil, fmt.Errorf("parse policy %q: unexpected %q at offset %d", expr, ps.s[ps.i:], ps.i)
	}
	p.src = expr
	return p, nil
}

type parser struct {
	s string
	i int
}

func (ps *parser) skip() {
	for ps.i < len(ps.s) && unicode.IsSpace(rune(ps.s[ps.i])) {
		ps.i++
	}
}

func (ps *parser) expect(c byte) error {
	ps.skip()
	if ps.i >= len(ps.s) || ps.s[ps.i] != c {
		return fmt.Errorf("expected %q at offset %d", c, ps.i)
	}
	ps.i++
	return nil
}

func (ps *parser) rule() (*Policy, error) {
	ps.skip()
	if ps.i >= len(ps.s) {
		return nil, errors.New("unexpected end of expression")
	}
	if c := ps.s[ps.i]; c == '\'' || c == '"' {
		return ps.principal(c)
	}
	start := ps.i
	for ps.i < len(ps.s) && (unicode.IsLetter(rune(ps.s[ps.i]))) {
		ps.i++
	}
	op := strings.ToLower(ps.s[start:ps.i])
	if err := ps.expect('('); err != nil {
		return nil, err
	}
	var n int
	if op == "outof" {
		ps.skip()
		d := ps.i
		for ps.i < len(ps.s) && ps.s[ps.i] >= '0' && ps.s[ps.i] <= '9' {
			ps.i++
		}
		v, err := strconv.Atoi(ps.s[d:ps.i])
		if err != nil {
			return nil, fmt.Errorf("OutOf count at offset %d: %w", d, err)
		}
		n = v
		if err := ps.expect(','); err != nil {
			return nil, err
		}
	} else if op != "and" && op != "or" {
		return nil, fmt.Errorf("unknown operator %q at offset %d", ps.s[start:ps.i], start)
	}
	var rules []*Policy
	for {
		r, err := ps.rule()
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
		ps.skip()
		if ps.i < len(ps.s) && ps.s[ps.i] == ',' {
			ps.i++
			continue
		}
		if err := ps.expect(')'); err != nil {
			return nil, err
		}
		break
	}
	switch op {
	case "and":
		n = len(rules)
	case "or":
		n = 1
	}
	if n < 1 || n > len(rules) {
		return nil, fmt.Errorf("OutOf(%d) over %d rules", n, len(rules))
	}
	return &Policy{n: n, rules: rules}, nil
}

func (ps *parser) principal(q byte) (*Policy, error) {
	ps.i++
	end := strings.IndexByte(ps.s[ps.i:], q)
	if end < 0 {
		return nil, errors.New("unterminated principal")
	}
	lit := ps.s[ps.i : ps.i+end]
	ps.i += end + 1
	dot := strings.LastIndexByte(lit, '.')
	if dot <= 0 {
		return nil, fmt.Errorf("principal %q is not MSPID.role", lit)
	}
	pr := &Principal{MSPID: lit[:dot], Role: lit[dot+1:]}
	switch pr.Role {
	case "member", "admin", "client", "peer", "orderer":
	default:
		return nil, fmt.Errorf("principal %q has unknown role %q", lit, pr.Role)
	}
	return &Policy{principal: pr}, nil
}

// MSPIDs lists the MSP IDs the policy names, in first-seen order.
func (p *Policy) MSPIDs() []string {
	var out []string
	seen := map[string]bool{}
	var walk func(*Policy)
	walk = func(q *Policy) {
		if q.principal != nil {
			if !seen[q.principal.MSPID] {
				seen[q.principal.MSPID] = true
				out = append(out, q.principal.MSPID)
			}
			return
		}
		for _, r := range q.rules {
			walk(r)
		}
	}
	walk(p)
	return out
}

// Satisfied reports whether signers satisfy the policy. Each signer may be
// used for one principal only; evaluation is greedy in rule order, as in
// Fabric's cauthdsl, so callers should pass signers in endorsement order.
func (p *Policy) Satisfied(signers []Signer) bool {
	used := make([]bool, len(signers))
	return p.eval(signers, used)
}

func (p *Policy) eval(signers []Signer, used []bool) bool {
	if pr := p.principal; pr != nil {
		for i, s := range signers {
			if used[i] || s.MSPID != pr.MSPID {
				continue
			}
			if pr.Role == "member" || pr.Role == s.Role {
				used[i] = true
				return true
			}
		}
		return false
	}
	got := 0
	for _, r := range p.rules {
		trial := append([]bool(nil), used...)
		if r.eval(signers, trial) {
			copy(used, trial)
			got++
			if got >= p.n {
				return true
			}
		}
	}
	return false
}

// Layout returns the smallest set of organizations whose peers together
// satisfy the policy, preferring sets that contain prefer. It is how the
// devnet gateway picks endorsers when the client does not name them.
func (p *Policy) Layout(orgs []string, prefer string) ([]string, error) {
	return LayoutAll([]*Policy{p}, orgs, prefer)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// FromEnvelope converts a marshalled common.SignaturePolicyEnvelope — the
// form of a key-level (state-based) endorsement policy — into a Policy.
// Only MSP role principals are supported, as for the chaincode policies
// the devnet parses; anything else is an error (the key's writes then fail
// validation, as a policy a peer cannot evaluate does).
func FromEnvelope(b []byte) (*Policy, error) {
	env := &cb.SignaturePolicyEnvelope{}
	if err := proto.Unmarshal(b, env); err != nil {
		return nil, fmt.Errorf("decode signature policy envelope: %w", err)
	}
	principals := make([]*Principal, len(env.Identities))
	for i, id := range env.Identities {
		if id.PrincipalClassification != mspproto.MSPPrincipal_ROLE {
			return nil, fmt.Errorf("principal %d: classification %s is not supported by the devnet", i, id.PrincipalClassification)
		}
		r := &mspproto.MSPRole{}
		if err := proto.Unmarshal(id.Principal, r); err != nil {
			return nil, fmt.Errorf("principal %d: %w", i, err)
		}
		principals[i] = &Principal{MSPID: r.MspIdentifier, Role: strings.ToLower(r.Role.String())}
	}
	var conv func(*cb.SignaturePolicy) (*Policy, error)
	conv = func(sp *cb.SignaturePolicy) (*Policy, error) {
		switch t := sp.GetType().(type) {
		case *cb.SignaturePolicy_SignedBy:
			if t.SignedBy < 0 || int(t.SignedBy) >= len(principals) {
				return nil, fmt.Errorf("signed_by %d names no identity", t.SignedBy)
			}
			return &Policy{principal: principals[t.SignedBy]}, nil
		case *cb.SignaturePolicy_NOutOf_:
			p := &Policy{n: int(t.NOutOf.GetN())}
			for _, r := range t.NOutOf.GetRules() {
				q, err := conv(r)
				if err != nil {
					return nil, err
				}
				p.rules = append(p.rules, q)
			}
			return p, nil
		}
		return nil, errors.New("empty signature policy rule")
	}
	if env.Rule == nil {
		return nil, errors.New("signature policy envelope has no rule")
	}
	p, err := conv(env.Rule)
	if err != nil {
		return nil, err
	}
	p.src = p.expr()
	return p, nil
}

// expr writes the policy in the signature-policy syntax.
func (p *Policy) expr() string {
	if p.principal != nil {
		return fmt.Sprintf("'%s.%s'", p.principal.MSPID, p.principal.Role)
	}
	parts := make([]string, len(p.rules))
	for i, r := range p.rules {
		parts[i] = r.expr()
	}
	return fmt.Sprintf("OutOf(%d, %s)", p.n, strings.Join(parts, ", "))
}

// LayoutAll is Layout for several policies that must each be satisfied on
// its own (a chaincode's policy and the key-level policies of the keys a
// transaction writes): the smallest set of organizations whose peers
// satisfy every one, preferring sets that contain prefer.
func LayoutAll(ps []*Policy, orgs []string, prefer string) ([]string, error) {
	var best []string
	for mask := 1; mask < 1<<len(orgs); mask++ {
		var set []string
		var signers []Signer
		for i, o := range orgs {
			if mask&(1<<i) != 0 {
				set = append(set, o)
				signers = append(signers, Signer{MSPID: o, Role: "peer"})
			}
		}
		ok := true
		for _, p := range ps {
			if !p.Satisfied(signers) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if best == nil || len(set) < len(best) || (len(set) == len(best) && contains(set, prefer) && !contains(best, prefer)) {
			best = set
		}
	}
	if best == nil {
		var srcs []string
		for _, p := range ps {
			srcs = append(srcs, p.src)
		}
		return nil, fmt.Errorf("no combination of organizations %v satisfies %s", orgs, strings.Join(srcs, " and "))
	}
	return best, nil
}
