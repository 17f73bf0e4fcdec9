package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/nat"
	"github.com/tuple-net/tuple/rules"
)

// vethInfoPeer is VETH_INFO_PEER (linux/veth.h): the peer's ifinfomsg and
// attributes inside IFLA_INFO_DATA.
const vethInfoPeer = 1

// topoWait bounds the wait for a topology's links and routes.
const topoWait = 3 * time.Second

// setupTopology starts a root helper in a namespace of its own for every
// host, joins them with veth pairs, and has each host configure its side:
// addresses, links up, forwarding, NAT rules, its default route. It returns
// once the kernel shows every link's carrier and every gateway routed.
func (s *session) setupTopology(t Topology) error {
	pids := map[string]int{}
	for _, h := range t.Hosts {
		s.host = h.Name
		root, err := s.helper(0)
		if err != nil {
			return err
		}
		if _, err := s.call(root, request{Op: "setup"}, -1); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		pids[h.Name] = root.cmd.Process.Pid
	}
	for _, l := range t.Links {
		if err := createVeth(l.B, pids[l.A], l.A, pids[l.B]); err != nil {
			return fmt.Errorf("link %s %s: %w", l.A, l.B, err)
		}
	}
	for _, h := range t.Hosts {
		req := topoRequest{Ifaces: map[string][]string{}, Forward: h.Router}
		for iface, pfx := range t.Addrs(h.Name) {
			for _, p := range pfx {
				req.Ifaces[iface] = append(req.Ifaces[iface], p.String())
			}
		}
		if h.Via.IsValid() {
			req.Via = h.Via.String()
		}
		for _, n := range t.NAT {
			if n.Router == h.Name {
				req.NAT = append(req.NAT, n.Rule)
			}
		}
		s.host = h.Name
		if _, err := s.call(s.helpers[helperKey{h.Name, 0}], request{Op: "topo", Topo: &req}, -1); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	for _, h := range t.Hosts {
		s.host = h.Name
		if _, err := s.call(s.helpers[helperKey{h.Name, 0}], request{Op: "topo-wait", Topo: &topoRequest{Via: viaString(h.Via)}}, -1); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	s.host = ""
	return nil
}

func viaString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// createVeth makes a veth pair with end nameA in the namespace of process
// pidA and nameB in pidB's, over rtnetlink from the runner: the pair is
// created in those namespaces, never in the caller's.
func createVeth(nameA string, pidA int, nameB string, pidB int) error {
	nsA, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pidA))
	if err != nil {
		return err
	}
	defer nsA.Close()
	nsB, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pidB))
	if err != nil {
		return err
	}
	defer nsB.Close()
	pae := netlink.NewAttributeEncoder()
	pae.String(unix.IFLA_IFNAME, nameB)
	pae.Uint32(unix.IFLA_NET_NS_FD, uint32(nsB.Fd()))
	peerAttrs, err := pae.Encode()
	if err != nil {
		return err
	}
	peer := append(make([]byte, unix.SizeofIfInfomsg), peerAttrs...)
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, nameA)
	ae.Uint32(unix.IFLA_NET_NS_FD, uint32(nsA.Fd()))
	ae.Nested(unix.IFLA_LINKINFO, func(li *netlink.AttributeEncoder) error {
		li.String(unix.IFLA_INFO_KIND, "veth")
		li.Nested(unix.IFLA_INFO_DATA, func(d *netlink.AttributeEncoder) error {
			d.Bytes(vethInfoPeer, peer)
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWLINK, Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
		Data:   append(make([]byte, unix.SizeofIfInfomsg), attrs...),
	})
	if err != nil {
		return fmt.Errorf("create veth %s/%s: %w", nameA, nameB, err)
	}
	return nil
}

// configureHost runs in a host's helper: addresses, links up, forwarding,
// NAT rules (nat.Apply, table tuple-nat), default route.
func configureHost(t *topoRequest) error {
	if t == nil {
		return errors.New("topo request without a topology")
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	for name, addrs := range t.Ifaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("interface %s: %w", name, err)
		}
		for _, s := range addrs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return err
			}
			if err := addAddr(c, uint32(ifc.Index), p); err != nil {
				return err
			}
		}
		if err := setUp(c, uint32(ifc.Index)); err != nil {
			return fmt.Errorf("set %s up: %w", name, err)
		}
	}
	if t.Forward {
		if err := writeSysctl("net.ipv4.ip_forward", "1"); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
	}
	if len(t.NAT) > 0 {
		if err := nat.Apply(-1, nftables.TableFamilyIPv4, t.NAT); err != nil {
			return err
		}
	}
	if t.Via != "" {
		gw, err := netip.ParseAddr(t.Via)
		if err != nil {
			return err
		}
		if err := addDefaultRoute(c, gw); err != nil {
			return err
		}
	}
	return nil
}

func addAddr(c *netlink.Conn, index uint32, p netip.Prefix) error {
	// struct ifaddrmsg: family, prefixlen, flags, scope, index.
	msg := make([]byte, unix.SizeofIfAddrmsg)
	msg[0], msg[1], msg[3] = unix.AF_INET, byte(p.Bits()), unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(msg[4:], index)
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.IFA_LOCAL, p.Addr().AsSlice())
	ae.Bytes(unix.IFA_ADDRESS, p.Addr().AsSlice())
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	if _, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWADDR, Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
		Data:   append(msg, attrs...),
	}); err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	return nil
}

func setUp(c *netlink.Conn, index uint32) error {
	// struct ifinfomsg: family, pad, type, index, flags, change.
	link := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(link[4:], index)
	binary.NativeEndian.PutUint32(link[8:], unix.IFF_UP)
	binary.NativeEndian.PutUint32(link[12:], unix.IFF_UP)
	_, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWLINK, Flags: netlink.Request | netlink.Acknowledge},
		Data:   link,
	})
	return err
}

func addDefaultRoute(c *netlink.Conn, gw netip.Addr) error {
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
	msg := make([]byte, unix.SizeofRtMsg)
	msg[0], msg[4], msg[5], msg[6], msg[7] = unix.AF_INET, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_GATEWAY, gw.AsSlice())
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	if _, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWROUTE, Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
		Data:   append(msg, attrs...),
	}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// waitTopology returns once every veth of this namespace has its carrier
// (both ends up) and, when via is set, the kernel routes a packet to a far
// address through it; it asks the kernel until then, at most topoWait.
func waitTopology(via string) error {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	var waiting string
	return pollUntil(time.Now().Add(topoWait), func() bool {
		ifs, err := net.Interfaces()
		if err != nil {
			waiting = err.Error()
			return false
		}
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			up, err := lowerUp(c, uint32(ifc.Index))
			if err != nil || !up {
				waiting = "no carrier on " + ifc.Name
				return false
			}
		}
		if via == "" {
			return true
		}
		gw, err := defaultGateway(c)
		if err != nil || gw.String() != via {
			waiting = fmt.Sprintf("no default route via %s", via)
			return false
		}
		return true
	}, func() error {
		return fmt.Errorf("topology not ready after %v: %s", topoWait, waiting)
	})
}

// lowerUp reports whether the interface has its carrier (IFF_LOWER_UP).
func lowerUp(c *netlink.Conn, index uint32) (bool, error) {
	link := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(link[4:], index)
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request},
		Data:   link,
	})
	if err != nil {
		return false, err
	}
	for _, m := range msgs {
		if len(m.Data) >= unix.SizeofIfInfomsg {
			return binary.NativeEndian.Uint32(m.Data[8:])&unix.IFF_LOWER_UP != 0, nil
		}
	}
	return false, nil
}

// defaultGateway reads the main table's default route (ip route show
// default) and returns its gateway, invalid when there is none.
func defaultGateway(c *netlink.Conn) (netip.Addr, error) {
	msg := make([]byte, unix.SizeofRtMsg)
	msg[0] = unix.AF_INET
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETROUTE, Flags: netlink.Request | netlink.Dump},
		Data:   msg,
	})
	if err != nil {
		return netip.Addr{}, err
	}
	for _, m := range msgs {
		if len(m.Data) < unix.SizeofRtMsg || m.Data[1] != 0 || m.Data[4] != unix.RT_TABLE_MAIN {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofRtMsg:])
		if err != nil {
			return netip.Addr{}, err
		}
		for ad.Next() {
			if ad.Type() == unix.RTA_GATEWAY {
				gw, _ := netip.AddrFromSlice(ad.Bytes())
				return gw, nil
			}
		}
	}
	return netip.Addr{}, nil
}

// hostAddrs lists every address of the namespace for the model's Host: lo's
// with their prefix (all of 127.0.0.0/8 is local), the others alone (/32):
// only the address itself is local, its prefix is on the link.
func hostAddrs() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(n.IP)
			ip = ip.Unmap()
			bits, _ := n.Mask.Size()
			if ifc.Flags&net.FlagLoopback == 0 {
				bits = ip.BitLen()
			}
			out = append(out, netip.PrefixFrom(ip, bits).String())
		}
	}
	return out, nil
}

// readNAT reads the NAT rules and conntrack table of the helper's
// namespace.
func readNAT() (*nat.Snapshot, error) {
	snap, err := nat.Read(context.Background())
	if err != nil {
		return nil, err
	}
	return &snap, nil
}

// helperKey names a helper: the host whose namespace it is in ("" for the
// scenario's own) and its uid.
type helperKey struct {
	host string
	uid  uint32
}

// topoRun is a running topology: each host's world, and the connections
// whose far end is a server on another host.
type topoRun struct {
	t      Topology
	worlds map[string]*world
	// peers maps a client socket's name to its connection's far end.
	peers map[string]farEnd
}

// farEnd is a connection's accepted end on another host, and the router
// (with NAT rules) it went through.
type farEnd struct {
	host   string
	child  *entry
	router string
	orig   nat.Tuple // the connection as the client sent it
}

// path is where a connect goes: the host that has the destination and
// the router between, with the router's NAT table read before the
// connection when it has rules.
type path struct {
	dst     netip.AddrPort
	dstHost string
	// unreachable: the source host has no route to dst; listener: a TCP
	// listener on dstHost takes the connection.
	unreachable bool
	listener    bool
	router      string
	out         string // the router's interface towards dstHost
	snap        *nat.Snapshot
}

// startTopology sets the topology up and reads each host's facts into a
// world of its own; main is the scenario's own namespace's world.
func (s *session) startTopology(t Topology, main *world) (map[string]*world, error) {
	if err := s.setupTopology(t); err != nil {
		return nil, err
	}
	worlds := map[string]*world{"": main}
	for _, h := range t.Hosts {
		w := newWorld()
		w.kernel, w.monoSec = main.kernel, main.monoSec
		s.host = h.Name
		if err := s.readHost(w); err != nil {
			return nil, err
		}
		worlds[h.Name] = w
	}
	s.host = ""
	s.topo = &topoRun{t: t, worlds: worlds, peers: map[string]farEnd{}}
	return worlds, nil
}

// resolvePort resolves st's @OTHER port when OTHER is a socket of another
// host (each world knows only its own sockets).
func (tr *topoRun) resolvePort(st Step, w *world) Step {
	other := st.Addr.PortOf
	if tr == nil || other == "" || w.named(other) != nil || w.lastPort[other] != 0 {
		return st
	}
	for _, ow := range tr.worlds {
		port := ow.lastPort[other]
		if e := ow.named(other); e != nil {
			port = e.sock.Local.Port()
		}
		if port != 0 {
			st.Addr.Port, st.Addr.PortOf = port, ""
			break
		}
	}
	return st
}

// closeExpect is the state closing e must reach when its peer is a server
// on another host: TIME_WAIT, as for a server in the same namespace.
func (tr *topoRun) closeExpect(e *entry) string {
	if tr == nil || e.sock.State != rules.Connected {
		return ""
	}
	if _, ok := tr.peers[e.name]; ok {
		return "TIME_WAIT"
	}
	return ""
}

// beforeStep finds where a TCP connect from a topology host goes and, when
// it crosses a router with NAT rules, reads the router's NAT table: the
// state nat.Predict starts from.
func (s *session) beforeStep(w *world, st Step, proto Proto) (*path, error) {
	if s.topo == nil || st.Host == "" || st.Kind != KindConnect || w.named(st.Sock) == nil {
		return nil, nil
	}
	t := s.topo.t
	p := &path{dst: w.port(st.Addr)}
	dst := p.dst.Addr().Unmap()
	if !t.host(st.Host).Via.IsValid() && !t.onLink(st.Host, dst) && t.Owner(dst) != st.Host && !dst.IsLoopback() {
		// No default route and no link's prefix has it: the route
		// lookup fails at once.
		p.unreachable = true
		return p, nil
	}
	p.dstHost = t.Owner(dst)
	if !proto.IsTCP() || p.dstHost == "" || p.dstHost == st.Host {
		return nil, nil
	}
	p.listener = s.topo.listening(p.dstHost, p.dst)
	if !t.linked(st.Host, p.dstHost) {
		h := t.host(st.Host)
		if !h.Via.IsValid() {
			return nil, nil
		}
		p.router = t.Owner(h.Via)
		if p.router == "" || !t.linked(p.router, p.dstHost) {
			return nil, nil // more than one hop: no prediction
		}
		p.out = p.dstHost
	}
	if p.router == "" || !slices.ContainsFunc(t.NAT, func(n NATRule) bool { return n.Router == p.router }) {
		return p, nil
	}
	snap, err := s.readNAT(p.router)
	if err != nil {
		return nil, err
	}
	p.snap = snap
	return p, nil
}

// listening reports whether a TCP listener of host accepts connections to
// dst (its address or a wildcard, on dst's port).
func (tr *topoRun) listening(host string, dst netip.AddrPort) bool {
	for _, x := range tr.worlds[host].entries {
		la := x.sock.Local.Addr().Unmap()
		if x.sock.Proto == inet.TCP && x.sock.State == rules.Listen && x.sock.Local.Port() == dst.Port() &&
			(la == dst.Addr().Unmap() || la.IsUnspecified()) {
			return true
		}
	}
	return false
}

// readNAT reads router's NAT rules and conntrack table.
func (s *session) readNAT(router string) (*nat.Snapshot, error) {
	rep, err := s.call(s.helpers[helperKey{router, 0}], request{Op: "nat"}, -1)
	if err != nil {
		return nil, fmt.Errorf("router %s: %w", router, err)
	}
	if rep.NAT == nil {
		return nil, fmt.Errorf("router %s: no NAT table read", router)
	}
	return rep.NAT, nil
}

// afterStep finishes a line across hosts. After a connect: the server on
// the far host accepts it (so a later close sees the peer close in turn),
// its source as the server saw it is the outside address, and nat's
// prediction from the table read before is set beside it. After a close:
// the far end leaves its world, and the router's conntrack entry must show
// the close (TIME_WAIT) before the next line.
func (s *session) afterStep(w *world, st Step, p *path, res *Result) error {
	if s.topo == nil {
		return nil
	}
	defer func(h string) { s.host = h }(s.host)
	switch st.Kind {
	case KindClose:
		return s.afterClose(st.Sock, res)
	case KindConnect:
		return s.afterConnect(w, st, p, res)
	}
	return nil
}

// afterClose forgets the far end of a closed connection and, when it
// went through a NAT router and left a TIME_WAIT, notes the router's
// conntrack entry.
func (s *session) afterClose(sock string, res *Result) error {
	far, ok := s.topo.peers[sock]
	if !ok {
		return nil
	}
	delete(s.topo.peers, sock)
	if dw := s.topo.worlds[far.host]; dw != nil {
		dw.remove(far.child)
	}
	if far.router == "" || !strings.Contains(res.Local, "TIME_WAIT") {
		return nil
	}
	state, err := s.waitConntrack(far.router, far.orig, "TIME_WAIT")
	if err != nil {
		return err
	}
	res.Local += "; conntrack on " + far.router + ": " + state
	return nil
}

// afterConnect adds what the topology tells of a connect across hosts:
// no route, nobody listening, the far side's accept, and the NAT's pick.
func (s *session) afterConnect(w *world, st Step, p *path, res *Result) error {
	if p == nil {
		return nil
	}
	if p.unreachable {
		s.topo.predict(res, "ENETUNREACH", fmt.Sprintf("host %s has no route to %s: no default route (via=) and no link's prefix holds it", st.Host, p.dst.Addr()))
		return nil
	}
	e := w.named(st.Sock)
	if e == nil {
		return nil
	}
	if !p.listener {
		s.topo.predict(res, "ECONNREFUSED", fmt.Sprintf("nothing listens on %s on host %s: it answers the connection request with a reset", p.dst, p.dstHost))
	}
	var outside netip.AddrPort
	if res.Kernel == "ok" {
		far, seen, err := s.acceptFar(p, e)
		if err != nil {
			return err
		}
		if far != nil {
			far.router = p.router
			far.orig = nat.Tuple{Src: e.sock.Local, Dst: p.dst}
			s.topo.peers[st.Sock] = *far
			outside = seen
		}
	}
	if p.snap == nil || e.sock.Local.Port() == 0 {
		return nil // no NAT, or a failed connect gave its port back
	}
	natPick(p, e, outside, res)
	return nil
}

// natPick sets what the NAT rules predict for e's connection beside the
// outside address the far side saw.
func natPick(p *path, e *entry, outside netip.AddrPort, res *Result) {
	pick, ok := nat.Predict(p.snap.Rules, p.snap.Flows, p.snap.Interfaces, p.out, 6,
		nat.Tuple{Src: e.sock.Local, Dst: p.dst})
	if !ok || res.Kernel != "ok" && !pick.Drop {
		// A connection the far side refused or never took shows no
		// outside address to compare.
		return
	}
	res.NAT = pick.String()
	if outside.IsValid() {
		res.Outside = outside.String()
	}
	if pick.Drop && (res.Model == "ok" || res.Model == "ECONNREFUSED") {
		// The SYN is dropped at the router: the bounded connect times
		// out, which the lab shows as EINPROGRESS.
		res.Model = "EINPROGRESS"
	}
	res.NATMismatch = !pick.Matches(outside)
	if res.Why == "" {
		res.Why = "nat: " + pick.Why
	} else {
		res.Why += "; nat: " + pick.Why
	}
}

// predict turns the rules model's ok for a connect into errno, for what
// only the topology tells (routes, the listeners of another host), with
// the reason.
func (tr *topoRun) predict(res *Result, errno, why string) {
	if res.Model != "ok" {
		return
	}
	res.Model, res.Why = errno, why
}

// acceptFar has the server on the destination host accept e's connection
// and records the accepted end in that host's world. It returns nil when
// no server of the scenario listens there.
func (s *session) acceptFar(p *path, e *entry) (*farEnd, netip.AddrPort, error) {
	dw := s.topo.worlds[p.dstHost]
	var l *entry
	for _, x := range dw.entries {
		la := x.sock.Local.Addr().Unmap()
		if x.server && x.sock.State == rules.Listen && x.sock.Local.Port() == p.dst.Port() && (la == p.dst.Addr().Unmap() || la.IsUnspecified()) {
			l = x
			break
		}
	}
	if l == nil {
		return nil, netip.AddrPort{}, nil
	}
	s.host = p.dstHost
	h, err := s.helper(l.holder)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	rep, err := s.call(h, request{Op: "accept", Sock: l.name, Proto: Proto(protoOf(l.sock)), Wait: int(s.r.wait().Milliseconds())}, -1)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	if rep.Sock == nil {
		return nil, netip.AddrPort{}, fmt.Errorf("server %s on %s: accept said nothing of the connection", l.name, p.dstHost)
	}
	local, _ := netip.ParseAddrPort(rep.Sock.Local)
	remote, _ := netip.ParseAddrPort(rep.Sock.Remote)
	ls := l.sock
	child := &entry{holder: l.holder, sock: rules.Socket{
		ID: l.name + " (child of " + e.name + ")", Proto: ls.Proto, Family: ls.Family,
		Local: local, Remote: remote, State: rules.Connected,
		V6Only: ls.V6Only, ReuseAddr: ls.ReuseAddr, ReusePort: ls.ReusePort, UID: ls.UID, Dev: ls.Dev,
	}}
	dw.entries = append(dw.entries, child)
	return &farEnd{host: p.dstHost, child: child}, unmapPort(remote), nil
}

// waitConntrack waits until router's conntrack entry for orig is in state
// (asking the kernel, at most the runner's wait) and words what it shows.
func (s *session) waitConntrack(router string, orig nat.Tuple, state string) (string, error) {
	var last string
	var lastErr error
	err := pollUntil(time.Now().Add(s.r.wait()), func() bool {
		snap, err := s.readNAT(router)
		if err != nil {
			lastErr = err
			return true
		}
		last = "gone"
		for _, f := range snap.Flows {
			if unmapPort(f.Orig.Src) == unmapPort(orig.Src) && unmapPort(f.Orig.Dst) == unmapPort(orig.Dst) {
				last = fmt.Sprintf("%s, %d s left, holds %s -> %s", f.State(), f.Timeout, f.Reply.Dst, f.Reply.Src)
				return f.State() == state
			}
		}
		return false
	}, func() error {
		return fmt.Errorf("conntrack on %s: %s -> %s did not reach %s within %v (last seen: %s)", router, orig.Src, orig.Dst, state, s.r.wait(), last)
	})
	if lastErr != nil {
		return "", lastErr
	}
	return last, err
}
