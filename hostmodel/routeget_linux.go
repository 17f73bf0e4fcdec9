package hostmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// tcpSourceFor is sourceFor for a TCP connect(): the kernel's route lookup
// asked over rtnetlink (RTM_GETROUTE, what `ip route get ... ipproto tcp`
// sends), so that policy routing by protocol counts, and with the bound
// port or none, as tcp_v4_connect and tcp_v6_connect look it up (a UDP
// socket has a port of its own by then). As ip_route_connect and
// ip6_dst_lookup_tail do, an unbound socket's source comes from a lookup
// without one, and a second lookup from that source and the port decides
// (a rule from it applies). A specific IPv4 address that is not local (a
// socket bound with IP_FREEBIND) is one the lookup refuses, not the
// connect(): its lookup is the UDP probe's.
func tcpSourceFor(peer, src netip.AddrPort, as routeSocket) (netip.Addr, error) {
	return overRtnetlink(peer, src, as, tcpSource)
}

// tcpSource is tcpSourceFor over rtnetlink connection c, for a socket
// bound to addr (invalid: none).
func tcpSource(c *netlink.Conn, peer, src netip.AddrPort, addr netip.Addr, as routeSocket) (netip.Addr, error) {
	v4 := peer.Addr().Unmap().Is4()
	lookup := connectLookup(c, peer, addr, syscall.IPPROTO_TCP, as)
	if src.Port() != 0 {
		return lookup(src.Port())
	}
	// The port bind() or connect() picks is looked up with (or once
	// more, ip_route_newports), so a rule by source port counts: judged
	// with the first port of the ephemeral range, one it may pick, as the
	// model judges a bind(0). Where a port of another class (portClasses:
	// the rules' source-port selectors split the range) ends otherwise,
	// the outcome depends on the port the kernel picks, and ResolveSource
	// says so.
	rng := ephemeralRange()
	sels, serr := ruleSelectors(c, v4, syscall.IPPROTO_TCP, peer.Port())
	ports := portClasses(rng, sels)
	if serr != nil && rng.Hi != rng.Lo {
		ports = []uint16{rng.Lo, rng.Hi} // the rules unread: the range's ends
	}
	if len(ports) == 0 {
		ports = []uint16{rng.Lo}
	}
	if addr.IsValid() || as.portAtBind {
		// The port is the socket's before connect() looks up (bind
		// took it): every lookup is made with it.
		return lookupEachPort(rng, ports, lookup)
	}
	// An unbound socket's source comes from a lookup without a port;
	// connect() then takes a port and looks up once more from both.
	chosen, err := pickSource(c, peer, 0, syscall.IPPROTO_TCP, as)
	if err != nil {
		return netip.Addr{}, err
	}
	_, err = lookupEachPort(rng, ports, connectLookup(c, peer, chosen, syscall.IPPROTO_TCP, as))
	return chosen, err
}

// connectLookup returns the route lookups of a connect() for protocol proto
// to peer from a socket bound to addr (invalid: none) and to the port they
// are given, as ip_route_connect makes them: where the socket has no
// address, a first lookup picks one, and a second decides from it.
func connectLookup(c *netlink.Conn, peer netip.AddrPort, addr netip.Addr, proto uint8, as routeSocket) func(port uint16) (netip.Addr, error) {
	return func(port uint16) (netip.Addr, error) {
		from := addr
		if !from.IsValid() {
			var err error
			if from, err = pickSource(c, peer, port, proto, as); err != nil {
				return netip.Addr{}, err
			}
		}
		return routeGet(c, peer, netip.AddrPortFrom(from, port), proto, as)
	}
}

// pickSource is the source address the kernel picks for a connect() to
// peer from port (0: none) of a socket with no address: ip_route_connect's
// first lookup.
func pickSource(c *netlink.Conn, peer netip.AddrPort, port uint16, proto uint8, as routeSocket) (netip.Addr, error) {
	chosen, err := routeGet(c, peer, netip.AddrPortFrom(netip.Addr{}, port), proto, as)
	if err == nil && !chosen.IsValid() {
		err = fmt.Errorf("route lookup for %s: the kernel named no source address", peer.Addr())
	}
	return chosen, err
}

// udpSourceFor is sourceFor for a UDP connect(). A socket with no port of
// its own yet is given one first (inet_autobind), drawn from the ephemeral
// range, and the route is looked up from it (ip_route_connect: once
// without the source address where the socket has none, then from the one
// that lookup picked), so a rule by source port (ip rule sport) sees the
// port drawn. Where the rules split the range (portClasses), the lookups
// are made as tcpSourceFor's, over rtnetlink from one port of each class
// (no port has to be free for them), the range's first judging; otherwise
// the probe's one connect() tells, or, where the probe cannot be the
// socket (its port held by another socket, or its mark refused: SO_MARK
// takes CAP_NET_ADMIN), one lookup over rtnetlink, which needs neither. A
// source the kernel does not take as local (bound with IP_FREEBIND) is
// only the probe's (sourceFor).
func udpSourceFor(peer, src netip.AddrPort, as routeSocket) (netip.Addr, error) {
	return overRtnetlink(peer, src, as, udpSource)
}

// udpSource is udpSourceFor over rtnetlink connection c, for a socket
// bound to addr (invalid: none).
func udpSource(c *netlink.Conn, peer, src netip.AddrPort, addr netip.Addr, as routeSocket) (netip.Addr, error) {
	lookup := connectLookup(c, peer, addr, syscall.IPPROTO_UDP, as)
	var rng inet.PortRange // read only for a socket with no port yet
	if src.Port() == 0 {
		rng = ephemeralRange()
		sels, serr := ruleSelectors(c, peer.Addr().Unmap().Is4(), syscall.IPPROTO_UDP, peer.Port())
		if ports := portClasses(rng, sels); serr == nil && len(ports) > 1 {
			return lookupEachPort(rng, ports, lookup)
		}
	}
	probed, err := probeSource(peer, src, as)
	var se *os.SyscallError
	held := src.Port() != 0 && errors.As(err, &se) && se.Syscall == bindProbeCall
	if held || (as.mark != 0 && errors.Is(err, syscall.EPERM)) {
		// The probe cannot be the socket: its port is held (or
		// privileged to the caller), or its mark refused. Looked up
		// from the socket's port, or one it may draw (no rule by port
		// splits the range).
		port := src.Port()
		if port == 0 {
			port = rng.Lo
		}
		return lookup(port)
	}
	return probed, err
}

// overRtnetlink calls resolve with one rtnetlink connection for all of a
// connect()'s lookups and the address its socket is bound to (lookupSource);
// a source the kernel does not take as local is the probe's (sourceFor).
func overRtnetlink(peer, src netip.AddrPort, as routeSocket,
	resolve func(c *netlink.Conn, peer, src netip.AddrPort, addr netip.Addr, as routeSocket) (netip.Addr, error)) (netip.Addr, error) {
	c, err := dialRoute()
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	addr, local := lookupSource(c, peer, src)
	if !local {
		return sourceFor(peer, src, as)
	}
	return resolve(c, peer, src, addr, as)
}

// dialRoute opens an rtnetlink connection for route lookups and rules.
func dialRoute() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	return c, nil
}

// lookupSource is the address a connect() to peer from a socket bound to
// src is looked up from: src's when it is a specific address of peer's
// family, else none (invalid). local is false for an IPv4 address the
// kernel does not take as one of its own (bound with IP_FREEBIND): a
// lookup over c refuses it, not the connect(), so only the probe
// (sourceFor) looks it up.
func lookupSource(c *netlink.Conn, peer, src netip.AddrPort) (addr netip.Addr, local bool) {
	addr = src.Addr().Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.Is4() != peer.Addr().Unmap().Is4() {
		return netip.Addr{}, true
	}
	return addr, !addr.Is4() || isLocal4(c, addr)
}

// lookupEachPort makes a connect()'s route lookup with lookup from each of
// ports, one of each class the ephemeral range rng is split into, and
// returns the first port's outcome; a *byPort error (carrying it) when
// another port's ends otherwise.
func lookupEachPort(rng inet.PortRange, ports []uint16, lookup func(port uint16) (netip.Addr, error)) (netip.Addr, error) {
	addr, err := lookup(ports[0])
	bp := &byPort{rng: rng, judged: lookupErrno(err), err: err}
	for _, p := range ports[1:] {
		_, perr := lookup(p)
		errno := lookupErrno(perr)
		if errno != bp.judged && bp.other == 0 {
			bp.other, bp.otherErr = p, errno
		}
		if errno == 0 && bp.judged != 0 {
			bp.pass = p // the last class's that passes: the range's end where it does
		}
	}
	if bp.other != 0 {
		return addr, bp
	}
	return addr, err
}

// sportSelectors reads the calling thread's network namespace's policy
// routing rules of the family (RTM_GETRULE, what `ip rule` lists) and
// returns the source-port selectors of those that can match a lookup for
// protocol proto to port dport.
func sportSelectors(v4 bool, proto uint8, dport uint16) ([]portSelector, error) {
	c, err := dialRoute()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return ruleSelectors(c, v4, proto, dport)
}

// ruleSelectors is sportSelectors over rtnetlink connection c.
func ruleSelectors(c *netlink.Conn, v4 bool, proto uint8, dport uint16) ([]portSelector, error) {
	hdr := make([]byte, fibRuleHdrLen)
	hdr[0] = syscall.AF_INET
	if !v4 {
		hdr[0] = syscall.AF_INET6
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETRULE, Flags: netlink.Request | netlink.Dump},
		Data:   hdr,
	})
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	var sels []portSelector
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWRULE {
			continue
		}
		r, err := parseRulePorts(m.Data)
		if err != nil {
			return nil, err
		}
		if r.sport.set() && r.concerns(proto, dport) {
			sels = append(sels, r.sport)
		}
	}
	return sels, nil
}

// ephemeralRange is the calling thread's network namespace's ephemeral
// port range, the zero range when it cannot be read.
func ephemeralRange() inet.PortRange {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return inet.PortRange{}
	}
	rng, err := ParsePortRange(b)
	if err != nil {
		return inet.PortRange{}
	}
	return rng
}

// isLocal4 reports whether the kernel takes addr as one of this host's
// (an RTN_LOCAL route, as inet_addr_type judges a source); when it cannot
// tell, no: the UDP probe, bound with IP_FREEBIND, then looks it up.
func isLocal4(c *netlink.Conn, addr netip.Addr) bool {
	b, err := routeRequest(c, netip.AddrPortFrom(addr, 0), netip.AddrPort{}, 0, nil)
	if err != nil {
		return false
	}
	r, err := parseRoute(b)
	return err == nil && r.typ == syscall.RTN_LOCAL
}

// routeGet looks up the route to peer from src (its address, when valid,
// and its port, when not 0) for protocol proto and socket as (out of a
// scoped peer's zone when as has no device), over rtnetlink connection c,
// and returns the source address the kernel picked: src's own when given.
func routeGet(c *netlink.Conn, peer, src netip.AddrPort, proto uint8, as routeSocket) (netip.Addr, error) {
	if as.dev == 0 {
		as.dev = rules.ZoneDev(peer.Addr())
	}
	b, err := routeRequest(c, peer, src, proto, &as)
	if err == nil {
		var r routeReply
		if r, err = parseRoute(b); err == nil {
			if src.Addr().IsValid() {
				return src.Addr(), nil
			}
			return r.prefSrc, nil
		}
	}
	return netip.Addr{}, &lookupFrom{src, err}
}

// routeRequest sends one RTM_GETROUTE over c (an rtnetlink connection:
// its namespace is the one asked) for socket as (nil: none, the
// caller's), and returns the route message that answers it (rtmsg and
// attributes); a lookup that fails returns its errno (errors.Is works),
// wrapped.
func routeRequest(c *netlink.Conn, peer, src netip.AddrPort, proto uint8, as *routeSocket) ([]byte, error) {
	dst := peer.Addr().Unmap()
	family, bits := byte(syscall.AF_INET), byte(32)
	if !dst.Is4() {
		family, bits = syscall.AF_INET6, 128
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_DST, dst.AsSlice())
	srcBits := byte(0)
	if a := src.Addr().Unmap(); a.IsValid() {
		ae.Bytes(unix.RTA_SRC, a.AsSlice())
		srcBits = bits
	}
	if as != nil {
		if as.dev != 0 {
			ae.Uint32(unix.RTA_OIF, uint32(as.dev))
		}
		ae.Uint32(unix.RTA_UID, as.uid) // ip rule uidrange
		if as.mark != 0 {
			ae.Uint32(unix.RTA_MARK, as.mark) // ip rule fwmark
		}
	}
	if proto != 0 {
		ae.Uint8(unix.RTA_IP_PROTO, proto)
		if src.Port() != 0 {
			ae.Bytes(unix.RTA_SPORT, binary.BigEndian.AppendUint16(nil, src.Port())) // nla_get_be16
		}
		port := peer.Port()
		if port == 0 {
			port = 9 // a lookup by port needs one: discard
		}
		ae.Bytes(unix.RTA_DPORT, binary.BigEndian.AppendUint16(nil, port))
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("route lookup request: %w", err)
	}
	// struct rtmsg: family, dst_len, src_len, then fields the lookup
	// leaves 0 (tos, table, protocol, scope, type, flags).
	rtm := make([]byte, rtmsgLen, rtmsgLen+len(attrs))
	rtm[0], rtm[1], rtm[2] = family, bits, srcBits
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETROUTE, Flags: netlink.Request},
		Data:   append(rtm, attrs...),
	})
	if err != nil {
		return nil, fmt.Errorf("route lookup: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type == unix.RTM_NEWROUTE {
			return m.Data, nil
		}
	}
	return nil, fmt.Errorf("route lookup: no route in the kernel's %d messages", len(msgs))
}

// routeReply is what a route lookup's answer tells: the route's type
// (RTN_LOCAL for a local destination) and the source address the kernel
// picked (RTA_PREFSRC; none when the request named one).
type routeReply struct {
	typ     byte
	prefSrc netip.Addr
}

// parseRoute reads a route message (struct rtmsg, then attributes): the
// route's type and the source address the kernel picked.
func parseRoute(b []byte) (routeReply, error) {
	if len(b) < rtmsgLen {
		return routeReply{}, fmt.Errorf("route lookup reply: a message of %d bytes, shorter than rtmsg", len(b))
	}
	r := routeReply{typ: b[7]}
	attrs, err := routeAttrs(b[rtmsgLen:])
	if err != nil {
		return routeReply{}, fmt.Errorf("route lookup reply: %w", err)
	}
	for _, a := range attrs {
		if a.typ != unix.RTA_PREFSRC {
			continue
		}
		addr, ok := netip.AddrFromSlice(a.value)
		if !ok || addr.Is4() != (b[0] == syscall.AF_INET) {
			return routeReply{}, fmt.Errorf("route lookup reply: a source of %d bytes for family %d", len(a.value), b[0])
		}
		r.prefSrc = addr
	}
	return r, nil
}
