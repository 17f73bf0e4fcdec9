// Package sockaddr converts socket addresses to and from netip.AddrPort:
// the unix.Sockaddr the raw socket calls take and return, for the code
// that works on descriptors (broker, lab's helper, the kernel tests), and
// the net.Addr of a connection made with net.
package sockaddr

import (
	"net"
	"net/netip"
)

// OfNet is the address and port of a TCP or UDP net.Addr, an IPv4-mapped
// address unmapped (what a dual-stack socket reports for an IPv4 peer); the
// zero AddrPort for a nil or any other address.
func OfNet(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		if a == nil {
			return ap
		}
		ap = a.AddrPort()
	case *net.UDPAddr:
		if a == nil {
			return ap
		}
		ap = a.AddrPort()
	default:
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
