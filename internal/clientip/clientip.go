// Package clientip finds the client address of an HTTP request, behind
// trusted proxies (load balancers that name the client in X-Forwarded-For),
// and limits how often one client address may do something.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// FromRequest returns the client's address: the TCP peer, or, when the peer
// is a trusted proxy, the right-most address in X-Forwarded-For that is not
// one (reported with port 0: the header carries none). It returns the zero
// AddrPort when RemoteAddr is not an address.
func FromRequest(r *http.Request, trusted []netip.Prefix) netip.AddrPort {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if !isTrusted(peer.Addr(), trusted) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop: trust nothing to its left
		}
		if ip = ip.Unmap(); !isTrusted(ip, trusted) {
			return netip.AddrPortFrom(ip, 0)
		}
	}
	return peer
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses CIDR prefixes or bare addresses (e.g. "127.0.0.1",
// "10.0.0.0/8"), as given to -trusted-proxies.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if !strings.Contains(s, "/") {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
			}
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
