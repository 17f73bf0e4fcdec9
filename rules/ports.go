package rules

import (
	"fmt"
	"net/netip"
	"syscall"

	"github.com/tuple-net/tuple/inet"
)

// EffectiveRange is the range an autobind of s searches: the namespace's
// ip_local_port_range narrowed by the socket's IP_LOCAL_PORT_RANGE, each
// end applied only when it lies inside (inet_sk_get_local_port_range).
// perSocket reports whether the socket set a range at all, which makes
// connect() try every port in order instead of even ports first.
func EffectiveRange(h Host, s Socket) (r inet.PortRange, perSocket bool) {
	lo, hi := int(h.EphemeralRange.Lo), int(h.EphemeralRange.Hi)
	if s.PortRange.IsZero() {
		return inet.PortRange{Lo: uint16(lo), Hi: uint16(hi)}, false
	}
	if sl := int(s.PortRange.Lo); lo <= sl && sl <= hi {
		lo = sl
	}
	if sh := int(s.PortRange.Hi); lo <= sh && sh <= hi {
		hi = sh
	}
	return inet.PortRange{Lo: uint16(lo), Hi: uint16(hi)}, true
}

// Searchable reports whether an ephemeral-port search on h (connect()'s
// or an autobind's, for any socket) can visit port: only the ports of the
// namespace's ip_local_port_range are, a socket's IP_LOCAL_PORT_RANGE
// narrowing it at most (EffectiveRange). Sockets holding other ports
// cannot change what a search finds, so a budget of many sockets may
// leave them out of the model.
func Searchable(h Host, port uint16) bool {
	return h.EphemeralRange.Lo <= port && port <= h.EphemeralRange.Hi
}

// spans are the port ranges (inclusive) a search walks. The TCP searches
// walk an even number of ports per span ("remaining &= ~1"), so with an odd
// span size the top port is never tried.
type spans struct {
	n  int
	lo [2]int
	hi [2]int
}

func (sp *spans) add(lo, hi int, even bool) {
	if hi < lo {
		return
	}
	if size := hi - lo + 1; even && size > 1 && size%2 == 1 {
		hi--
	}
	sp.lo[sp.n], sp.hi[sp.n] = lo, hi
	sp.n++
}

// tcpBindSpans is inet_csk_find_open_port's walk: with SO_REUSEADDR it
// scans the lower half, then the upper half.
func tcpBindSpans(r inet.PortRange, reuse bool) spans {
	var sp spans
	low, high := int(r.Lo), int(r.Hi)+1
	if high <= low {
		return sp
	}
	if reuse && high-low >= 4 {
		half := low + ((high-low)>>2)<<1
		sp.add(low, half-1, true)
		sp.add(half, high-1, true)
		return sp
	}
	sp.add(low, high-1, true)
	return sp
}

func (h Host) reserved(port int) bool {
	for _, r := range h.ReservedPorts {
		if r.Contains(uint16(port)) {
			return true
		}
	}
	return false
}

// autobind is bind(addr, 0) and listen() on an unbound socket: for TCP
// inet_csk_find_open_port, for UDP udp_lib_get_port with port 0.
func (e *eval) autobind(ep endpoint, listen bool) {
	if e.s.Proto == inet.UDP {
		port, n := e.udpSearch(ep)
		if n == 0 {
			e.out.Candidates = 0
			e.collectRangeBlockers(ep, udpSpans(e.m.host, e.s))
			e.fail(syscall.EADDRINUSE, "autobind-exhausted", e.exhaustedWhy("bind(0)", "UDP"))
			return
		}
		e.out.Candidates = n
		e.setPort(port, n)
		e.ok("autobind", fmt.Sprintf("%d UDP port(s) in the range are free for this address; the kernel starts at a random one", n))
		return
	}
	r, _ := EffectiveRange(e.m.host, e.s)
	sp := tcpBindSpans(r, e.s.ReuseAddr)
	port, n := e.tcpSearch(ep, sp, false)
	rule := "autobind"
	if n == 0 && e.m.host.AutobindReuse {
		port, n = e.tcpSearch(ep, sp, true)
		rule = "autobind-reuse"
	}
	e.out.Candidates = n
	op := "bind(0)"
	if listen {
		op = "listen()"
	}
	if n == 0 {
		e.out.Candidates = 0
		e.collectRangeBlockers(ep, sp)
		e.fail(syscall.EADDRINUSE, "autobind-exhausted", e.exhaustedWhy(op, "TCP"))
		return
	}
	e.setPort(port, n)
	if rule == "autobind-reuse" {
		e.ok(rule, fmt.Sprintf("%s found no free port; with ip_autobind_reuse it shares one of %d port(s) held only by SO_REUSEADDR sockets that do not listen", op, n))
		return
	}
	e.ok(rule, fmt.Sprintf("%s picks one of %d free port(s) in %d-%d (odd ports first, random start)", op, n, r.Lo, r.Hi))
}

func (e *eval) exhaustedWhy(op, proto string) string {
	r, _ := EffectiveRange(e.m.host, e.s)
	return fmt.Sprintf("%s finds no usable %s port in %d-%d: every port is reserved or held on an overlapping address", op, proto, r.Lo, r.Hi)
}

// setPort records the chosen port when only one candidate exists.
func (e *eval) setPort(port, n int) {
	if n == 1 {
		e.out.After.Local = netip.AddrPortFrom(e.out.After.Local.Addr(), uint16(port))
	}
}

// tcpSearch counts the ports of sp a bind(0) search may take and returns
// the last one found. Each span's owners are walked with a cursor, not
// looked up port by port: the search visits every port of the range.
func (e *eval) tcpSearch(ep endpoint, sp spans, relax bool) (port, n int) {
	h := e.m.host
	for k := 0; k < sp.n; k++ {
		cur := e.m.cursorAt(inet.TCP, uint16(sp.lo[k]))
		for p := sp.lo[k]; p <= sp.hi[k]; p++ {
			if p == 0 || h.reserved(p) {
				continue
			}
			free := true
			for _, j := range cur.next(inet.TCP, uint16(p)) {
				if v, _ := e.tcpPair(ep, int(j), relax, false); v == tcpConflict {
					free = false
					break
				}
			}
			if free {
				port, n = p, n+1
			}
		}
	}
	return port, n
}

// collectRangeBlockers lists, for an exhausted search, the owners that hold
// the ports of sp on an overlapping address.
func (e *eval) collectRangeBlockers(ep endpoint, sp spans) {
	for k := 0; k < sp.n; k++ {
		for p := sp.lo[k]; p <= sp.hi[k]; p++ {
			if e.m.host.reserved(p) {
				continue
			}
			for _, j := range e.m.owners(e.s.Proto, uint16(p)) {
				if overlap(ep, e.m.eps[j]) && (e.s.Proto == inet.TCP || !e.udpUsable(ep, uint16(p))) {
					e.block(int(j), fmt.Sprintf("%s holds port %d of the range", describe(e.m.socks[j]), p))
				}
			}
		}
	}
}

// udpUsable is the bitmap test of udp_lib_lport_inuse in a bind(0) search:
// a port is usable when every overlapping socket either has SO_REUSEADDR
// together with the new one or SO_REUSEPORT with the same uid.
func (e *eval) udpUsable(ep endpoint, port uint16) bool {
	for _, j := range e.m.owners(inet.UDP, port) {
		if e.udpPair(ep, int(j)) == udpConflict {
			return false
		}
	}
	return true
}

// udpRelation is how an existing UDP socket stands to the new one.
type udpRelation uint8

const (
	udpApart     udpRelation = iota // another device, or no overlapping address
	udpReuseAddr                    // overlapping, SO_REUSEADDR on both
	udpReusePort                    // overlapping, SO_REUSEPORT on both, same uid
	udpConflict                     // overlapping and neither applies (UCONFL)
)

// udpPair classifies owner i against the new socket bound to ep, as
// udp_lib_lport_inuse does, consulting (and so reporting as assumptions)
// only the facts the kernel looks at, in its order.
func (e *eval) udpPair(ep endpoint, i int) udpRelation {
	n, o := e.s, e.m.socks[i]
	e.consult(i, FactDev)
	if n.Dev != 0 && o.Dev != 0 && n.Dev != o.Dev || !overlap(ep, e.m.eps[i]) && !e.udpV4Placeholder(ep, i) {
		return udpApart
	}
	e.consult(i, FactReuseAddr)
	if n.ReuseAddr && o.ReuseAddr {
		return udpReuseAddr
	}
	e.consult(i, FactReusePort)
	if n.ReusePort && o.ReusePort && !n.InGroup && n.UID == o.UID {
		return udpReusePort
	}
	return udpConflict
}

// udpSpans is the whole effective range: udp_lib_get_port tries every port.
func udpSpans(h Host, s Socket) spans {
	r, _ := EffectiveRange(h, s)
	var sp spans
	sp.add(int(r.Lo), int(r.Hi), false)
	return sp
}

// udpSearch counts the usable ports of the (whole) effective range.
func (e *eval) udpSearch(ep endpoint) (port, n int) {
	r, _ := EffectiveRange(e.m.host, e.s)
	for p := int(r.Lo); p <= int(r.Hi) && r.Hi >= r.Lo; p++ {
		if p == 0 || e.m.host.reserved(p) || !e.udpUsable(ep, uint16(p)) {
			continue
		}
		port, n = p, n+1
	}
	return port, n
}

// udpV4Placeholder reports whether an AF_INET socket binding ep meets
// owner i on the IPv4 side that i keeps without meaning it: a dual-stack
// (not v6only) AF_INET6 UDP socket whose local address became a specific
// IPv6 one when it connected over IPv6 (ip6_datagram_dst_update sets
// inet_rcv_saddr to LOOPBACK4_IPV6), which bind() never leaves since a
// specific IPv6 bind forces v6only. udp_lib_lport_inuse compares that
// placeholder as an IPv4 address (ipv4_rcv_saddr_equal), so a bind of
// 127.0.0.6 on the port conflicts with it.
func (e *eval) udpV4Placeholder(ep endpoint, i int) bool {
	o := e.m.eps[i]
	return e.fam == inet.IPv4 && ep.class == classV4 && ep.addr == loopback4IPv6 &&
		e.m.socks[i].Family == inet.IPv6 && o.class == classV6 && !o.v6only
}
