package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/tuple-net/tuple/inet"
)

// Predict returns what the kernel would do if the new socket s performed op
// in the model's world. It never panics and does not modify the world.
func (m *Model) Predict(s Socket, op Op) Outcome { return m.predict(s, op, false) }

// Verdict is Predict without the list of blockers (Outcome.Blockers is
// nil; the rest is the same, the counts in Why included): for an explicit
// bind() or listen() it costs a walk of the port's holders, not a copy and
// a sentence per holder (the searches of connect() and bind(0) still word
// their few blockers). tuple who asks whether a new socket could share a
// port beside thousands of accepted connections.
func (m *Model) Verdict(s Socket, op Op) Outcome { return m.predict(s, op, true) }

func (m *Model) predict(s Socket, op Op, quiet bool) Outcome {
	e := &eval{m: m, s: s, op: op, quiet: quiet}
	e.out = Outcome{After: s, Candidates: -1}
	e.fam = e.family()
	e.v6only = e.fam == inet.IPv6 && s.V6Only
	if e.fam == inet.IPv6 && s.V6OnlyDefault {
		e.v6only = m.host.BindV6Only
	}
	e.out.After.Family = e.fam
	e.out.After.V6Only = e.v6only
	e.out.After.V6OnlyDefault = false
	switch {
	case s.Proto != inet.TCP && s.Proto != inet.UDP:
		e.fail(syscall.EPROTONOSUPPORT, "proto", "the socket's protocol is neither TCP nor UDP")
	case m.host.Kernel.SetOptionErr(s) == syscall.ENOPROTOOPT:
		// The socket cannot carry an option this kernel does not know:
		// setsockopt failed before the operation.
		e.fail(syscall.ENOPROTOOPT, "kernel-option", "IP_LOCAL_PORT_RANGE is unknown to kernel "+m.host.Kernel.String()+" (added in 6.3): setsockopt fails with ENOPROTOOPT")
	case op.Kind == OpBind:
		e.bind()
	case op.Kind == OpListen:
		e.listen()
	case op.Kind == OpConnect:
		e.connect()
	default:
		e.fail(syscall.EINVAL, "op", "the operation is not bind, listen or connect")
	}
	return e.out
}

// eval is one prediction in progress.
type eval struct {
	m      *Model
	s      Socket
	op     Op
	fam    inet.Family
	v6only bool // the new socket's effective IPV6_V6ONLY before the operation
	out    Outcome
	seen   map[[2]int]bool // assumptions already listed: {socket, fact}
	pick   connectPick     // a searching TCP connect()'s port, as far as the walk's order tells
	// quiet (Verdict) counts blockers without listing them or wording
	// why; blocked is len(out.Blockers) as Predict would have it.
	quiet   bool
	blocked int
}

func (e *eval) family() inet.Family {
	if e.s.Family == inet.IPv4 || e.s.Family == inet.IPv6 {
		return e.s.Family
	}
	if e.s.Local.Addr().IsValid() {
		return familyOf(0, e.s.Local.Addr())
	}
	return familyOf(0, e.op.Addr.Addr())
}

func (e *eval) fail(err syscall.Errno, rule, why string) {
	e.out.Err, e.out.Rule, e.out.Why = err, rule, why
	e.out.After = e.s
}

func (e *eval) ok(rule, why string) { e.out.Err, e.out.Rule, e.out.Why = 0, rule, why }

// consult records that the verdict used fact f of socket i; an unobserved
// fact becomes an assumption in the outcome.
func (e *eval) consult(i int, f Fact) {
	o := e.m.socks[i]
	if o.Unknown&f == 0 {
		return
	}
	k := [2]int{i, int(f)}
	if e.seen[k] {
		return
	}
	if e.seen == nil {
		e.seen = map[[2]int]bool{}
	}
	e.seen[k] = true
	e.out.Assumptions = append(e.out.Assumptions, assumption(e.m.label(i), o, f))
}

func (e *eval) block(i int, reason string) {
	e.blocked++
	if !e.quiet {
		e.out.Blockers = append(e.out.Blockers, Blocker{Index: i, Socket: e.m.socks[i], Reason: reason})
	}
}

// blockWhy is block with the reason worded only when it is listed.
func (e *eval) blockWhy(i int, why func() string) {
	if e.quiet {
		e.block(i, "")
		return
	}
	e.block(i, why())
}

// unblock forgets the blockers found so far.
func (e *eval) unblock() { e.out.Blockers, e.blocked = nil, 0 }

// bound reports whether the new socket already holds a port or is past
// CLOSE, which makes bind() fail with EINVAL.
func (e *eval) bound() bool {
	switch e.s.State {
	case Unbound:
		return false
	case Bound:
		return e.s.Local.Port() != 0
	}
	return true
}

// bind follows __inet_bind / __inet6_bind: the address and state checks
// in the family's order (bindChecks), then the port.
func (e *eval) bind() {
	a := e.op.Addr.Addr()
	if !a.IsValid() {
		a = netip.IPv6Unspecified()
		if e.fam == inet.IPv4 {
			a = netip.IPv4Unspecified()
		}
	}
	v6only := e.v6only
	for _, check := range e.bindChecks() {
		if err, rule, why := check(a, &v6only); err != 0 {
			e.fail(err, rule, why)
			return
		}
	}
	if e.fam == inet.IPv4 {
		a = a.Unmap()
	}
	a = a.WithZone("") // a scope becomes the socket's device (bindAddr6)
	e.out.After.Dev = e.s.Dev
	port := e.op.Addr.Port()
	e.out.After.Local = netip.AddrPortFrom(a, port)
	e.out.After.V6Only = v6only
	e.out.After.State = Bound
	e.out.After.PortFromConnect = false
	ep := normalise(e.fam, a, v6only)
	switch {
	case port == 0 && e.s.BindNoPort:
		e.ok("bind-no-port", "IP_BIND_ADDRESS_NO_PORT defers the port choice to connect()")
	case port == 0:
		e.autobind(ep, false)
	case e.s.Proto == inet.TCP:
		e.tcpExplicit(ep, port, false)
	default:
		e.udpExplicit(ep, port)
	}
	if e.out.Err != 0 {
		e.out.After = e.s
	}
}

// bindCheck is one of bind()'s checks before the port: a non-zero errno
// fails the bind. It may force the socket's IPV6_V6ONLY on.
type bindCheck func(a netip.Addr, v6only *bool) (syscall.Errno, string, string)

// bindChecks lists bind()'s checks in the family's order: __inet_bind
// checks the address before the privileged port and the socket's state;
// __inet6_bind checks the port and the state first, then the address.
func (e *eval) bindChecks() []bindCheck {
	if e.fam == inet.IPv4 {
		return []bindCheck{e.bindFamily, e.bindLocal4, e.bindPrivileged, e.bindState}
	}
	return []bindCheck{e.bindFamily, e.bindMulticast, e.bindPrivileged, e.bindState, e.bindAddr6}
}

// bindFamily: an AF_INET socket takes only IPv4 addresses, an AF_INET6
// one only IPv6 ones (v4-mapped for IPv4).
func (e *eval) bindFamily(a netip.Addr, _ *bool) (syscall.Errno, string, string) {
	switch {
	case e.fam == inet.IPv4 && a.Is6():
		return syscall.EAFNOSUPPORT, "family", "an AF_INET socket cannot bind an IPv6 address (not even a v4-mapped one)"
	case e.fam == inet.IPv6 && a.Is4():
		return syscall.EINVAL, "family", "an AF_INET6 socket needs an IPv6 address: use ::ffff:" + a.String() + " for IPv4"
	}
	return 0, "", ""
}

// bindLocal4 is inet_addr_valid_or_nonlocal for an IPv4 address (plain,
// or v4-mapped on an AF_INET6 socket).
func (e *eval) bindLocal4(a netip.Addr, _ *bool) (syscall.Errno, string, string) {
	if h := e.m.host; !h.NonlocalBind4 && !e.s.Freebind && !h.local(a) {
		return syscall.EADDRNOTAVAIL, "nonlocal", a.Unmap().String() + " is not an address of this host (ip_nonlocal_bind and IP_FREEBIND are off)"
	}
	return 0, "", ""
}

// bindMulticast: TCP cannot bind a multicast address (__inet6_bind; IPv4
// refuses it as not local).
func (e *eval) bindMulticast(a netip.Addr, _ *bool) (syscall.Errno, string, string) {
	if a.IsMulticast() && e.s.Proto == inet.TCP {
		return syscall.EINVAL, "multicast", "a TCP socket cannot bind a multicast address"
	}
	return 0, "", ""
}

// bindPrivileged: a port below ip_unprivileged_port_start needs
// CAP_NET_BIND_SERVICE (inet_port_requires_bind_service).
func (e *eval) bindPrivileged(netip.Addr, *bool) (syscall.Errno, string, string) {
	h, port := e.m.host, e.op.Addr.Port()
	if port != 0 && port < h.UnprivilegedPortStart && !e.s.CanBindPrivileged {
		return syscall.EACCES, "privileged", fmt.Sprintf("port %d is below net.ipv4.ip_unprivileged_port_start (%d) and the socket's owner lacks CAP_NET_BIND_SERVICE", port, h.UnprivilegedPortStart)
	}
	return 0, "", ""
}

// bindState: bind() works once, on a socket in CLOSE without a port.
func (e *eval) bindState(netip.Addr, *bool) (syscall.Errno, string, string) {
	if e.bound() {
		return syscall.EINVAL, "already-bound", "the socket is already bound (or past the CLOSE state); bind() works once"
	}
	return 0, "", ""
}

// bindAddr6 is __inet6_bind's address check: a v4-mapped address is
// refused under IPV6_V6ONLY and checked as IPv4; a specific IPv6 one needs
// a device when link-local (its scope, which replaces SO_BINDTODEVICE and
// stays on the socket even when bind() then fails), must be local (unless
// multicast or nonlocal binds are allowed), on the socket's device when
// of link or host scope, and forces IPV6_V6ONLY on.
func (e *eval) bindAddr6(a netip.Addr, v6only *bool) (syscall.Errno, string, string) {
	h := e.m.host
	switch {
	case a.Is4In6() && *v6only:
		return syscall.EINVAL, "v6only-mapped", "a socket with IPV6_V6ONLY cannot bind a v4-mapped address (" + a.String() + ")"
	case a.Is4In6():
		return e.bindLocal4(a, v6only)
	case a.IsUnspecified():
		return 0, "", ""
	}
	if NeedsScope(a) {
		if d := ZoneDev(a); d != 0 {
			e.s.Dev = d
		}
		if e.s.Dev == 0 && a.Zone() == "" {
			return syscall.EINVAL, "linklocal-scope", "a link-local IPv6 address needs a scope (interface): give one (fe80::1%eth0) or bind the socket to a device (SO_BINDTODEVICE)"
		}
	}
	a = a.WithZone("")
	if !a.IsMulticast() && !h.NonlocalBind6 && !e.s.Freebind {
		if !h.local(a) {
			return syscall.EADDRNOTAVAIL, "nonlocal", a.String() + " is not an address of this host (net.ipv6.ip_nonlocal_bind and IP_FREEBIND are off)"
		}
		if devs := h.scopedDevs(a); e.s.Dev != 0 && len(devs) > 0 && !slices.Contains(devs, e.s.Dev) {
			return syscall.EADDRNOTAVAIL, "other-device", fmt.Sprintf("%s is on device %s, not on device %d, the socket's (%s): an address of link or host scope is taken only on its own device",
				a, joinInts(devs), e.s.Dev, e.devSource(a))
		}
	}
	*v6only = true
	return 0, "", ""
}

// devSource says where the new socket's device comes from when it binds a.
func (e *eval) devSource(a netip.Addr) string {
	if ZoneDev(e.op.Addr.Addr()) == e.s.Dev && NeedsScope(a) {
		return "the address's scope"
	}
	return "SO_BINDTODEVICE"
}

// joinInts lists ns as "2" or "2, 3".
func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// listen follows inet_listen and inet_csk_listen_start: a bound socket's
// port is checked again as a listener, an unbound one is autobound.
func (e *eval) listen() {
	if e.s.Proto == inet.UDP {
		e.fail(syscall.EOPNOTSUPP, "udp-listen", "UDP sockets cannot listen")
		return
	}
	if e.s.Reset {
		e.fail(syscall.EINVAL, "listen-reset", "the socket's connection was reset, and the socket layer still counts it connected: it cannot listen")
		return
	}
	switch e.s.State {
	case Listen:
		e.ok("already-listening", "the socket already listens; listen() only changes its backlog")
		return
	case Connected, TimeWait:
		e.fail(syscall.EINVAL, "listen-state", "a connected socket cannot listen")
		return
	}
	e.out.After.State = Listen
	a := e.s.Local.Addr()
	if e.s.State == Unbound || !a.IsValid() {
		a = netip.IPv6Unspecified()
		if e.fam == inet.IPv4 {
			a = netip.IPv4Unspecified()
		}
	}
	ep := normalise(e.fam, a, e.v6only)
	if e.s.State == Bound && e.s.Local.Port() != 0 {
		e.tcpExplicit(ep, e.s.Local.Port(), true)
	} else {
		e.out.After.Local = netip.AddrPortFrom(a, 0)
		e.autobind(ep, true)
	}
	if e.out.Err != 0 {
		e.out.After = e.s
	}
}

// tcpVerdict is the outcome of comparing the new socket with one owner.
type tcpVerdict uint8

const (
	tcpNoOverlap tcpVerdict = iota // different address or device
	tcpShares                      // overlaps, allowed by a reuse option
	tcpConflict
)

// tcpPair is inet_bind_conflict for owner i: relax is false in the first
// pass of a bind(0) search (any overlapping owner is a conflict),
// reuseportOK is false in all of bind(0)'s passes.
func (e *eval) tcpPair(ep endpoint, i int, relax, reuseportOK bool) (tcpVerdict, string) {
	o := e.m.socks[i]
	e.consult(i, FactDev)
	if e.s.Dev != 0 && o.Dev != 0 && e.s.Dev != o.Dev {
		return tcpNoOverlap, ""
	}
	oe := e.m.eps[i]
	if oe.class == classAny6 || oe.class == classV6 {
		if ep.class != classV6 && ep.class != classAny6 {
			e.consult(i, FactV6Only)
		}
	}
	if !overlap(ep, oe) {
		return tcpNoOverlap, ""
	}
	if e.m.host.Kernel.mappedMissesMappedWildcard() && e.fam == inet.IPv6 && ep.class == classV4 &&
		oe.class == classAnyMapped && o.Family == inet.IPv6 {
		return tcpNoOverlap, ""
	}
	n := e.s
	rp := n.ReusePort && o.ReusePort && !n.InGroup && (o.State == TimeWait || n.UID == o.UID)
	e.consult(i, FactReuseAddr)
	if n.ReuseAddr && o.ReuseAddr && o.State != Listen {
		if !relax {
			return tcpConflict, "it holds the port and a bind(0) search takes only ports nobody holds on that address"
		}
		e.consult(i, FactReusePort)
		if !reuseportOK && rp {
			return tcpConflict, "it shares SO_REUSEPORT with the new socket, and autobind does not join reuseport groups"
		}
		return tcpShares, "SO_REUSEADDR on both and it is not listening"
	}
	e.consult(i, FactReusePort)
	if reuseportOK && rp {
		if o.State == TimeWait {
			return tcpShares, "SO_REUSEPORT on both (a TIME_WAIT entry matches any uid)"
		}
		return tcpShares, "SO_REUSEPORT on both with the same uid"
	}
	if !relax {
		return tcpConflict, "it holds the port and a bind(0) search takes only ports nobody holds on that address"
	}
	if e.quiet {
		return tcpConflict, "" // Verdict: not listed
	}
	return tcpConflict, tcpConflictReason(n, o)
}

// tcpConflictReason says in plain words why neither reuse option lets the
// new socket n share the port with o: what each lacks, each socket named
// once ("the new socket lacks SO_REUSEADDR and SO_REUSEPORT").
func tcpConflictReason(n, o Socket) string {
	var why string
	switch {
	case !n.ReuseAddr && !o.ReuseAddr && !n.ReusePort && !o.ReusePort:
		why = "neither socket has SO_REUSEADDR or SO_REUSEPORT"
	case !n.ReuseAddr && o.ReuseAddr && !n.ReusePort && o.ReusePort:
		why = "the new socket lacks SO_REUSEADDR and SO_REUSEPORT"
	case !n.ReuseAddr && o.ReuseAddr && n.ReusePort && o.ReusePort && n.InGroup:
		why = "the new socket lacks SO_REUSEADDR and is already in a reuseport group"
	case n.ReuseAddr && !o.ReuseAddr && n.ReusePort && !o.ReusePort:
		why = "it lacks SO_REUSEADDR and SO_REUSEPORT"
	default:
		why = tcpReuseAddrReason(n, o) + ", and " + tcpReusePortReason(n, o)
	}
	return fmt.Sprintf("%s holds %s: %s", describe(o), o.Local, why)
}

// tcpReuseAddrReason is why SO_REUSEADDR does not let n share with o.
func tcpReuseAddrReason(n, o Socket) string {
	switch {
	case n.ReuseAddr && o.ReuseAddr:
		return "it is listening (SO_REUSEADDR never shares a port with a listener)"
	case !n.ReuseAddr && !o.ReuseAddr:
		return "neither socket has SO_REUSEADDR"
	case !n.ReuseAddr:
		return "the new socket lacks SO_REUSEADDR"
	}
	return "it lacks SO_REUSEADDR"
}

// tcpReusePortReason is why SO_REUSEPORT does not let n share with o.
func tcpReusePortReason(n, o Socket) string {
	switch {
	case !n.ReusePort && !o.ReusePort:
		return "neither has SO_REUSEPORT"
	case !n.ReusePort:
		return "the new socket lacks SO_REUSEPORT"
	case !o.ReusePort:
		return "it lacks SO_REUSEPORT"
	case n.InGroup:
		return "the new socket is already in a reuseport group"
	}
	return fmt.Sprintf("SO_REUSEPORT needs the same uid (new socket %d, owner %d)", n.UID, o.UID)
}

// tcpExplicit checks bind(addr, port) or listen() on a bound port.
func (e *eval) tcpExplicit(ep endpoint, port uint16, listen bool) {
	shared, sharedBy := 0, ""
	for _, j := range e.m.owners(inet.TCP, port) {
		i := int(j)
		v, reason := e.tcpPair(ep, i, true, true)
		switch v {
		case tcpConflict:
			e.block(i, reason)
		case tcpShares:
			shared++
			sharedBy = reason
		}
	}
	op, rule := "bind", "bind-conflict"
	if listen {
		op, rule = "listen", "listen-conflict"
	}
	if n := e.blocked; n > 0 {
		fam, a, v6only := e.fam, e.out.After.Local.Addr(), e.out.After.V6Only
		if listen {
			a, v6only = e.s.Local.Addr(), e.v6onlyNow()
		}
		if ok, cache := e.m.fastPath(e.s, fam, a, v6only, port, listen); ok {
			e.unblock()
			e.ok(cache+"-cache", fmt.Sprintf("the per-socket rules would refuse port %d, but the kernel's cached %s state for the port (set by the sockets that bound it before) skips the conflict check", port, cache))
			return
		}
		e.out.Err, e.out.Rule = syscall.EADDRINUSE, rule
		e.out.Why = fmt.Sprintf("%s() on %s port %d fails: %d socket(s) already hold the port on an overlapping address and no reuse option lets them share it", op, ep.describe(), port, n)
		return
	}
	if shared == 0 {
		e.ok("free", fmt.Sprintf("no socket holds TCP port %d on an overlapping address", port))
		return
	}
	rule = "reuseaddr"
	if strings.Contains(sharedBy, "SO_REUSEPORT") {
		rule = "reuseport"
	}
	e.ok(rule, fmt.Sprintf("%d socket(s) hold TCP port %d on an overlapping address and share it: %s", shared, port, sharedBy))
}

// udpExplicit is udp_lib_get_port's check of an explicit port. A socket
// conflicts (UCONFL) when it overlaps without SO_REUSEADDR on both; the
// kernel walks a hash chain and the first such socket decides: SO_REUSEPORT
// with the same uid lets the bind through (whatever follows), anything else
// fails it. A chain holds AF_INET6 reuseport sockets oldest first at the
// tail and all others newest first at the head, so World order (oldest bind
// first) matters here.
//
// Which chain: normally the port's whole slot (udp_lib_lport_inuse). When
// the slot holds more than ten sockets the kernel walks the secondary
// chains instead (udp_lib_lport_inuse2): the sockets bound to the new
// socket's own address, then those bound to the wildcard, each chain's
// first overlapping socket deciding; sockets bound to other addresses are
// not looked at. See udpSecondary for when.
func (e *eval) udpExplicit(ep endpoint, port uint16) {
	owners := e.m.owners(inet.UDP, port)
	crowd, secondary := e.udpSecondary(ep, port)
	if !secondary {
		e.udpChains(ep, port, [][]int{udpChain(e.m, owners, nil)}, "")
		return
	}
	own, wild := udpChainKey(ep), udpChainKey(endpoint{class: classAny4})
	inChains := func(i int) bool { k := udpChainKey(e.m.eps[i]); return k == own || k == wild }
	chains := [][]int{udpChain(e.m, owners, func(i int) bool { return udpChainKey(e.m.eps[i]) == own })}
	where := "the sockets bound to the wildcard"
	if own != wild {
		chains = append(chains, udpChain(e.m, owners, func(i int) bool { return udpChainKey(e.m.eps[i]) == wild }))
		where = "the sockets bound to " + ep.describe() + " and then those bound to the wildcard"
	}
	prefix := fmt.Sprintf("port %d's slot of the kernel's UDP hash holds %d sockets (more than 10), so bind() checks only %s (udp_lib_lport_inuse2)", port, crowd, where)
	// Sockets bound elsewhere that overlap the new one (a wildcard bind
	// on 5.10): the kernel does not look at them, and neither do the
	// facts the verdict consults.
	skipped := 0
	for _, j := range owners {
		i := int(j)
		n, o := e.s, e.m.socks[i]
		if !inChains(i) && (n.Dev == 0 || o.Dev == 0 || n.Dev == o.Dev) && overlap(ep, e.m.eps[i]) {
			skipped++
		}
	}
	if skipped > 0 {
		prefix += fmt.Sprintf(" and does not look at %d overlapping socket(s) bound to other addresses", skipped)
	}
	e.udpChains(ep, port, chains, prefix+"; ")
}

// udpChains walks the chains bind() checks, in order, each one's first
// overlapping socket deciding; prefix says which chains they are when they
// are not the port's whole slot.
func (e *eval) udpChains(ep endpoint, port uint16, chains [][]int, prefix string) {
	n := e.s
	shared, first, firstOK := 0, -1, false
	for _, chain := range chains {
		decider := -1
		for _, i := range chain {
			rel := e.udpPair(ep, i)
			if rel == udpApart {
				continue
			}
			if rel == udpReuseAddr {
				shared++
				continue
			}
			compat := rel == udpReusePort
			if decider < 0 {
				decider = i
				if first < 0 || !compat {
					first, firstOK = i, compat
				}
			}
			if compat {
				shared++
			} else {
				e.blockWhy(i, func() string { return udpConflictReason(n, e.m.socks[i]) })
			}
		}
		if decider >= 0 && !firstOK {
			break // this chain's first overlapping socket fails the bind
		}
	}
	switch {
	case first >= 0 && firstOK:
		later := e.blocked
		e.unblock()
		why := fmt.Sprintf("%s holds UDP port %d with SO_REUSEPORT and the same uid; the kernel stops at the first overlapping socket, so the bind joins it", describe(e.m.socks[first]), port)
		if later > 0 {
			why += fmt.Sprintf(" (and does not look at %d later socket(s) that would conflict)", later)
		}
		e.ok("reuseport", prefix+why)
	case first >= 0:
		e.out.Err, e.out.Rule = syscall.EADDRINUSE, "udp-conflict"
		e.out.Why = prefix + fmt.Sprintf("bind() on %s UDP port %d fails: a socket holds the port on an overlapping address and neither SO_REUSEADDR on both nor SO_REUSEPORT with the same uid applies", ep.describe(), port)
	case shared > 0:
		e.ok("reuseaddr", prefix+fmt.Sprintf("%d socket(s) hold UDP port %d on an overlapping address, all with SO_REUSEADDR like the new socket", shared, port))
	case prefix != "":
		e.ok("free", prefix+"none of the sockets it checks overlaps the new socket's address")
	default:
		e.ok("free", fmt.Sprintf("no socket holds UDP port %d on an overlapping address", port))
	}
}

// udpChain is a UDP hash chain over owners (oldest bind first) as the
// kernel builds it: each socket added at the head, except AF_INET6
// SO_REUSEPORT ones, added at the tail. in keeps only a secondary chain's
// sockets (nil: all).
func udpChain(m *Model, owners []int32, in func(int) bool) []int {
	chain := make([]int, 0, len(owners))
	for k := len(owners) - 1; k >= 0; k-- {
		i := int(owners[k])
		if o := m.socks[i]; !(o.Family == inet.IPv6 && o.ReusePort) && (in == nil || in(i)) {
			chain = append(chain, i)
		}
	}
	for _, j := range owners {
		i := int(j)
		if o := m.socks[i]; o.Family == inet.IPv6 && o.ReusePort && (in == nil || in(i)) {
			chain = append(chain, i)
		}
	}
	return chain
}

// udpChainKey is the address a socket's secondary UDP hash is taken over:
// every wildcard (0.0.0.0, ::, ::ffff:0.0.0.0) hashes alike, and an IPv4
// address like its v4-mapped form (ipv4_portaddr_hash, ipv6_portaddr_hash).
func udpChainKey(ep endpoint) endpoint {
	switch ep.class {
	case classAny4, classAny6, classAnyMapped:
		return endpoint{class: classAny4}
	}
	return endpoint{class: ep.class, addr: ep.addr}
}

// udpSecondary says whether bind() on port checks the secondary chains
// (udpExplicit), and how many sockets the port's slot holds. The slot is
// the port's in a table of Host.UDPHashSlots slots: ports equal modulo
// that share one. A wildcard bind scans the whole slot where the kernel
// has the fix of CVE-2026-31503 (Kernel.udpWildcardScansSlot); before it,
// it takes the secondary path too and checks only the wildcard's chain,
// missing every socket bound to a specific address. Not followed, since
// no table shows them: the sockets of other namespaces that hash to the
// slot, the kernel's fallback to the slot when the address's chain holds
// more sockets than the slot (possible only with such sockets), and an
// address whose chain shares a bucket with the wildcard's (one walk of
// both, in the order they were added).
func (e *eval) udpSecondary(ep endpoint, port uint16) (int, bool) {
	if e.m.host.Kernel.udpWildcardScansSlot() && udpChainKey(ep).class == classAny4 {
		return 0, false
	}
	n := e.m.udpSlotCount(port)
	return n, n > UDPCrowd
}

func udpConflictReason(n, o Socket) string {
	var parts []string
	if !(n.ReuseAddr && o.ReuseAddr) {
		parts = append(parts, "SO_REUSEADDR is not set on both")
	}
	switch {
	case !n.ReusePort || !o.ReusePort:
		parts = append(parts, "SO_REUSEPORT is not set on both")
	case n.InGroup:
		parts = append(parts, "the new socket is already in a reuseport group")
	case n.UID != o.UID:
		parts = append(parts, fmt.Sprintf("SO_REUSEPORT needs the same uid (new socket %d, owner %d)", n.UID, o.UID))
	}
	return fmt.Sprintf("%s holds %s: %s", describe(o), o.Local, strings.Join(parts, ", and "))
}
