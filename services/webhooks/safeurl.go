package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// MaxURL is the longest endpoint URL accepted.
const MaxURL = 2048

// blocked are the address ranges Tani never delivers to outside
// development: what would let an organization reach Tani's own network
// (SSRF) — loopback, private, carrier-grade NAT, link-local (cloud
// metadata at 169.254.169.254), multicast, unspecified, reserved and
// benchmarking ranges, and the IPv6 tunnels that can carry any IPv4
// address (Teredo, 6to4) — in both families.
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// allowedIP reports whether Tani may connect to ip outside development.
// IPv4 addresses written as IPv6 (::ffff:a.b.c.d, and the NAT64 prefix
// 64:ff9b::/96) are judged by the IPv4 address they carry.
func allowedIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() && netip.MustParsePrefix("64:ff9b::/96").Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// errBlocked is the answer for an address Tani will not reach.
var errBlocked = errors.New("resolves to a loopback, private, link-local, multicast or reserved address")

// resolver looks names up; tests may replace it.
type resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// guard decides which URLs and addresses may be reached.
type guard struct {
	development bool
	resolver    resolver
}

// checkURL validates an endpoint URL as the organization gave it and
// returns it normalized, or the field message saying what is wrong. It
// resolves the host: a name that does not resolve, or resolves to any
// blocked address, is refused (the same check runs again at every
// connection, so a name that changes later is caught there).
func (g guard) checkURL(ctx context.Context, raw string) (string, string) {
	if raw == "" {
		return "", "is required"
	}
	if len(raw) > MaxURL {
		return "", fmt.Sprintf("must be at most %d characters", MaxURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "is not a URL"
	}
	switch {
	case u.Scheme != "https" && !(g.development && u.Scheme == "http"):
		if g.development {
			return "", "must be an https or http URL"
		}
		return "", "must be an https URL"
	case u.Opaque != "" || u.Host == "":
		return "", "must be an absolute URL with a host"
	case u.User != nil:
		return "", "must not carry credentials (authenticate the request by its signature)"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", "must not have a fragment"
	}
	host := u.Hostname()
	if port := u.Port(); port != "" {
		if p, err := netip.ParseAddrPort("127.0.0.1:" + port); err != nil || p.Port() == 0 {
			return "", "has an invalid port"
		}
	}
	if g.development {
		return u.String(), ""
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if !allowedIP(ip) {
			return "", "must not point at a loopback, private, link-local, multicast or reserved address"
		}
		return u.String(), ""
	}
	if _, err := g.lookup(ctx, host); err != nil {
		if errors.Is(err, errBlocked) {
			return "", "host " + errBlocked.Error()
		}
		return "", "host does not resolve"
	}
	return u.String(), ""
}

// lookup resolves host and returns its addresses, refusing the host if any
// of them is blocked (a name with one public and one private address is
// not a public name).
func (g guard) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	for _, ip := range ips {
		if !allowedIP(ip) {
			return nil, fmt.Errorf("%s %w", host, errBlocked)
		}
	}
	return ips, nil
}

// dialContext is the delivery client's dialer. Outside development it
// resolves the host itself, refuses it if any address is blocked, and
// dials the vetted address (not the name, which a rebinding DNS server
// could answer differently a moment later); the dialer's Control checks
// the address of the socket once more, whatever reached it.
func (g guard) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.development {
		return d.DialContext
	}
	safe := *d
	safe.Control = func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !allowedIP(ap.Addr()) {
			return fmt.Errorf("connect to %s: %w", address, errBlocked)
		}
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			if !allowedIP(ip) {
				return nil, fmt.Errorf("connect to %s: %w", host, errBlocked)
			}
			ips = []netip.Addr{ip}
		} else if ips, err = g.lookup(ctx, host); err != nil {
			return nil, err
		}
		var errs []error
		for _, ip := range ips {
			conn, err := safe.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
}
