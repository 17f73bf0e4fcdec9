//go:build !linux

package hostmodel

import "net/netip"

// LocalPrefixes needs Linux's rtnetlink.
func LocalPrefixes() ([]netip.Prefix, error) {
	return nil, notSupported("reading local addresses")
}
