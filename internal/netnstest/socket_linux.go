package netnstest

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockopt"
)

// Socket opens a socket of proto in the calling thread's namespace (call
// it inside Do), sets o on it, binds it to addr and, with listen, listens.
// It returns the descriptor, closed when t ends. It is how tests make the
// sockets whose options a reader of the kernel must report. It returns
// an error rather than failing t: Do runs on a goroutine of its own.
func Socket(t testing.TB, proto inet.Proto, addr netip.AddrPort, o sockopt.Options, listen bool) (int, error) {
	family, typ := unix.AF_INET6, unix.SOCK_STREAM
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	if addr.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	}
	if proto == inet.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket for %s %s: %w", proto, addr, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := o.Apply(uintptr(fd), family == unix.AF_INET6); err != nil {
		return -1, fmt.Errorf("%s %s: %w", proto, addr, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, fmt.Errorf("bind %s %s: %w", proto, addr, err)
	}
	if listen {
		if err := unix.Listen(fd, 8); err != nil {
			return -1, fmt.Errorf("listen %s %s: %w", proto, addr, err)
		}
	}
	return fd, nil
}
