package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/inet"
)

// PortCount is how the ports of a connect() search fall for one
// destination. Candidates() is exact: the number of ports connect() could
// take, which is also Outcome.Candidates for a searching connect().
type PortCount struct {
	Range      inet.PortRange // the effective range searched
	Searched   int            // ports the kernel tries (range minus reserved and, with an odd even-first range, its top port)
	Reserved   int            // ports skipped as ip_local_reserved_ports
	Free       int            // no owner at all
	Shared     int            // held only by connect()-bound sockets, and this four-tuple is unused
	TimeWait   int            // the four-tuple is in TIME_WAIT and the kernel would reuse it
	HeldByBind int            // skipped: an owner got the port through bind() or listen()
	Busy       int            // the four-tuple is in use (or in TIME_WAIT and not reusable)
}

// Candidates is the number of ports the search could take.
func (c PortCount) Candidates() int { return c.Free + c.Shared + c.TimeWait }

// ConnectPorts counts, without allocating per port, the ports a TCP
// connect() of the unbound (or IP_BIND_ADDRESS_NO_PORT) socket s to remote
// could take (__inet_hash_connect). source is the local address of the
// four-tuple; the zero Addr compares four-tuples on the remote end only.
// For UDP every port is counted as for the autobind connect() does.
func (m *Model) ConnectPorts(s Socket, remote netip.AddrPort, source netip.Addr) PortCount {
	e := &eval{m: m, s: s}
	e.fam = e.family()
	if source.IsValid() {
		source = source.Unmap().WithZone("") // as the four-tuples are held
	}
	c, _ := e.connectSearch(remote, source, false)
	return c
}

// connectSpans is __inet_hash_connect's walk: even ports first over an
// even-sized range unless the socket has its own range (then every port).
func connectSpans(r inet.PortRange, perSocket bool) spans {
	var sp spans
	sp.add(int(r.Lo), int(r.Hi), !perSocket)
	return sp
}

// connect follows tcp_v4_connect / tcp_v6_connect and, for UDP,
// inet_dgram_connect (autobind first) and ip4/ip6_datagram_connect.
func (e *eval) connect() {
	peer := e.op.Addr.Addr()
	switch e.s.State {
	case Listen, Connected, TimeWait:
		if e.s.Proto == inet.TCP {
			e.fail(syscall.EISCONN, "connect-state", "the socket is already listening or connected")
			return
		}
	}
	if !peer.IsValid() {
		e.fail(syscall.EINVAL, "family", "connect() needs a peer address")
		return
	}
	e.wildcardConnect()
	peer = e.op.Addr.Addr()
	if e.s.Proto == inet.TCP && e.s.Reset {
		e.fail(syscall.EISCONN, "connect-reset", "the socket's connection was reset, and the socket layer still counts it connected")
		return
	}
	unboundPort := e.s.State == Unbound || e.s.Local.Port() == 0
	if e.s.Proto == inet.UDP {
		e.udpConnect(peer, unboundPort)
		return
	}
	src, ok := e.connectTo(peer, false)
	if !ok {
		return
	}
	defer e.refused()
	if !unboundPort {
		e.fourTuple(src)
		return
	}
	e.out.After.PortFromConnect = true
	e.out.After.Local = netip.AddrPortFrom(e.afterAddr(src), 0)
	c, pick := e.connectSearch(e.op.Addr, src, true)
	n := c.Candidates()
	e.out.Candidates = n
	if n == 0 {
		e.fail(syscall.EADDRNOTAVAIL, "connect-exhausted", fmt.Sprintf("connect() finds no usable local port in %d-%d for %s: %d held through bind()/listen(), %d with this four-tuple in use, %d reserved",
			c.Range.Lo, c.Range.Hi, e.op.Addr, c.HeldByBind, c.Busy, c.Reserved))
		return
	}
	e.pick = pick
	why := fmt.Sprintf("connect() picks one of %d usable port(s) in %d-%d (%d free, %d shared with other destinations, %d TIME_WAIT reused)",
		n, c.Range.Lo, c.Range.Hi, c.Free, c.Shared, c.TimeWait)
	if pick.port != 0 {
		e.out.After.Local = netip.AddrPortFrom(e.out.After.Local.Addr(), uint16(pick.port))
		if n > 1 {
			why = fmt.Sprintf("connect() takes port %d: of the %d usable port(s) in %d-%d it is the only one of the parity the search tries first (%s)",
				pick.port, n, c.Range.Lo, c.Range.Hi, pick.passWhy())
		}
	}
	e.ok("connect-search", why)
}

// refused turns a TCP connect() that got its port and four-tuple into
// ECONNREFUSED when the world knows every listener (Host.AllListeners) and
// the peer is an address of this host that none covers: the kernel answers
// the SYN with a reset.
func (e *eval) refused() {
	peer := e.op.Addr.Addr().Unmap()
	// Only a specific unicast address: a connect() to 0.0.0.0 goes to
	// loopback, and multicast or broadcast peers fail otherwise.
	if e.out.Err != 0 || !e.m.host.AllListeners || peer.IsUnspecified() || peer.IsMulticast() || peer == netip.AddrFrom4([4]byte{255, 255, 255, 255}) ||
		!e.m.host.local(peer) {
		return
	}
	if ls := e.m.listeners(e.op.Addr); len(ls) > 0 {
		e.acceptQueueFull(ls)
		return
	}
	if e.selfConnect() {
		e.ok("self-connect", e.selfConnectWhy())
		return
	}
	e.selfConnectChance()
	e.fail(syscall.ECONNREFUSED, "no-listener", fmt.Sprintf("nothing listens on %s: this host answers the connection request with a reset", e.op.Addr))
}

// listeners are the TCP listeners of this host the kernel's lookup may hand
// a SYN to peer (__inet_lookup_listener, __inet6_lookup_listener): first
// those bound to the peer's address, else the wildcards that take its
// family; of those, the ones with the best compute_score, where a socket
// bound to the arriving device (lo) scores above an unbound one, and for an
// IPv4 peer an AF_INET socket above an AF_INET6 one. A socket bound to
// another device does not take it. More than one is a reuseport group (or
// sockets the kernel tells apart only by the CPU the SYN arrives on).
func (m *Model) listeners(peer netip.AddrPort) []int32 {
	pa := peer.Addr().Unmap().WithZone("")
	v4 := pa.Is4()
	var exact, wild []int32
	for _, j := range m.owners(inet.TCP, peer.Port()) {
		o := m.socks[j]
		if o.State != Listen || (o.Dev != 0 && o.Dev != LoopbackIndex) {
			continue
		}
		la := o.Local.Addr().WithZone("")
		switch {
		case v4 && o.Family == inet.IPv6 && (o.V6Only || la.Is6() && !la.Is4In6() && !la.IsUnspecified()):
			// An IPv6-only socket, or one on a true IPv6 address.
		case !v4 && (o.Family != inet.IPv6 || la.Is4In6()):
			// IPv4 and v4-mapped sockets take IPv4 only.
		case la.Unmap() == pa:
			exact = append(exact, j)
		case la.Unmap().IsUnspecified():
			wild = append(wild, j)
		}
	}
	ls := exact
	if len(ls) == 0 {
		ls = wild
	}
	score := func(j int32) int {
		o := m.socks[j]
		n := 1
		if o.Dev != 0 {
			n++
		}
		if v4 && o.Family == inet.IPv4 {
			n++
		}
		return n
	}
	best := 0
	for _, j := range ls {
		best = max(best, score(j))
	}
	return slices.DeleteFunc(ls, func(j int32) bool { return score(j) < best })
}

// acceptQueueFull makes the connect() wait when every listener that may
// take its SYN (ls) has more connections waiting to be accepted than its
// backlog: tcp_conn_request drops the SYN, and the connecting side sends
// it again until the listener accepts or tcp_syn_retries runs out
// (ETIMEDOUT). Where only some members of a reuseport group are full, the
// SYN's hash decides: an assumption says so.
func (e *eval) acceptQueueFull(ls []int32) {
	full, first := 0, int32(-1)
	for _, j := range ls {
		if o := e.m.socks[j]; o.BacklogKnown && o.Waiting > o.Backlog {
			if full == 0 {
				first = j
			}
			full++
		}
	}
	switch {
	case full == 0:
	case full < len(ls):
		e.out.Assumptions = append(e.out.Assumptions, fmt.Sprintf(
			"%d of the %d listeners the kernel chooses among for this connection (a reuseport group) have a full accept queue: a SYN handed to one of them is dropped, and connect() waits", full, len(ls)))
	default:
		o := e.m.socks[first]
		e.block(int(first), fmt.Sprintf("its accept queue is full: %d connections wait, backlog %d", o.Waiting, o.Backlog))
		e.fail(syscall.ETIMEDOUT, "accept-queue-full", fmt.Sprintf(
			"the listener on %s has a full accept queue (%d connections wait to be accepted, backlog %d): the kernel drops the SYN, and connect() sends it again until the listener accepts one or net.ipv4.tcp_syn_retries runs out (ETIMEDOUT, about 2 minutes by default)",
			o.Local, o.Waiting, o.Backlog))
	}
}

// connectFamily checks the peer's family against the socket's.
func (e *eval) connectFamily(peer netip.Addr) (syscall.Errno, string, string) {
	if e.fam == inet.IPv4 {
		if peer.Is6() {
			return syscall.EAFNOSUPPORT, "family", "an AF_INET socket cannot connect to an IPv6 address"
		}
		return 0, "", ""
	}
	if peer.Is4() {
		if e.s.Proto == inet.UDP {
			if e.v6onlyNow() {
				return syscall.EAFNOSUPPORT, "family", "an IPV6_V6ONLY socket cannot connect to an IPv4 address"
			}
			return 0, "", ""
		}
		return syscall.EINVAL, "family", "an AF_INET6 TCP socket needs an IPv6 peer: use ::ffff:" + peer.String()
	}
	if peer.Is4In6() && e.v6onlyNow() {
		return syscall.ENETUNREACH, "v6only-connect", "an IPV6_V6ONLY socket cannot reach the v4-mapped address " + peer.String()
	}
	if a := e.s.Local.Addr(); !peer.Is4In6() && e.s.State != Unbound && a.Is4In6() {
		if !e.m.host.routes(peer) {
			// The route lookup comes first.
			return syscall.ENETUNREACH, "no-route", "this namespace has no route to " + peer.String() + ": only its own addresses are reachable"
		}
		return syscall.EAFNOSUPPORT, "family", "a socket bound to the v4-mapped address " + a.String() + " can only reach IPv4 peers"
	}
	return 0, "", ""
}

// v6onlyNow is the new socket's IPV6_V6ONLY as it stands (a bind to a
// specific IPv6 address forced it on).
func (e *eval) v6onlyNow() bool {
	if e.fam != inet.IPv6 {
		return false
	}
	if e.s.State != Unbound {
		if ep := normalise(inet.IPv6, e.s.Local.Addr(), e.v6only); ep.class == classV6 {
			return true
		}
	}
	return e.v6only
}

// source is the local address of the four-tuple: the bound address, else
// Op.Source, else what the model can derive from the peer (zero: unknown).
func (e *eval) source(quiet bool) netip.Addr {
	if a := e.s.Local.Addr(); e.s.State != Unbound && a.IsValid() && !a.Unmap().IsUnspecified() {
		return a.Unmap().WithZone("")
	}
	if e.op.Source.IsValid() {
		return e.op.Source.Unmap().WithZone("")
	}
	src := e.m.host.sourceFor(e.op.Addr.Addr())
	if !src.IsValid() && !quiet {
		e.out.Assumptions = append(e.out.Assumptions, "the source address for "+e.op.Addr.Addr().String()+" is unknown: four-tuples were compared on the remote end only")
	}
	return src
}

// afterAddr is the local address as getsockname shows it after connect.
func (e *eval) afterAddr(src netip.Addr) netip.Addr {
	if !src.IsValid() {
		return e.s.Local.Addr()
	}
	if e.fam == inet.IPv6 && src.Is4() {
		return netip.AddrFrom16(src.As16())
	}
	return src
}

// tupleMatch reports whether owner i holds the four-tuple (src, port,
// peer) for a connecting socket bound to device dev; peer must be unmapped
// and without zone. An owner bound to a device matches only a socket bound
// to the same one (inet_match's inet_sk_bound_dev_eq); an owner bound to
// none matches every socket.
func (m *Model) tupleMatch(i int, src netip.Addr, peer netip.AddrPort, dev int) bool {
	if st := m.socks[i].State; st != Connected && st != TimeWait {
		return false
	}
	if d := m.socks[i].Dev; d != 0 && d != dev {
		return false
	}
	if m.remote(i) != peer {
		return false
	}
	return !src.IsValid() || m.local(i) == src
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
}

// twReusable is tcp_twsk_unique for a searching connect(): tcp_tw_reuse
// (2: loopback only; never for a FIN_WAIT2 entry), peer timestamps, and
// tcp_tw_reuse_delay passed.
func (e *eval) twReusable(i int, search bool) bool {
	o := e.m.socks[i]
	e.consult(i, FactTimestamps)
	if !search {
		return o.TWTimestamps
	}
	h := e.m.host
	reuse := !o.TWFinWait2 && (h.TCPTWReuse == 1 || (h.TCPTWReuse == 2 && twLoopback(o)))
	if !h.Kernel.AtLeast(6, 13, 0) {
		// Before 6.13, which brought net.ipv4.tcp_tw_reuse_delay and
		// tw_entry_stamp (reuse once tcp_clock_ms() passes the entry's
		// time plus the delay), tcp_twsk_unique compared whole seconds:
		// time_after32(ktime_get_seconds(), tw_ts_recent_stamp), so the
		// entry is reusable from the next tick of the monotonic clock's
		// second after the peer's last timestamp, 0 to 1 s later.
		return reuse && o.TWTimestamps && (o.TWSecondTicked || o.TWAge >= time.Second)
	}
	return reuse && o.TWTimestamps && o.TWAge > h.TWReuseDelay
}

// twLoopback is tcp_twsk_unique's test for tcp_tw_reuse=2: a loopback
// address at either end, or an entry bound to the loopback device.
func twLoopback(o Socket) bool {
	return o.Dev == LoopbackIndex || isLoopback(o.Local.Addr()) || isLoopback(o.Remote.Addr())
}

// LoopbackIndex is lo's ifindex in every network namespace
// (LOOPBACK_IFINDEX).
const LoopbackIndex = 1

// fourTuple is connect() on a socket bound to a port: only the four-tuple
// must be unique (__inet_check_established).
func (e *eval) fourTuple(src netip.Addr) {
	port := e.s.Local.Port()
	e.out.After.Local = netip.AddrPortFrom(e.afterAddr(src), port)
	tw := -1
	for _, j := range e.m.owners(inet.TCP, port) {
		i := int(j)
		o := e.m.socks[i]
		if !e.m.tupleMatch(i, src, unmapPort(e.op.Addr), e.s.Dev) {
			continue
		}
		if o.State == TimeWait {
			tw = i
			continue
		}
		// A live socket with the four-tuple always wins over TIME_WAIT.
		e.block(i, fmt.Sprintf("%s is the same four-tuple", describe(o)))
		e.fail(syscall.EADDRNOTAVAIL, "four-tuple", fmt.Sprintf("local port %d is bound, and the four-tuple to %s is already in use", port, e.op.Addr))
		return
	}
	if tw >= 0 {
		o := e.m.socks[tw]
		if e.twReusable(tw, false) {
			e.ok("tw-takeover", fmt.Sprintf("the four-tuple is in TIME_WAIT (%s) and the peer used timestamps, so connect() takes it over", describe(o)))
			return
		}
		e.block(tw, fmt.Sprintf("%s is the same four-tuple in TIME_WAIT without peer timestamps", describe(o)))
		e.fail(syscall.EADDRNOTAVAIL, "four-tuple", fmt.Sprintf("local port %d is bound, and the four-tuple to %s is in TIME_WAIT without peer timestamps", port, e.op.Addr))
		return
	}
	e.ok("four-tuple-unique", fmt.Sprintf("the socket is bound to port %d; connect() only needs the four-tuple to %s to be unique, and it is", port, e.op.Addr))
}

// connectSearch walks the range as __inet_hash_connect does and counts the
// ports. When block is set it records blockers for the outcome. It also
// returns which ports the kernel may take (connectPick).
func (e *eval) connectSearch(peer netip.AddrPort, src netip.Addr, block bool) (PortCount, connectPick) {
	if e.s.Proto == inet.UDP {
		return e.udpConnectCount(), connectPick{}
	}
	peer = unmapPort(peer)
	r, perSocket := EffectiveRange(e.m.host, e.s)
	var w pickWalk
	w.start(r, perSocket, peer.Port())
	c := e.walkConnectRange(block, func(c *PortCount, p int, owners []int32) {
		if owners == nil { // free: counted by the walk
			w.usable(p)
			return
		}
		st := tupleFree
		for _, j := range owners {
			u := e.tupleUse(int(j), src, peer)
			st = st.worse(u)
			if u == tupleBusy && block {
				e.block(int(j), fmt.Sprintf("%s already uses the four-tuple on port %d", describe(e.m.socks[j]), p))
			}
		}
		st.count(c)
		if st != tupleBusy {
			w.usable(p)
		}
	})
	if block && c.Candidates() > 0 {
		e.unblock()
	}
	return c, w.pick()
}

// connectPick is what the order of __inet_hash_connect's walk says about
// the port a searching connect() takes. Over the namespace's range the walk
// tries the ports of the range start's parity first, from a random one of
// them, and the other parity only when none of those is usable (since 4.6,
// commit 1580ab63fc9a, "tcp/dccp: better use of ephemeral ports in
// connect()"); a socket with its own range (IP_LOCAL_PORT_RANGE) tries every
// port from a random start. So the kernel takes a port known in advance when
// the pass it ends in has one usable port: e.g. over a range of two or three
// ports it takes the first whenever it is usable, on every kernel since 4.6.
// That is how a connect() to a port of its own range finds itself: over
// 40000-40001, a connect() to 127.0.0.1:40000 with no listener takes local
// port 40000 and connects to itself.
type connectPick struct {
	port    int  // the port the kernel takes whatever its random start; 0 when the start decides
	n       int  // usable ports in the pass the kernel ends in
	parity  int  // that pass's parity, relative to the range start; -1: every port (a socket's own range)
	mayDest bool // the destination port is one of them (a self-connect is possible)
}

// passWhy words the pass of a pick.
func (p connectPick) passWhy() string {
	if p.parity == 0 {
		return "the start's parity first, the other only when none is usable"
	}
	return "no port of the start's parity is usable, so the other parity decides"
}

// pickWalk follows a connect() search's usable ports by parity.
type pickWalk struct {
	lo, dest int
	perPort  bool // a socket's own range: no parity passes
	n, last  [2]int
	dest2    [2]bool // the destination port is usable, by parity
}

func (w *pickWalk) start(r inet.PortRange, perSocket bool, dest uint16) {
	*w = pickWalk{lo: int(r.Lo), dest: int(dest), perPort: perSocket}
}

// usable records that port p could be taken.
func (w *pickWalk) usable(p int) {
	k := (p - w.lo) & 1
	if w.perPort {
		k = 0
	}
	w.n[k]++
	w.last[k] = p
	if p == w.dest {
		w.dest2[k] = true
	}
}

func (w *pickWalk) pick() connectPick {
	k := 0
	if w.n[0] == 0 {
		k = 1
	}
	p := connectPick{n: w.n[k], parity: k, mayDest: w.dest2[k]}
	if w.perPort {
		p.parity = -1
	}
	if p.n == 1 {
		p.port = w.last[k]
	}
	return p
}

// ConnectSearched is the size of the pool a TCP connect() of s searches on
// h (PortCount.Searched): the ports of its effective range the search
// visits, less the reserved. It does not depend on who holds them, so it
// needs no model.
func ConnectSearched(h Host, s Socket) int {
	r, perSocket := EffectiveRange(h, s)
	sp := connectSpans(r, perSocket)
	var c PortCount
	for k := 0; k < sp.n; k++ {
		for p := sp.lo[k]; p <= sp.hi[k]; p++ {
			c.searches(&h, p)
		}
	}
	return c.Searched
}

// searches reports whether the search tries port p (not 0, not reserved),
// counting it as searched or reserved.
func (c *PortCount) searches(h *Host, p int) bool {
	switch {
	case p == 0:
		return false
	case h.reserved(p):
		c.Reserved++
		return false
	}
	c.Searched++
	return true
}

// udpConnectCount counts the ports of a UDP connect()'s autobind: every
// port of the range but the reserved, free when udp_lib_lport_inuse would
// let the socket take it. UDP never looks at the four-tuple.
func (e *eval) udpConnectCount() PortCount {
	r, _ := EffectiveRange(e.m.host, e.s)
	c := PortCount{Range: r}
	ep := e.connectEndpoint()
	for p := int(r.Lo); p <= int(r.Hi); p++ {
		if !c.searches(&e.m.host, p) {
			continue
		}
		if e.udpUsable(ep, uint16(p)) {
			c.Free++
		} else {
			c.Busy++
		}
	}
	return c
}

// walkConnectRange is __inet_hash_connect's walk over the TCP range: it
// counts the reserved ports, the ports nobody holds and those an owner got
// through bind() (which connect() skips), and hands each port whose owners
// all got it through connect() to shared, which counts it by four-tuple.
// shared is also called, with no owners, for each free port (counted
// already), so that a caller can follow the walk's order.
func (e *eval) walkConnectRange(block bool, shared func(c *PortCount, p int, owners []int32)) PortCount {
	r, perSocket := EffectiveRange(e.m.host, e.s)
	c := PortCount{Range: r}
	sp := connectSpans(r, perSocket)
	for k := 0; k < sp.n; k++ {
		cur := e.m.cursorAt(inet.TCP, uint16(sp.lo[k]))
		for p := sp.lo[k]; p <= sp.hi[k]; p++ {
			if !c.searches(&e.m.host, p) {
				continue
			}
			owners := cur.next(inet.TCP, uint16(p))
			switch {
			case len(owners) == 0:
				c.Free++
				shared(&c, p, nil)
			case e.heldByBind(uint16(p), owners, block):
				c.HeldByBind++
			default:
				shared(&c, p, owners)
			}
		}
	}
	return c
}

// heldByBind reports whether a connect() search skips port p: either reuse
// cache of its bind bucket is set, i.e. an owner got the port through
// bind() or listen() (the exact bucket, when given, says so directly).
// With block set the owners are recorded as blockers.
func (e *eval) heldByBind(p uint16, owners []int32, block bool) bool {
	if x, exact := e.m.bucket(p); exact {
		byBind := x.FastReuse >= 0 || x.FastReusePort >= 0
		if byBind && block {
			for _, j := range owners {
				e.block(int(j), fmt.Sprintf("%s holds port %d, whose bind bucket is marked as taken through bind(), so connect() skips it", describe(e.m.socks[j]), p))
			}
		}
		return byBind
	}
	if e.m.marked[p] {
		// Before 6.18 the mark of a bind()-bound owner that left stays on
		// the bucket (World.BindMarked).
		if block {
			e.block(int(owners[0]), fmt.Sprintf("port %d's bind bucket still carries the mark of a bind()-bound socket that left (kernels before 6.18 clear it only when the bucket empties), so connect() skips it", p))
		}
		return true
	}
	byBind := false
	for _, j := range owners {
		e.consult(int(j), FactPortOrigin)
		if !e.m.socks[j].PortFromConnect {
			byBind = true
			if block {
				e.block(int(j), fmt.Sprintf("%s got port %d through bind()/listen(), so connect() skips the port", describe(e.m.socks[j]), p))
			}
		}
	}
	return byBind
}

// tupleState is how the searched four-tuple stands on one port whose
// owners all got it through connect() (__inet_check_established): free,
// held by a TIME_WAIT entry connect() may take over, or in use. Over a
// port's owners the worse state wins.
type tupleState uint8

const (
	tupleFree     tupleState = iota // no owner holds this four-tuple
	tupleTimeWait                   // a TIME_WAIT entry holds it, and connect() takes it over
	tupleBusy                       // a live socket, or a TIME_WAIT entry connect() may not take, holds it
)

// worse is the state of a port with owners in states s and o.
func (s tupleState) worse(o tupleState) tupleState { return max(s, o) }

// count adds a port in state s to c.
func (s tupleState) count(c *PortCount) {
	switch s {
	case tupleFree:
		c.Shared++
	case tupleTimeWait:
		c.TimeWait++
	default:
		c.Busy++
	}
}

// tupleUse is __inet_check_established for owner i and the four-tuple
// (src, port, peer) of a searching connect().
func (e *eval) tupleUse(i int, src netip.Addr, peer netip.AddrPort) tupleState {
	if !e.m.tupleMatch(i, src, peer, e.s.Dev) {
		return tupleFree
	}
	if e.m.socks[i].State == TimeWait && e.twReusable(i, true) {
		return tupleTimeWait
	}
	return tupleBusy
}

// Dest is one destination of a connect() search: the peer and the local
// address of the four-tuple (the zero Addr compares the peer only).
type Dest struct {
	Source netip.Addr
	Peer   netip.AddrPort
}

// ConnectPortsMany is ConnectPorts for every destination in dests, in one
// walk of the range: which ports connect() skips (reserved, held through
// bind()) and which are free is found once, and each owner of a shared port
// is matched only to the destinations whose four-tuple it holds. Its cost
// is the range plus the table, whatever the number of destinations.
func (m *Model) ConnectPortsMany(s Socket, dests []Dest) []PortCount {
	out := make([]PortCount, len(dests))
	e := &eval{m: m, s: s}
	e.fam = e.family()
	if s.Proto == inet.UDP {
		// A UDP autobind does not look at the peer.
		c := e.udpConnectCount()
		for i := range out {
			out[i] = c
		}
		return out
	}
	ix := indexDests(dests)
	// per[d] counts, for distinct destination d, the shared ports where
	// its four-tuple is in TIME_WAIT or in use; the walk's Shared counts
	// every shared port, and the difference is d's.
	per := make([]PortCount, len(dests))
	state := make([]tupleState, len(dests))
	var touched []int
	held := tupleCache{ix: ix}
	base := e.walkConnectRange(false, func(c *PortCount, _ int, owners []int32) {
		if owners == nil {
			return // free: counted by the walk
		}
		c.Shared++ // for every destination, less those whose four-tuple an owner holds
		for _, j := range owners {
			if st := m.socks[j].State; st != Connected && st != TimeWait {
				continue // no four-tuple held
			}
			for _, d := range held.holding(m, int(j)) {
				u := e.tupleUse(int(j), ix.norm[d].Source, ix.norm[d].Peer)
				if u == tupleFree {
					continue
				}
				if state[d] == tupleFree {
					touched = append(touched, d)
				}
				state[d] = state[d].worse(u)
			}
		}
		for _, d := range touched {
			state[d].count(&per[d])
			state[d] = tupleFree
		}
		touched = touched[:0]
	})
	for i := range out {
		d := ix.canon[i]
		c := base
		c.TimeWait, c.Busy = per[d].TimeWait, per[d].Busy
		c.Shared -= c.TimeWait + c.Busy
		out[i] = c
	}
	return out
}

// destIndex finds, for an owner's four-tuple, the destinations it may
// hold: the one with that exact source and peer, and those whose source
// is unknown with that peer. Duplicates share one distinct destination.
type destIndex struct {
	norm      []Dest                   // each destination unmapped and without zone
	canon     []int                    // index of each destination's first duplicate
	exact     map[Dest]int             // distinct destinations with a source
	anySource map[netip.AddrPort][]int // distinct destinations without one, by peer
}

func indexDests(dests []Dest) destIndex {
	ix := destIndex{
		norm:      make([]Dest, len(dests)),
		canon:     make([]int, len(dests)),
		exact:     make(map[Dest]int, len(dests)),
		anySource: map[netip.AddrPort][]int{},
	}
	for i, d := range dests {
		d = Dest{Source: d.Source.Unmap().WithZone(""), Peer: unmapPort(d.Peer)}
		ix.norm[i], ix.canon[i] = d, i
		if !d.Source.IsValid() {
			if first, dup := ix.anySource[d.Peer]; dup {
				ix.canon[i] = first[0]
				continue
			}
			ix.anySource[d.Peer] = []int{i}
			continue
		}
		if j, dup := ix.exact[d]; dup {
			ix.canon[i] = j
			continue
		}
		ix.exact[d] = i
	}
	return ix
}

// holding appends to buf the distinct destinations whose four-tuple
// owner j, connected or in TIME_WAIT, may hold.
func (ix destIndex) holding(m *Model, j int, buf []int) []int {
	peer := m.remote(j)
	buf = append(buf, ix.anySource[peer]...)
	if d, ok := ix.exact[Dest{Source: m.local(j), Peer: peer}]; ok {
		buf = append(buf, d)
	}
	return buf
}

// tupleCache is a destIndex that remembers, for recent four-tuples
// (source, peer) looked up, the destinations they may hold: a table's
// owners mostly share a few dozen, and a lookup hashes two addresses and
// allocates. It is direct-mapped by the peer's port and the addresses'
// last bytes; a four-tuple that meets another's slot replaces it.
type tupleCache struct {
	ix      destIndex
	entries [64]tupleHeld
}

type tupleHeld struct {
	src   netip.Addr
	peer  netip.AddrPort
	dests []int
	used  bool
}

// holding is destIndex.holding; the slice is valid until the next call.
func (c *tupleCache) holding(m *Model, j int) []int {
	src, peer := m.socks[j].Local.Addr(), m.socks[j].Remote
	s16, p16 := src.As16(), peer.Addr().As16()
	e := &c.entries[(uint(peer.Port())^uint(p16[15])<<3^uint(s16[15])<<1)%uint(len(c.entries))]
	if !e.used || e.src != src || e.peer != peer {
		e.src, e.peer, e.used = src, peer, true
		e.dests = c.ix.holding(m, j, e.dests[:0])
	}
	return e.dests
}

// connectEndpoint is the address a UDP autobind at connect() checks: the
// bound address (IP_BIND_ADDRESS_NO_PORT) or the family's wildcard, since
// the source address is set only after the port.
func (e *eval) connectEndpoint() endpoint {
	a := e.s.Local.Addr()
	if e.s.State == Unbound || !a.IsValid() {
		a = netip.IPv6Unspecified()
		if e.fam == inet.IPv4 {
			a = netip.IPv4Unspecified()
		}
	}
	return normalise(e.fam, a, e.v6onlyNow())
}

// connectTo runs the steps TCP and UDP connect() share once the socket
// has its port (or will take one): the family and peer checks, then the
// source address; it records the connected state and returns the source,
// or false when a check failed (the failure is recorded). quiet is
// source's: UDP does not note an unroutable peer.
func (e *eval) connectTo(peer netip.Addr, quiet bool) (netip.Addr, bool) {
	if err, rule, why := e.connectFamily(peer); err != 0 {
		e.fail(err, rule, why)
		return netip.Addr{}, false
	}
	if !e.connectPeer() {
		return netip.Addr{}, false
	}
	src := e.source(quiet)
	e.out.After.State = Connected
	e.out.After.Remote = e.op.Addr
	return src, true
}

// udpConnect: an unbound socket is autobound first (EAGAIN when no port
// is usable), then the peer is set; UDP never checks the four-tuple.
func (e *eval) udpConnect(peer netip.Addr, unboundPort bool) {
	if unboundPort {
		c, _ := e.connectSearch(e.op.Addr, netip.Addr{}, false)
		e.out.Candidates = c.Candidates()
		if c.Candidates() == 0 {
			e.collectRangeBlockers(e.connectEndpoint(), udpSpans(e.m.host, e.s))
			e.fail(syscall.EAGAIN, "udp-autobind-exhausted", e.exhaustedWhy("connect() autobind", "UDP"))
			return
		}
	}
	src, ok := e.connectTo(peer, true)
	if !ok {
		return
	}
	e.out.After.Local = netip.AddrPortFrom(e.afterAddr(src), e.s.Local.Port())
	if unboundPort {
		e.out.After.PortFromConnect = true
		if e.out.Candidates == 1 {
			port, _ := e.udpSearch(e.connectEndpoint())
			e.setPort(port, 1)
		}
		e.ok("udp-connect", fmt.Sprintf("connect() autobinds one of %d usable UDP port(s); UDP does not check the four-tuple", e.out.Candidates))
		return
	}
	e.ok("udp-connect", "UDP connect() only sets the peer; it never checks the four-tuple")
}
