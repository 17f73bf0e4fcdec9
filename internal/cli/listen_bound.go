package cli

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/tuple-net/tuple/sockopt"
)

// boundAddr is where a listening (or bound UDP) socket is, with the
// families a wildcard bind serves.
type boundAddr struct {
	ap   netip.AddrPort
	dual bool // [::] with IPV6_V6ONLY off: IPv4 too
}

// String prints the wildcard by the families it serves: 0.0.0.0:P (IPv4),
// [::]:P (IPv6 only), *:P (one socket for both); other addresses as
// formatAddrPort does.
func (b boundAddr) String() string {
	a := b.ap.Addr()
	if !a.IsValid() || !a.IsUnspecified() {
		return formatAddrPort(b.ap)
	}
	port := "*"
	if b.ap.Port() != 0 {
		port = strconv.Itoa(int(b.ap.Port()))
	}
	switch {
	case b.dual:
		return "*:" + port
	case a.Is4():
		return "0.0.0.0:" + port
	}
	return "[::]:" + port
}

// boundOf is where the socket behind sock (a listener or a packet conn,
// addr its local address) is bound; for [::] it reads IPV6_V6ONLY.
func boundOf(addr net.Addr, sock any) boundAddr {
	b := boundAddr{ap: addrPortOf(addr)}
	if a := b.ap.Addr(); a.Is6() && a.IsUnspecified() {
		b.dual = v6OnlyOff(sock)
	}
	return b
}

// v6OnlyOff reports whether the IPv6 socket behind sock has IPV6_V6ONLY
// off, so that it takes IPv4 too; false when that cannot be read.
func v6OnlyOff(sock any) bool {
	sc, ok := sock.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var v sockopt.Value
	if err := rc.Control(func(fd uintptr) { v = sockopt.Read(fd, true)[sockopt.V6Only] }); err != nil {
		return false
	}
	return v.Known && !v.On
}
