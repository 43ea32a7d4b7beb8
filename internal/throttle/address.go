package throttle

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"
)

// Addresses finds the client address attempts are counted under: the
// peer of the connection, or, behind a proxy the operator trusts, the
// client it names in X-Forwarded-For.
type Addresses struct {
	extract echo.IPExtractor
}

// NewAddresses reads trustedProxies: comma-separated CIDRs of reverse
// proxies trusted to name the client (empty: trust none).
func NewAddresses(trustedProxies string) (*Addresses, error) {
	var opts []echo.TrustOption
	for _, f := range strings.Split(trustedProxies, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxies: %w", err)
		}
		opts = append(opts, echo.TrustIPRange(n))
	}
	if len(opts) == 0 {
		return &Addresses{extract: echo.ExtractIPDirect()}, nil
	}
	opts = append([]echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}, opts...)
	return &Addresses{extract: echo.ExtractIPFromXFFHeader(opts...)}, nil
}

// Of is the address r is counted under. An IPv6 client counts by its /64
// (one host usually holds the whole prefix).
func (a *Addresses) Of(r *http.Request) string {
	ip := a.extract(r)
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
