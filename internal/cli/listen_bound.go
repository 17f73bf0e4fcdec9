package cli

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"syscall"

	"github.com/tuple-net/tuple/internal/sockaddr"
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
	b := boundAddr{ap: sockaddr.OfNet(addr)}
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

// wantBound is where the plan's listener is to be bound, as the command
// line says it; false for an ADDR that is a name.
func (p *listenPlan) wantBound() (boundAddr, bool) {
	if !p.local.IsValid() {
		return boundAddr{}, false
	}
	b := boundAddr{ap: unmapAddrPort(p.local)}
	if a := b.ap.Addr(); a.Is6() && a.IsUnspecified() {
		// Go clears IPV6_V6ONLY on a "tcp" [::] listener unless the
		// kernel's default was asked for and is on; "tcp6" sets it.
		b.dual = p.network == p.proto && p.sockopt.V6Only != sockopt.V6OnlyOn
	}
	return b, true
}

// checkTaken checks that the listeners taken over at --handover are where
// the command line asks to listen (any port for PORT 0): a mismatch is
// bad input. It runs before Ready, so the old process goes on serving.
func (p *listenPlan) checkTaken(ctx context.Context, lns []net.Listener) error {
	want, literal := p.wantBound()
	wantText := want.String()
	var addrs []netip.Addr // what a name ADDR resolves to
	if !literal {
		host, port, err := net.SplitHostPort(p.addr)
		if err != nil {
			return err
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return err
		}
		want.ap = netip.AddrPortFrom(netip.Addr{}, uint16(n))
		wantText = net.JoinHostPort(host, port)
		ipNet := map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}[p.network]
		if addrs, err = net.DefaultResolver.LookupNetIP(ctx, ipNet, host); err != nil {
			return fmt.Errorf("--handover %s: %s", p.group.handover, describeErr(err))
		}
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
	}
	for _, l := range lns {
		tl, ok := l.(*net.TCPListener)
		if !ok {
			return usageError("listen: --handover %s: the process there serves %s %s, not tcp on %s as asked; it goes on serving",
				p.group.handover, l.Addr().Network(), l.Addr(), wantText)
		}
		got := boundOf(tl.Addr(), tl)
		portOK := want.ap.Port() == 0 || got.ap.Port() == want.ap.Port()
		addrOK := got.ap.Addr() == want.ap.Addr() && got.dual == want.dual
		if !literal {
			addrOK = slices.Contains(addrs, got.ap.Addr())
		}
		if !portOK || !addrOK {
			return usageError("listen: --handover %s: the process there serves %s (%s), not %s as asked; it goes on serving",
				p.group.handover, got, p.proto, wantText)
		}
	}
	return nil
}
