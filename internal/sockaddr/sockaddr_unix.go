//go:build unix

package sockaddr

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// From is the sockaddr of ap: AF_INET for an IPv4 address, AF_INET6 for
// the rest (an IPv4-mapped address stays AF_INET6). The zone is dropped.
func From(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// AddrPort is the address and port of an AF_INET or AF_INET6 sockaddr, as
// the kernel gave it (an IPv4-mapped address is not unmapped); the zero
// AddrPort for any other family.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}
