//go:build !linux

package hostmodel

import "net/netip"

// LocalPrefixes needs Linux's rtnetlink.
func LocalPrefixes() ([]netip.Prefix, error) {
	return nil, notSupported("reading local addresses")
}

// SourceFor needs Linux.
func SourceFor(peer netip.Addr, dev int) (netip.Addr, error) {
	return netip.Addr{}, notSupported("route lookup")
}
