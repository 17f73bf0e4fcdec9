//go:build !linux

package hostmodel

import (
	"net/netip"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// localAddrs needs Linux's rtnetlink.
func localAddrs() ([]netip.Prefix, []rules.ScopedAddr, error) {
	return nil, nil, inet.Unsupported("reading local addresses")
}

// tcpSourceFor needs Linux.
func tcpSourceFor(peer, src netip.AddrPort, as routeSocket) (netip.Addr, error) {
	return netip.Addr{}, inet.Unsupported("route lookup")
}

// udpSourceFor needs Linux.
func udpSourceFor(peer, src netip.AddrPort, as routeSocket) (netip.Addr, error) {
	return netip.Addr{}, inet.Unsupported("route lookup")
}

// sportSelectors needs Linux's rtnetlink.
func sportSelectors(v4 bool, proto uint8, dport uint16) ([]portSelector, error) {
	return nil, inet.Unsupported("reading policy routing rules")
}

// RunningKernel needs Linux: elsewhere the rules model has no kernel to
// follow.
func RunningKernel() (rules.Kernel, error) {
	return rules.Kernel{}, inet.Unsupported("reading the kernel version")
}

// ProbeUDPWildcardFix needs Linux.
func ProbeUDPWildcardFix() rules.Presence { return rules.Unprobed }
