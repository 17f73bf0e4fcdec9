package hostmodel

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/prefault"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// timeWaitLen is TCP_TIMEWAIT_LEN: a TIME_WAIT entry lives 60 s, so its age
// is 60 s minus the time its timer has left.
const timeWaitLen = 60 * time.Second

// Entry is one existing socket: the model's view plus what a person needs to
// find it (its owners and, for TIME_WAIT, the time left).
type Entry struct {
	Socket   rules.Socket
	Inode    uint64 // the socket's inode, 0 for TIME_WAIT entries
	Owners   []socktab.Owner
	TimeLeft time.Duration // TIME_WAIT: until the entry goes away
	// Assumed says, per unknown fact, what was assumed and why it was not
	// known, e.g. "SO_REUSEPORT assumed off: owner's descriptor not readable".
	Assumed []string

	// accepted: a connection accepted from a listener of this table.
	accepted bool

	// The kernel's bind bucket of the port (TCP, from sockfacts).
	bucketKnown bool
	bucket      sockfacts.Bucket
}

// Situation is everything the model judges an operation against, with the
// socket table's entries kept parallel to World.Sockets.
type Situation struct {
	Host    rules.Host
	Entries []Entry
	Notes   []string // what could not be read (from socktab and the host)
	// Buckets are TCP ports' bind buckets as the kernel holds them (from
	// sockfacts), which replace the model's reconstruction from owners.
	Buckets []rules.Bucket
	// Model judges operations; nil means rules.Predict.
	Model Model

	indexed *rules.Model // the world indexed once, see predict
	// udpMixedPorts are the UDP ports whose chain holds IPv4 and IPv6
	// sockets the table cannot order between them (udpFamilyOrders),
	// found once, see predict; udpOrders their two orders' models.
	udpMixedPorts map[uint16]bool
	udpOrders     map[uint16][2]*rules.Model
	ownersRead    bool          // Entries carry their owners (see Live)
	query         socktab.Query // how Live read the table
}

// World returns the model's world.
func (s *Situation) World() rules.World {
	w := rules.World{Host: s.Host, Sockets: make([]rules.Socket, len(s.Entries)), Buckets: s.Buckets}
	prefault.Slice(w.Sockets)
	for i, e := range s.Entries {
		w.Sockets[i] = e.Socket
	}
	return w
}

// FromTable converts a socket table into the model's sockets. Sockets that
// own no port (request sockets, TCP sockets closed without a port) are
// left out, as the kernel does. facts, when not nil, are the kernel's own
// records (sockfacts) and take precedence over everything else.
func FromTable(host rules.Host, t *socktab.Table, facts *Facts) *Situation {
	sit := &Situation{Host: host}
	if t == nil {
		return sit
	}
	sit.Entries = make([]Entry, 0, len(t.Sockets))
	prefault.Slice(sit.Entries) // one call, not a fault per page (a port's thousands of connections)
	sit.Notes = append(sit.Notes, t.Notes...)
	sit.Buckets = eachEntry(host, t, facts, true, func(_ *socktab.Socket, e *Entry) {
		sit.Entries = append(sit.Entries, *e)
	})
	udpBindOrder(sit.Entries) // the table lists UDP sockets in the kernel's chain order
	return sit
}

// EachEntry converts t as FromTable does, row by row, handing each entry to
// fn (valid during the call only) instead of keeping them all, and returns
// the kernel's bind buckets of the TCP ports met. It is for callers that
// keep only part of an entry (the ports budget): the entries carry no ID.
func EachEntry(host rules.Host, t *socktab.Table, facts *Facts, fn func(s *socktab.Socket, e *Entry)) []rules.Bucket {
	if t == nil {
		return nil
	}
	return eachEntry(host, t, facts, false, fn)
}

func eachEntry(host rules.Host, t *socktab.Table, facts *Facts, ids bool, fn func(*socktab.Socket, *Entry)) []rules.Bucket {
	// convert looks only at listeners in its table argument (to recognise
	// accepted children); passing just them keeps big tables linear.
	var listeners []socktab.Socket
	for i := range t.Sockets {
		if s := &t.Sockets[i]; s.Proto == inet.TCP && s.State == socktab.Listen {
			listeners = append(listeners, *s)
		}
	}
	// The kernel's bind buckets go to the model as they are: it decides
	// from them whether connect() may share a port (rules.World.Buckets).
	var buckets []rules.Bucket
	var seen [65536 / 64]uint64
	// Only inet_diag gives a listener's backlog: /proc/net/tcp's tx_queue
	// of a listener is always 0.
	queues := t.Source == "netlink"
	// One entry for every call of fn: fn may keep its address only during
	// the call, and a variable of the loop's own would be a heap object
	// per socket.
	var e Entry
	for i := range t.Sockets {
		s := &t.Sockets[i]
		var ok bool
		e, ok = convert(host, s, listeners, facts.Lookup(s), ids)
		if !ok {
			continue
		}
		e.Socket.BacklogKnown = e.Socket.BacklogKnown && queues
		if port := e.Socket.Local.Port(); e.bucketKnown && e.Socket.Proto == inet.TCP && seen[port/64]&(1<<(port%64)) == 0 {
			seen[port/64] |= 1 << (port % 64)
			buckets = append(buckets, bucketOf(port, e.bucket))
		}
		fn(s, &e)
	}
	return buckets
}

// bucketOf is the kernel's bind bucket of port in the model's terms.
func bucketOf(port uint16, b sockfacts.Bucket) rules.Bucket {
	return rules.Bucket{Port: port, FastReuse: b.FastReuse, FastReusePort: b.FastReusePort,
		FastUID: b.FastUID, FastFamily: b.FastFamily, FastAddr: b.FastAddr, FastV6Only: b.FastV6Only}
}

// FromRecord converts the kernel's record of a TCP socket (sockfacts,
// with its uid, device and inode) into the model's socket without a socket
// table row: every fact is the kernel's, as in FromTable for a row with a
// record. timeLeft is a TIME_WAIT entry's time until it expires (the
// socket table's), which gives its age. The second result is the port's
// bind bucket when the record carries it (rules.World.Buckets; Port 0
// when it does not). It reports false for sockets that own no port. It is
// for callers that read only the kernel's records (the ports budget) and
// keep no table.
func FromRecord(k *sockfacts.Sock, timeLeft time.Duration) (rules.Socket, rules.Bucket, bool) {
	if k.Proto != inet.TCP || k.Local.Port() == 0 || (k.Family != inet.IPv4 && k.Family != inet.IPv6) {
		return rules.Socket{}, rules.Bucket{}, false
	}
	st, ok := modelState(k.Proto, socktab.State(k.State), k.Remote)
	if !ok {
		return rules.Socket{}, rules.Bucket{}, false
	}
	r := rules.Socket{Proto: k.Proto, Family: k.Family, Local: k.Local, Remote: k.Remote, UID: k.UID, Dev: k.Dev, State: st,
		ReuseAddr: k.ReuseAddr, ReusePort: k.ReusePort, V6Only: k.Family == inet.IPv6 && k.V6Only}
	if st == rules.TimeWait {
		r.TWAge = max(timeWaitLen-timeLeft, 0)
		r.TWTimestamps = k.Timestamps
		r.TWFinWait2 = k.FinWait2
	}
	if st == rules.Connected || st == rules.TimeWait {
		// Known from 6.17 (sk_userlocks, tw_connect_bind); before, the
		// record cannot say (ports.Reader does not use records there).
		r.PortFromConnect = k.ConnectBind
		if !k.ConnectBindKnown {
			r.Unknown |= rules.FactPortOrigin
			r.UnknownReason = "the kernel records which ports connect() picked from 6.17"
		}
	}
	if !k.BucketKnown {
		return r, rules.Bucket{}, true
	}
	return r, bucketOf(k.Local.Port(), k.Bucket), true
}

// convert turns one socket table row into the model's socket. all is the
// table's listeners (or the whole table), used to recognise accepted
// children by their listener; kf is the kernel's record of the socket, nil
// when there is none; ids says whether to label the socket
// (rules.Socket.ID). It reports false for sockets that own no port.
func convert(host rules.Host, s *socktab.Socket, all []socktab.Socket, kf *sockfacts.Sock, ids bool) (Entry, bool) {
	if s.Local.Port() == 0 {
		return Entry{}, false
	}
	r := rules.Socket{
		Local:  s.Local,
		Remote: s.Remote,
		UID:    s.UID,
		Dev:    s.Dev,
	}
	if (s.Proto != inet.TCP && s.Proto != inet.UDP) || (s.Family != inet.IPv4 && s.Family != inet.IPv6) {
		return Entry{}, false
	}
	r.Proto, r.Family = s.Proto, s.Family
	st, ok := modelState(s.Proto, s.State, s.Remote)
	if !ok {
		return Entry{}, false
	}
	if s.Proto == inet.TCP && s.State == socktab.FinWait2 && (kf != nil && kf.TimeWait || kf == nil && s.Inode == 0) {
		// inet_diag shows the TIME_WAIT entry of an orphan that never
		// got its peer's FIN by its substate; it holds the port as a
		// TIME_WAIT entry. Without the kernel's record, no inode says
		// orphan, and orphans in FIN_WAIT2 become such entries at once
		// while tcp_fin_timeout is at most 60 s (the default).
		st, r.TWFinWait2 = rules.TimeWait, true
	}
	if ids {
		r.ID = socketID(s)
	}
	r.State = st
	if st == rules.Listen && s.Proto == inet.TCP {
		// A listener's accept queue and backlog (inet_diag's; eachEntry
		// forgets them for a table read from /proc).
		r.Waiting, r.Backlog, r.BacklogKnown = s.RecvQ, s.SendQ, true
	}
	e := Entry{Owners: s.Owners, Inode: s.Inode}
	parent := listenerOf(s, all)
	e.accepted = st == rules.Connected && parent != nil
	if st == rules.TimeWait {
		e.TimeLeft = s.TimeLeft
		r.TWAge = max(timeWaitLen-s.TimeLeft, 0)
	}
	if kf != nil {
		// The kernel's own record: every fact it has is exact.
		e.bucketKnown, e.bucket = kf.BucketKnown, kf.Bucket
		r.ReuseAddr, r.ReusePort = kf.ReuseAddr, kf.ReusePort
		r.V6Only = r.Family == inet.IPv6 && kf.V6Only
		r.TWTimestamps = st == rules.TimeWait && kf.Timestamps
		switch {
		case st == rules.Bound || st == rules.Listen:
		case kf.ConnectBindKnown:
			r.PortFromConnect = kf.ConnectBind
		default:
			r.PortFromConnect = portFromConnect(host, s, parent, &e, &r)
		}
		e.Socket = r
		return e, true
	}
	if st == rules.TimeWait {
		// ts_recent_stamp is not in inet_diag. Linux peers send
		// timestamps by default (net.ipv4.tcp_timestamps=1).
		r.TWTimestamps = true
		e.assume(&r, rules.FactTimestamps, "peer timestamps assumed on (Linux's default); inet_diag does not show them for TIME_WAIT")
	}

	reuse := func(fact rules.Fact, name string, live socktab.Bool, inherited func(*socktab.Socket) socktab.Bool) bool {
		if live.Known {
			return live.Value
		}
		if parent != nil && inherited(parent).Known {
			// Accepted children and their TIME_WAIT entries inherit the
			// listener's reuse flags.
			return inherited(parent).Value
		}
		e.assume(&r, fact, fmt.Sprintf("%s assumed off (%s)", name, reasonOr(live.Reason, "not readable")))
		return false
	}
	r.ReuseAddr = reuse(rules.FactReuseAddr, "SO_REUSEADDR", s.Options.ReuseAddr, func(p *socktab.Socket) socktab.Bool { return p.Options.ReuseAddr })
	r.ReusePort = reuse(rules.FactReusePort, "SO_REUSEPORT", s.Options.ReusePort, func(p *socktab.Socket) socktab.Bool { return p.Options.ReusePort })
	r.V6Only = v6only(host, s, parent, &e, &r)
	r.PortFromConnect = portFromConnect(host, s, parent, &e, &r)
	if r.Unknown != 0 {
		r.UnknownReason = unknownReason(s)
	}
	e.Socket = r
	return e, true
}

// unknownReason is why facts of s could not be read, in a few words.
func unknownReason(s *socktab.Socket) string {
	for _, b := range []socktab.Bool{s.Options.ReuseAddr, s.Options.ReusePort, s.Options.V6Only} {
		if !b.Known && b.Reason != "" {
			return b.Reason
		}
	}
	if s.State == socktab.TimeWait {
		return "TIME_WAIT entries have no descriptor"
	}
	return "not reported by inet_diag"
}

// assume marks fact unknown on r and records what was assumed.
func (e *Entry) assume(r *rules.Socket, fact rules.Fact, what string) {
	r.Unknown |= fact
	e.Assumed = append(e.Assumed, what)
}

// modelState maps the kernel's state to what the port rules distinguish.
func modelState(proto inet.Proto, state socktab.State, remote netip.AddrPort) (rules.State, bool) {
	if proto == inet.UDP {
		if state == socktab.Close || !remote.Addr().IsValid() || remote.Port() == 0 {
			return rules.Bound, true
		}
		return rules.Connected, true
	}
	switch state {
	case socktab.Listen:
		return rules.Listen, true
	case socktab.TimeWait:
		return rules.TimeWait, true
	case socktab.BoundInactive, socktab.Close:
		return rules.Bound, true
	case socktab.NewSynRecv:
		return 0, false // request sockets own no port
	}
	return rules.Connected, true
}

// listenerOf returns the listener a connected TCP socket was accepted from:
// a listener on the same port whose address covers the socket's local
// address. Only accepted children share a listener's port without holding
// SO_REUSEPORT with it, so the match is exact for sockets without that flag.
func listenerOf(s *socktab.Socket, all []socktab.Socket) *socktab.Socket {
	if s.Proto != inet.TCP || s.State == socktab.Listen || s.State == socktab.BoundInactive || s.State == socktab.Close {
		return nil
	}
	for i := range all {
		l := &all[i]
		if l.Proto != inet.TCP || l.State != socktab.Listen || l.Local.Port() != s.Local.Port() || l.Dev != 0 && l.Dev != s.Dev {
			continue
		}
		la, sa := l.Local.Addr(), s.Local.Addr()
		switch {
		case la == sa:
		case la.Unmap().IsUnspecified() && la.Is4() == sa.Is4(): // same family wildcard
		case la.Is6() && la.IsUnspecified() && sa.Is4In6(): // :: listener, v4 client
		case la.Is6() && la.IsUnspecified() && s.Family == inet.IPv6:
		default:
			continue
		}
		return l
	}
	return nil
}

// v6only returns the socket's IPV6_V6ONLY: the kernel's report, the live
// option, the forced value of a bind to a specific IPv6 address, or the
// listener's for an accepted child; otherwise net.ipv6.bindv6only, stated.
func v6only(host rules.Host, s, parent *socktab.Socket, e *Entry, r *rules.Socket) bool {
	if s.Family != inet.IPv6 {
		return false
	}
	a := s.Local.Addr()
	switch {
	case a.Is4In6():
		return false // a v6only socket cannot hold a v4-mapped address
	case s.V6Only.Known:
		return s.V6Only.Value
	case s.Options.V6Only.Known:
		return s.Options.V6Only.Value
	case parent != nil && parent.Family == inet.IPv6 && parent.V6Only.Known:
		return parent.V6Only.Value
	case parent != nil && parent.Family == inet.IPv6 && parent.Options.V6Only.Known:
		return parent.Options.V6Only.Value
	case r.State == rules.Bound || r.State == rules.Listen:
		if !a.IsUnspecified() {
			return true // bind to a specific IPv6 address forces it on
		}
	}
	e.assume(r, rules.FactV6Only, fmt.Sprintf("IPV6_V6ONLY assumed %s (net.ipv6.bindv6only; %s)",
		onOff(host.BindV6Only), reasonOr(s.Options.V6Only.Reason, "not readable")))
	return host.BindV6Only
}

// portFromConnect says whether the socket's port was picked by connect().
// Bound sockets and listeners got theirs from bind()/listen(); an accepted
// child shares its listener's port. For other connected sockets inet_diag
// does not tell; the assumption is that a port inside the ephemeral range
// came from connect() and one outside it from bind().
func portFromConnect(host rules.Host, s, parent *socktab.Socket, e *Entry, r *rules.Socket) bool {
	switch {
	case r.State == rules.Bound || r.State == rules.Listen:
		return false
	case parent != nil:
		return false
	case r.Proto == inet.TCP && s.Options.BindAddressNoPort.Known && s.Options.BindAddressNoPort.Value:
		return true // bound with IP_BIND_ADDRESS_NO_PORT: connect() picked the port
	}
	in := host.EphemeralRange.Contains(s.Local.Port())
	how := "bind()"
	if in {
		how = "connect()"
	}
	e.assume(r, rules.FactPortOrigin, fmt.Sprintf("port %d assumed picked by %s (it is %s the ephemeral range; the kernel does not report where a port came from)",
		s.Local.Port(), how, map[bool]string{true: "inside", false: "outside"}[in]))
	return in
}

func socketID(s *socktab.Socket) string {
	// Built with Append calls: it runs once per socket of the table.
	b := make([]byte, 0, 64)
	b = append(b, s.Proto.String()...)
	b = append(b, ' ')
	b = s.Local.AppendTo(b)
	if s.Remote.Port() != 0 {
		b = append(b, "->"...)
		b = s.Remote.AppendTo(b)
	}
	return string(b)
}

func reasonOr(r, def string) string {
	if r == "" {
		return def
	}
	return r
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
