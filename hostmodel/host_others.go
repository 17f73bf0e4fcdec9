//go:build !linux

package hostmodel

import (
	"net/netip"

	"github.com/tuple-net/tuple/inet"
)

// LocalPrefixes needs Linux's rtnetlink.
func LocalPrefixes() ([]netip.Prefix, error) {
	return nil, inet.Unsupported("reading local addresses")
}

// SourceFor needs Linux.
func SourceFor(peer netip.Addr, dev int) (netip.Addr, error) {
	return netip.Addr{}, inet.Unsupported("route lookup")
}
