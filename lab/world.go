package lab

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// Predictor is the rules model's entry point; Run uses rules.Predict unless
// told otherwise.
type Predictor func(w rules.World, s rules.Socket, op rules.Op) rules.Outcome

// entry is one socket of the model's world: a scenario's named socket, an
// accepted child of a listener, or a TIME_WAIT left by a close.
type entry struct {
	name    string // the scenario's socket name; empty for children and TIME_WAIT
	holder  uint32 // uid of the process holding the descriptor now
	sock    rules.Socket
	twSince time.Time
	twSec   int64 // the monotonic clock's second when TIME_WAIT was seen
	// twEarliest is the earliest second the kernel's coarse clock, up to
	// a tick behind, may have stamped the entry with, when before twSec
	// (0: none).
	twEarliest int64
	// twLatest is the latest second the kernel may have stamped the
	// entry with, when after twSec (0: none).
	twLatest int64
	server   bool // a server line's socket: it accepts every connection
}

// world mirrors what the kernel holds in one scenario's namespace, updated
// from the kernel's own answers after every step, so each prediction starts
// from the truth rather than from the model's earlier guesses.
type world struct {
	host      rules.Host
	timestamp bool // net.ipv4.tcp_timestamps: loopback peers use timestamps
	entries   []*entry
	lastPort  map[string]uint16 // for @OTHER of a socket that is gone
	kernel    rules.Kernel      // whose rules the model applies
	// monoSec reads the monotonic clock's whole seconds (what kernels
	// before 6.13 compare for TIME_WAIT reuse); nil where there is none.
	monoSec func() int64
	// failed holds the errno of a socket line that failed (an option the
	// kernel does not know), for the lines of that socket after it.
	failed map[string]failedSock
	// marked is each TCP port whose bind bucket carries the mark of a
	// bind()-bound owner (rules.World.BindMarked).
	marked map[uint16]bool
}

// stampTW dates the TIME_WAIT entry closed just added with the second the
// kernel's timer gives (sec 0: keep the time seen here), and the earliest
// and latest seconds the kernel may have stamped it with (0: unknown):
// its coarse clock may have stamped it a tick behind, and the entry's
// bounds may lie in two seconds.
func (w *world) stampTW(sec, earliest, latest int64) {
	if sec <= 0 || len(w.entries) == 0 {
		return
	}
	if e := w.entries[len(w.entries)-1]; e.sock.State == rules.TimeWait {
		e.twSec = sec
		if earliest > 0 && earliest < sec {
			e.twEarliest = earliest
		}
		if latest > sec {
			e.twLatest = latest
		}
	}
}

// earliestStamps dates every TIME_WAIT entry with the earliest second the
// kernel may have stamped it with, until restore is called; ok is false
// when no entry has an earlier one.
func (w *world) earliestStamps() (restore func(), ok bool) {
	return w.restamp(func(e *entry) int64 { return e.twEarliest })
}

// latestStamps is earliestStamps with the latest second.
func (w *world) latestStamps() (restore func(), ok bool) {
	return w.restamp(func(e *entry) int64 { return e.twLatest })
}

// restamp dates every TIME_WAIT entry that has another possible second
// (stamp's, 0 for none) with it until restore is called.
func (w *world) restamp(stamp func(*entry) int64) (restore func(), ok bool) {
	var moved []*entry
	var was []int64
	for _, e := range w.entries {
		if sec := stamp(e); sec != 0 && sec != e.twSec {
			moved, was = append(moved, e), append(was, e.twSec)
			e.twSec = sec
		}
	}
	return func() {
		for i, e := range moved {
			e.twSec = was[i]
		}
	}, len(moved) > 0
}

// markBound follows the kernel's per-port bind bucket mark: set while a
// bind()-bound owner holds the port, kept until the port has no owner.
func (w *world) markBound() {
	held := map[uint16]bool{} // port -> a bind()-bound owner holds it now
	for _, e := range w.entries {
		s := e.sock
		if s.Proto != inet.TCP || s.State == rules.Unbound || s.Local.Port() == 0 {
			continue
		}
		held[s.Local.Port()] = held[s.Local.Port()] || !s.PortFromConnect
	}
	for p := range w.marked {
		if _, ok := held[p]; !ok {
			delete(w.marked, p)
		}
	}
	for p, byBind := range held {
		if byBind {
			if w.marked == nil {
				w.marked = map[uint16]bool{}
			}
			w.marked[p] = true
		}
	}
}

// failedSock is a socket whose socket line failed.
type failedSock struct {
	errno string
	sock  rules.Socket
}

func newWorld() *world {
	return &world{host: rules.DefaultHost(), timestamp: true, lastPort: map[string]uint16{}}
}

func (w *world) named(name string) *entry {
	for _, e := range w.entries {
		if e.name == name {
			return e
		}
	}
	return nil
}

func (w *world) remove(e *entry) {
	for i, x := range w.entries {
		if x == e {
			w.entries = append(w.entries[:i], w.entries[i+1:]...)
			return
		}
	}
}

// port resolves @OTHER to the port socket OTHER holds (or last held).
func (w *world) port(ep Endpoint) netip.AddrPort {
	if ep.PortOf == "" {
		return netip.AddrPortFrom(ep.Addr, ep.Port)
	}
	p := w.lastPort[ep.PortOf]
	if e := w.named(ep.PortOf); e != nil {
		p = e.sock.Local.Port()
	}
	return netip.AddrPortFrom(ep.Addr, p)
}

// predict asks the model about named socket self doing op, against every
// other socket that holds a port.
func (w *world) predict(model Predictor, self *entry, op rules.Op, now time.Time) rules.Outcome {
	rw := rules.World{Host: w.host}
	w.markBound()
	for p := range w.marked {
		rw.BindMarked = append(rw.BindMarked, p)
	}
	slices.Sort(rw.BindMarked)
	for _, e := range w.entries {
		if e == self || e.sock.State == rules.Unbound {
			continue
		}
		s := e.sock
		if s.State == rules.TimeWait {
			s.TWAge = now.Sub(e.twSince)
			s.TWSecondTicked = w.monoSec != nil && w.monoSec() > e.twSec
		}
		rw.Sockets = append(rw.Sockets, s)
	}
	s := self.sock
	s.CanBindPrivileged = self.holder == 0
	return model(rw, s, op)
}

// setHost reads the namespace's sysctls and lo's addresses into the
// model's Host. Every address of an IPv4 prefix on lo is local (the kernel
// adds a local route for the whole prefix on a loopback device: 127.0.0.0/8);
// an IPv6 address is local by itself.
func (w *world) setHost(sysctls map[string]string, addrs []string) {
	h := rules.DefaultHost()
	h.Kernel = w.kernel
	h.Local = nil
	h.AllListeners = true // the scenario made every socket of its namespace
	h.Isolated = true     // lo is the namespace's only device
	for _, s := range addrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		if p.Addr().Is6() {
			p = netip.PrefixFrom(p.Addr(), 128)
		}
		h.Local = append(h.Local, p.Masked())
	}
	num := func(k string) (int, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(sysctls[k]))
		return n, err == nil
	}
	if f := strings.Fields(sysctls["net.ipv4.ip_local_port_range"]); len(f) == 2 {
		lo, err1 := strconv.ParseUint(f[0], 10, 16)
		hi, err2 := strconv.ParseUint(f[1], 10, 16)
		if err1 == nil && err2 == nil {
			h.EphemeralRange = inet.PortRange{Lo: uint16(lo), Hi: uint16(hi)}
		}
	}
	for _, part := range strings.Split(sysctls["net.ipv4.ip_local_reserved_ports"], ",") {
		lo, hi, _ := strings.Cut(strings.TrimSpace(part), "-")
		if hi == "" {
			hi = lo
		}
		l, err1 := strconv.ParseUint(lo, 10, 16)
		u, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 == nil && err2 == nil {
			h.ReservedPorts = append(h.ReservedPorts, inet.PortRange{Lo: uint16(l), Hi: uint16(u)})
		}
	}
	if n, ok := num("net.ipv4.ip_unprivileged_port_start"); ok && n >= 0 && n <= 65536 {
		h.UnprivilegedPortStart = uint16(min(n, 65535))
	}
	if n, ok := num("net.ipv4.ip_nonlocal_bind"); ok {
		h.NonlocalBind4 = n != 0
	}
	if n, ok := num("net.ipv6.ip_nonlocal_bind"); ok {
		h.NonlocalBind6 = n != 0
	}
	if n, ok := num("net.ipv6.bindv6only"); ok {
		h.BindV6Only = n != 0
	}
	if n, ok := num("net.ipv4.ip_autobind_reuse"); ok {
		h.AutobindReuse = n != 0
	}
	if n, ok := num("net.ipv4.tcp_tw_reuse"); ok {
		h.TCPTWReuse = n
	}
	if n, ok := num("net.ipv4.tcp_tw_reuse_delay"); ok {
		h.TWReuseDelay = time.Duration(n) * time.Millisecond
	}
	if n, ok := num("net.ipv4.udp_hash_entries"); ok { // 6.2 and later
		h.UDPHashSlots = max(n, -n)
	}
	if n, ok := num("net.ipv4.tcp_timestamps"); ok {
		w.timestamp = n != 0
	}
	w.host = h
}

// sync updates a named socket's record from the kernel's answer.
func (w *world) sync(e *entry, proto Proto, st *sockState, op Kind) {
	if st == nil {
		return
	}
	s := &e.sock
	wasReset, wasState := s.Reset, s.State
	defer func() {
		// A reset socket shows TCP CLOSE and its old port (getsockname
		// reads inet_sport, which the reset leaves): the model said
		// whether it still holds the port.
		if wasReset && proto.IsTCP() && st.TCPState == tcpClose {
			s.Reset = true
			if wasState == rules.Unbound && op != KindBind {
				s.Local, s.State = netip.AddrPort{}, rules.Unbound
			}
		}
	}()
	wasPort := s.Local.Port()
	wasBound := s.State == rules.Bound && wasPort != 0 // bind() locked the port
	s.Local, _ = netip.ParseAddrPort(st.Local)
	s.Remote, _ = netip.ParseAddrPort(st.Remote)
	s.ReuseAddr, s.ReusePort, s.V6Only = st.ReuseAddr, st.ReusePort, st.V6Only
	s.BindNoPort, s.Freebind, s.Dev, s.UID = st.NoPort, st.Freebind, st.Dev, st.UID
	s.PortRange = inet.PortRange{Lo: st.RangeLo, Hi: st.RangeHi}
	switch {
	case proto.IsTCP() && st.TCPState == tcpListen:
		s.State = rules.Listen
	case proto.IsTCP() && st.TCPState == tcpTimeWait:
		s.State = rules.TimeWait
	case proto.IsTCP() && st.TCPState != tcpClose && st.TCPState != 0:
		s.State = rules.Connected
	case !proto.IsTCP() && s.Remote.IsValid() && s.Remote.Port() != 0:
		s.State = rules.Connected
	case s.Local.Port() != 0 || s.Local.Addr().IsValid() && !s.Local.Addr().Unmap().IsUnspecified():
		// Bound; with IP_BIND_ADDRESS_NO_PORT a bind leaves port 0 and the
		// address set.
		s.State = rules.Bound
	default:
		s.State = rules.Unbound
	}
	if proto.IsTCP() && op == KindConnect && st.TCPState == tcpClose && !wasBound {
		// A failed connect releases the port it picked (tcp_set_state
		// CLOSE puts it back unless bind() locked it), though getsockname
		// still shows it.
		s.Local, s.State = netip.AddrPort{}, rules.Unbound
	}
	if s.Local.Port() == 0 {
		s.PortFromConnect = false
	} else if op == KindConnect && wasPort == 0 {
		s.PortFromConnect = true // connect() picked the port
	}
	if s.Local.Port() != 0 {
		w.lastPort[e.name] = s.Local.Port()
	}
}

// connected records what a successful TCP connect leaves behind besides the
// client: the listener's child (an owner of the listener's port with the
// connection's specific address, inheriting the listener's flags), and the
// end of any TIME_WAIT the new connection took over. It returns the child
// and the listener that took the connection (nil without one: a
// self-connect); the child starts in the listener's accept queue.
func (w *world) connected(client *entry) (child, listener *entry) {
	c := client.sock
	if c.Proto != inet.TCP || !c.Remote.IsValid() {
		return nil, nil
	}
	for _, e := range w.entries {
		// The kernel took over the TIME_WAIT entry of this four-tuple
		// (__inet_check_established). Its match (inet_match) compares the
		// entry's bound device with the connecting socket's: an entry bound
		// to a device matches only a socket bound to the same one, an entry
		// bound to none matches any; an unmatched entry stays beside the
		// new connection. Addresses compare unmapped: a v4-mapped socket's
		// four-tuple is hashed as IPv4.
		tw := e.sock
		if tw.State == rules.TimeWait && tw.Proto == inet.TCP && (tw.Dev == 0 || tw.Dev == c.Dev) &&
			unmapPort(tw.Local) == unmapPort(c.Local) && unmapPort(tw.Remote) == unmapPort(c.Remote) {
			w.remove(e)
			break
		}
	}
	// The listener that took the connection: an exact address match wins
	// over a wildcard. IPv4 destinations (plain or v4-mapped) reach IPv4
	// listeners and dual-stack IPv6 ones; IPv6 destinations only IPv6 ones.
	ra := c.Remote.Addr().Unmap()
	var best *entry
	for _, e := range w.entries {
		l := e.sock
		if l.State != rules.Listen || l.Proto != inet.TCP || l.Local.Port() != c.Remote.Port() {
			continue
		}
		if ra.Is4() && l.Family == inet.IPv6 && l.V6Only || !ra.Is4() && l.Family == inet.IPv4 {
			continue
		}
		la := l.Local.Addr().Unmap()
		if la == ra {
			best = e
			break
		}
		if best == nil && la.IsUnspecified() && (la.Is4() == ra.Is4() || la.Is6()) {
			best = e
		}
	}
	if best == nil {
		return nil, nil
	}
	l := best.sock
	local, remote := unmapPort(c.Remote), unmapPort(c.Local)
	if l.Family == inet.IPv6 && local.Addr().Is4() {
		local = netip.AddrPortFrom(netip.AddrFrom16(local.Addr().As16()), local.Port())
		remote = netip.AddrPortFrom(netip.AddrFrom16(remote.Addr().As16()), remote.Port())
	}
	child = &entry{holder: best.holder, sock: rules.Socket{
		ID: best.name + " (child of " + client.name + ")", Proto: inet.TCP, Family: l.Family,
		Local: local, Remote: remote, State: rules.Connected,
		V6Only: l.V6Only, ReuseAddr: l.ReuseAddr, ReusePort: l.ReusePort, UID: l.UID, Dev: l.Dev,
		AcceptQueue: l.ID,
	}}
	w.entries = append(w.entries, child)
	return child, best
}

// peer is the entry at the other end of e's connection (e itself for a
// self-connect), or nil.
func (w *world) peer(e *entry) *entry {
	s := e.sock
	if s.State != rules.Connected {
		return nil
	}
	if unmapPort(s.Local) == unmapPort(s.Remote) {
		return e
	}
	for _, x := range w.entries {
		if x != e && x.sock.State == rules.Connected && unmapPort(x.sock.Local) == unmapPort(s.Remote) && unmapPort(x.sock.Remote) == unmapPort(s.Local) {
			return x
		}
	}
	return nil
}

// closeImplies is the state a close of e's connection must reach: TIME_WAIT
// when the peer closes in turn (a server's accepted connection, or the
// socket itself), FIN_WAIT2 when the peer is a connection no process
// accepted, "" when there is no connection to watch.
func (w *world) closeImplies(e *entry) string {
	if e.sock.Proto != inet.TCP || e.sock.State != rules.Connected || e.sock.Reset {
		return ""
	}
	p := w.peer(e)
	switch {
	case p == nil:
		return ""
	case p == e || p.name == "" && p.sock.AcceptQueue == "":
		return "TIME_WAIT"
	case p.sock.AcceptQueue != "":
		return "FIN_WAIT2"
	}
	return ""
}

// closeListener applies the model's account of closing listener l
// (rules.Model.CloseListener): its unaccepted children leave, their peers
// are reset. It returns the reset peers and the model's words.
func (w *world) closeListener(l *entry) ([]*entry, string) {
	rw := rules.World{Host: w.host}
	var idx []*entry
	for _, e := range w.entries {
		if e == l {
			continue
		}
		rw.Sockets = append(rw.Sockets, e.sock)
		idx = append(idx, e)
	}
	out := rules.NewModel(rw).CloseListener(l.sock)
	var reset []*entry
	for k, i := range out.Reset {
		idx[i].sock = out.After[k]
		reset = append(reset, idx[i])
	}
	for _, i := range out.Dropped {
		w.remove(idx[i])
	}
	return reset, out.Why
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// closed records a close: the socket leaves; a TCP connection that reached
// TIME_WAIT stays as a TIME_WAIT entry (and its accepted peer, which closed
// in turn, leaves); one stuck in another state stays as it is.
func (w *world) closed(e *entry, state string, now time.Time) {
	w.remove(e)
	if state == "" {
		return
	}
	s := e.sock
	s.ID = e.name + " (" + strings.ToLower(state) + ")"
	if state != "TIME_WAIT" {
		w.entries = append(w.entries, &entry{sock: s})
		return
	}
	s.State = rules.TimeWait
	s.TWTimestamps = w.timestamp
	tw := &entry{sock: s, twSince: now}
	if w.monoSec != nil {
		tw.twSec = w.monoSec()
	}
	w.entries = append(w.entries, tw)
	for _, x := range w.entries {
		if x.name == "" && x.sock.State == rules.Connected && x.sock.Local.Addr().Unmap() == s.Remote.Addr().Unmap() &&
			x.sock.Local.Port() == s.Remote.Port() && x.sock.Remote.Port() == s.Local.Port() {
			w.remove(x)
			break
		}
	}
}

// newEntry starts the record of a socket created by uid.
func newEntry(name string, proto Proto, uid uint32) *entry {
	s := rules.Socket{ID: name, Proto: inet.UDP, Family: inet.IPv4, UID: uid}
	if proto.IsTCP() {
		s.Proto = inet.TCP
	}
	if proto.IsIPv6() {
		s.Family = inet.IPv6
	}
	return &entry{name: name, holder: uid, sock: s}
}
