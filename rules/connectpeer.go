package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/tuple-net/tuple/inet"
)

// connectPeer applies what connect() does to its destination before any
// port rule: a link-local IPv6 peer needs an interface, a TCP socket cannot
// reach multicast, an IPv6 peer needs a source address of that family, and
// an isolated namespace routes only to its own addresses. It returns false
// when the connect() failed.
func (e *eval) connectPeer() bool {
	peer := e.op.Addr.Addr()
	if u := peer.Unmap(); u.Is4() {
		// tcp_v4_connect refuses a route to multicast or broadcast.
		if e.s.Proto == inet.TCP && (u.IsMulticast() || u == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
			e.fail(syscall.ENETUNREACH, "connect-multicast", "a TCP socket cannot connect to the multicast or broadcast address "+u.String())
			return false
		}
		return e.routed(u)
	}
	// tcp_v6_connect: multicast first, then the link-local scope;
	// __ip6_datagram_connect checks only the scope.
	if e.s.Proto == inet.TCP && peer.IsMulticast() {
		e.fail(syscall.ENETUNREACH, "connect-multicast", "a TCP socket cannot connect to the multicast address "+peer.String())
		return false
	}
	if NeedsScope(peer) {
		// The peer's scope becomes the socket's device; one already
		// bound to another device refuses it (sk_dev_equal_l3scope).
		if d := ZoneDev(peer); d != 0 {
			if e.s.Dev != 0 && e.s.Dev != d {
				e.fail(syscall.EINVAL, "scope-device", fmt.Sprintf("the scope of %s names device %d, but the socket is bound to device %d: connect() wants them to agree", peer, d, e.s.Dev))
				return false
			}
			e.s.Dev, e.out.After.Dev = d, d
		}
		if e.s.Dev == 0 && peer.Zone() == "" {
			e.fail(syscall.EINVAL, "linklocal-scope", "connect() to the link-local address "+peer.String()+" needs a scope (fe80::1%eth0) or a socket bound to a device (SO_BINDTODEVICE)")
			return false
		}
	}
	if e.m.host.Isolated && !e.m.host.hasFamily(inet.IPv6) && !e.boundSpecific() {
		// ip6_dst_lookup_tail picks a source before it looks at the route:
		// with no IPv6 address on the host, ipv6_dev_get_saddr finds none.
		e.fail(syscall.EADDRNOTAVAIL, "no-source", "this host has no IPv6 address (IPv6 disabled?), so connect() to "+peer.String()+" finds no source address")
		return false
	}
	return e.routed(peer)
}

// routed fails the connect() when the host's route lookup for peer failed
// (Op.RouteErr), or with ENETUNREACH when an isolated namespace has no
// route to peer (only its own addresses are routed).
func (e *eval) routed(peer netip.Addr) bool {
	if e.op.RouteErr != 0 {
		// The command repeats the lookup's protocol, ports, mark and
		// owner too: policy routing may choose by them (ip rule
		// ipproto, sport, dport, fwmark, uidrange). The protocol by
		// number: ip(8) knows names only from /etc/protocols, which
		// minimal systems lack.
		p, from, sport := peer.WithZone("").String(), "", ""
		src := e.op.RouteFrom
		if !src.Addr().IsValid() && src.Port() == 0 && e.s.State == Bound {
			src = e.s.Local
		}
		if a := src.Addr(); a.IsValid() && !a.Unmap().IsUnspecified() {
			from = " from " + a.Unmap().String()
		}
		if port := src.Port(); port != 0 {
			sport = " sport " + strconv.Itoa(int(port))
		}
		get := "ip route get " + p + from + " ipproto " + strconv.Itoa(int(e.s.Proto)) + sport + " dport " + strconv.Itoa(int(e.op.Addr.Port()))
		if e.s.Mark != 0 {
			get += " mark 0x" + strconv.FormatUint(uint64(e.s.Mark), 16)
		}
		if e.s.UID != 0 {
			get += " uid " + strconv.FormatUint(uint64(e.s.UID), 10) // ip rule uidrange
		}
		e.fail(e.op.RouteErr, "no-route", "the route lookup for "+p+from+" fails on this host ("+e.op.RouteErr.Error()+"): "+get+" shows it")
		return false
	}
	if e.m.host.routes(peer) {
		return true
	}
	e.fail(syscall.ENETUNREACH, "no-route", "this namespace has no route to "+peer.WithZone("").String()+": only its own addresses are reachable")
	return false
}

// routes reports whether the host has a route to peer: always, unless it
// is Isolated and peer is none of its addresses.
func (h Host) routes(peer netip.Addr) bool {
	if !h.Isolated {
		return true
	}
	peer = peer.Unmap().WithZone("")
	for _, p := range h.Local {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// wildcardConnect rewrites a wildcard destination to the one the kernel
// reaches (wildcardPeer), where the kernel does it: before the family
// checks that follow it, for a sockaddr of the socket's own family.
func (e *eval) wildcardConnect() {
	peer := e.op.Addr.Addr()
	if peer.Unmap().IsUnspecified() && peer.Is6() == (e.fam == inet.IPv6) {
		e.op.Addr = netip.AddrPortFrom(e.wildcardPeer(peer), e.op.Addr.Port())
	}
}

// wildcardPeer is the destination a connect() to 0.0.0.0, :: or
// ::ffff:0.0.0.0 reaches. tcp_v6_connect and __ip6_datagram_connect turn
// :: into ::1, or into ::ffff:127.0.0.1 for a socket bound to a v4-mapped
// address; an IPv4 destination 0.0.0.0 becomes the socket's bound source
// address, else 127.0.0.1 (ip_route_output_key_hash_rcu: "!fl4->daddr").
func (e *eval) wildcardPeer(peer netip.Addr) netip.Addr {
	loop4 := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	bound := e.s.Local.Addr()
	hasBound := e.s.State != Unbound && bound.IsValid() && !bound.Unmap().IsUnspecified()
	if peer.Is6() && !peer.Is4In6() {
		// ipv6_addr_v4mapped(sk_v6_rcv_saddr): ::ffff:0.0.0.0 counts too.
		if e.s.State != Unbound && bound.Is4In6() {
			return netip.AddrFrom16(loop4.As16())
		}
		return netip.IPv6Loopback()
	}
	to := loop4
	if hasBound && bound.Unmap().Is4() {
		to = bound.Unmap()
	}
	if peer.Is4In6() {
		return netip.AddrFrom16(to.As16())
	}
	return to
}

// boundSpecific reports whether the new socket is bound to a specific
// (non-wildcard) address.
func (e *eval) boundSpecific() bool {
	a := e.s.Local.Addr()
	return e.s.State != Unbound && a.IsValid() && !a.Unmap().IsUnspecified()
}

// hasFamily reports whether Local lists an address of family f.
func (h Host) hasFamily(f inet.Family) bool {
	for _, p := range h.Local {
		if p.Addr().Is4() == (f == inet.IPv4) {
			return true
		}
	}
	return false
}

// selfConnect reports whether the connection's local end is its own
// destination: the SYN reaches the socket itself, the kernel's
// simultaneous open completes it (tcp_rcv_synsent_state_process) and no
// listener is needed.
func (e *eval) selfConnect() bool {
	l := e.out.After.Local
	return l.Port() != 0 && l.Port() == e.op.Addr.Port() && l.Addr().Unmap().WithZone("") == e.op.Addr.Addr().Unmap().WithZone("")
}

// selfConnectWhy words a successful self-connect.
func (e *eval) selfConnectWhy() string {
	return fmt.Sprintf("the socket connects to its own address and port %s: its SYN reaches itself and the simultaneous open completes without a listener", e.op.Addr)
}

// selfConnectChance notes, for a refused connect() whose port search may
// land on the destination port itself (same address, and the port is one
// of those the search's pass may take), that the kernel's random start
// could make it a self-connect instead.
func (e *eval) selfConnectChance() {
	l := e.out.After.Local
	if l.Port() != 0 || !e.pick.mayDest || e.pick.n < 2 ||
		l.Addr().Unmap().WithZone("") != e.op.Addr.Addr().Unmap().WithZone("") {
		return
	}
	e.out.Assumptions = append(e.out.Assumptions, fmt.Sprintf("connect() picks one of %d ports from a random start; should it pick %d, the destination port itself, the socket connects to itself and succeeds", e.pick.n, e.op.Addr.Port()))
}
