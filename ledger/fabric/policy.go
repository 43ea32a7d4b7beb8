package fabric

import (
	"fmt"
	"strings"
)

// MajorityPolicy returns the endorsement policy OutOf(n/2+1, ...) over the
// peers of orgs, for example 2 of 3: what the anchor chaincode needs so
// that no single organization can anchor alone.
func MajorityPolicy(orgs []string) string {
	var ps []string
	for _, o := range orgs {
		ps = append(ps, fmt.Sprintf("'%s.peer'", o))
	}
	return fmt.Sprintf("OutOf(%d, %s)", len(orgs)/2+1, strings.Join(ps, ", "))
}
