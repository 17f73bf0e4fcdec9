//go:build !linux

package hostmodel

import (
	"net/netip"

	"github.com/tuple-net/tuple/rules"
)

// LocalPrefixes needs Linux's rtnetlink.
func LocalPrefixes() ([]netip.Prefix, error) {
	return nil, notSupported("reading local addresses")
}

// SourceFor needs Linux.
func SourceFor(peer netip.Addr, dev int) (netip.Addr, error) {
	return netip.Addr{}, notSupported("route lookup")
}

// RunningKernel needs Linux: elsewhere the rules model has no kernel to
// follow.
func RunningKernel() (rules.Kernel, error) {
	return rules.Kernel{}, notSupported("reading the kernel version")
}
