package rules

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
)

func isolated(h *Host)   { h.AllListeners, h.Isolated = true, true }
func devLo(s *Socket)    { s.Dev = LoopbackIndex }
func fromConn(s *Socket) { s.PortFromConnect = true }

// conn is a connected TCP socket local -> remote.
func conn(fam inet.Family, local, remote string) Socket {
	return Socket{Proto: inet.TCP, Family: fam, Local: ap(local), Remote: ap(remote), State: Connected}
}

// tw is a TIME_WAIT entry local -> remote, aged past any reuse delay.
func tw(local, remote string, f ...func(*Socket)) Socket {
	s := Socket{Proto: inet.TCP, Family: inet.IPv4, Local: ap(local), Remote: ap(remote), State: TimeWait, TWAge: time.Hour}
	for _, g := range f {
		g(&s)
	}
	return s
}

func listener(fam inet.Family, local string) Socket { return tcp(fam, local, Listen) }

func TestConnectPeerClasses(t *testing.T) {
	lis := listener(inet.IPv4, "127.0.0.1:5000")
	lis6 := listener(inet.IPv6, "[::1]:5002")
	bound10 := with(tcp(inet.IPv4, "10.9.0.1:40000", Bound), func(s *Socket) {})
	runCases(t, []ruleCase{
		// Wildcard destinations are this host.
		{name: "0.0.0.0 reaches 127.0.0.1", host: isolated, have: []Socket{lis}, s: newTCP(inet.IPv4), op: connect("0.0.0.0:5000"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "0.0.0.0 without a listener", host: isolated, have: []Socket{lis}, s: newTCP(inet.IPv4), op: connect("0.0.0.0:5001"),
			want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
		{name: "0.0.0.0 from a bound socket reaches its own address", host: isolated, have: []Socket{lis}, s: bound10, op: connect("0.0.0.0:5000"),
			want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
		{name: ":: reaches ::1, not 127.0.0.1", host: isolated, have: []Socket{lis}, s: newTCP(inet.IPv6), op: connect("[::]:5000"),
			want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
		{name: ":: reaches a ::1 listener", host: isolated, have: []Socket{lis6}, s: newTCP(inet.IPv6), op: connect("[::]:5002"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: ":: from a socket bound to ::ffff:0.0.0.0 goes over IPv4", host: func(h *Host) { isolated(h); h.Local = h.Local[:1] },
			s: Socket{Proto: inet.UDP, Family: inet.IPv6, Local: ap("[::ffff:0.0.0.0]:4000"), State: Bound}, op: connect("[::]:9"),
			want: verdict{Err: "ok", Rule: "udp-connect"}},
		{name: "unrouted IPv6 peer from a v4-mapped socket: the route fails first", host: isolated,
			s: tcp(inet.IPv6, "[::ffff:127.0.0.1]:4000", Bound), op: connect("[fd00::9]:80"),
			want: verdict{Err: "ENETUNREACH", Rule: "no-route"}},
		{name: "routed IPv6 peer from a v4-mapped socket", host: isolated,
			s: tcp(inet.IPv6, "[::ffff:127.0.0.1]:4000", Bound), op: connect("[::1]:80"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		// Self-connect: simultaneous open needs no listener.
		{name: "connect to own address and port", host: isolated, s: tcp(inet.IPv4, "127.0.0.1:5000", Bound), op: connect("127.0.0.1:5000"),
			want: verdict{Err: "ok", Rule: "self-connect"}},
		{name: "connect to own address, other port", host: isolated, s: tcp(inet.IPv4, "127.0.0.1:5000", Bound), op: connect("127.0.0.1:5001"),
			want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
		{name: "self-connect of the only port a search can pick", host: func(h *Host) { isolated(h); h.EphemeralRange = inet.PortRange{Lo: 5000, Hi: 5000} },
			s: newTCP(inet.IPv4), op: connect("127.0.0.1:5000"), want: verdict{Err: "ok", Rule: "self-connect"}},
		// Link-local peers need a scope or a device.
		{name: "link-local TCP without scope", s: newTCP(inet.IPv6), op: connect("[fe80::1]:80"),
			want: verdict{Err: "EINVAL", Rule: "linklocal-scope"}},
		{name: "link-local UDP without scope", s: newUDP(inet.IPv6), op: connect("[fe80::1]:80"),
			want: verdict{Err: "EINVAL", Rule: "linklocal-scope"}},
		{name: "link-local TCP on a device-bound socket", s: with(newTCP(inet.IPv6), devLo), op: connect("[fe80::1]:80"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "link-local with a zone", s: newTCP(inet.IPv6), op: connect("[fe80::1%1]:80"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "link-local multicast UDP", s: newUDP(inet.IPv6), op: connect("[ff02::1]:80"),
			want: verdict{Err: "EINVAL", Rule: "linklocal-scope"}},
		{name: "multicast TCP6", s: newTCP(inet.IPv6), op: connect("[ff02::1]:80"),
			want: verdict{Err: "ENETUNREACH", Rule: "connect-multicast"}},
		{name: "multicast TCP4", s: newTCP(inet.IPv4), op: connect("224.0.0.1:80"),
			want: verdict{Err: "ENETUNREACH", Rule: "connect-multicast"}},
		{name: "broadcast TCP4", s: newTCP(inet.IPv4), op: connect("255.255.255.255:80"),
			want: verdict{Err: "ENETUNREACH", Rule: "connect-multicast"}},
		// Routes and source addresses of an isolated namespace.
		{name: "UDP multicast without a route", host: isolated, s: newUDP(inet.IPv4), op: connect("224.0.0.1:80"),
			want: verdict{Err: "ENETUNREACH", Rule: "no-route"}},
		{name: "UDP multicast on a host with routes", s: newUDP(inet.IPv4), op: connect("224.0.0.1:80"),
			want: verdict{Err: "ok", Rule: "udp-connect"}},
		{name: "no IPv6 address: no source", host: func(h *Host) { isolated(h); h.Local = h.Local[:1] }, s: newTCP(inet.IPv6), op: connect("[::1]:80"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "no-source"}},
		{name: "no IPv6 address: UDP", host: func(h *Host) { isolated(h); h.Local = h.Local[:1] }, s: newUDP(inet.IPv6), op: connect("[::1]:80"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "no-source"}},
		{name: "no IPv6 address: v4-mapped goes over IPv4", host: func(h *Host) { isolated(h); h.Local = h.Local[:1] }, s: newTCP(inet.IPv6), op: connect("[::ffff:127.0.0.1]:80"),
			want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
		{name: "partial host: missing IPv6 is not a verdict", host: func(h *Host) { h.Local = h.Local[:1] }, s: newTCP(inet.IPv6), op: connect("[::1]:80"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		// A reset socket still counts as connected.
		{name: "reset socket connects", s: with(newTCP(inet.IPv4), func(s *Socket) { s.Reset = true }), op: connect("127.0.0.1:80"),
			want: verdict{Err: "EISCONN", Rule: "connect-reset"}},
		{name: "reset socket listens", s: with(newTCP(inet.IPv4), func(s *Socket) { s.Reset = true }), op: listenOp,
			want: verdict{Err: "EINVAL", Rule: "listen-reset"}},
	})
}

// TestSelfConnectChance: a refused connect() whose search may pick the
// destination port itself says so; one that cannot does not. Over
// 5000-5003 the search tries 5000 and 5002 first (the start's parity):
// 5001 is taken only when both are unusable.
func TestSelfConnectChance(t *testing.T) {
	h := testHost()
	h.AllListeners, h.Isolated = true, true
	h.EphemeralRange = inet.PortRange{Lo: 5000, Hi: 5003}
	for _, c := range []struct {
		dst    string
		chance bool
	}{
		{"127.0.0.1:5002", true},
		{"127.0.0.1:5001", false}, // the other parity: never reached while 5000 or 5002 is usable
		{"127.0.0.1:6000", false}, // outside the range
	} {
		o := Predict(World{Host: h}, newTCP(inet.IPv4), connect(c.dst))
		said := len(o.Assumptions) == 1 && strings.Contains(o.Assumptions[0], "connects to itself")
		if o.ErrName() != "ECONNREFUSED" || said != c.chance || (!c.chance && len(o.Assumptions) != 0) {
			t.Errorf("connect %s over 5000-5003: %s, assumptions %q; want ECONNREFUSED, self-connect chance %v", c.dst, o.ErrName(), o.Assumptions, c.chance)
		}
	}
}

// TestConnectPickByParity: where the order of __inet_hash_connect's walk
// leaves one port to take, the model names it, and a connect() to that
// port of its own address connects to itself on every kernel (observed on
// 5.10, 6.1, 6.12 and 6.18: over 40000-40001 a connect() to
// 127.0.0.1:40000 with no listener succeeds from local port 40000).
func TestConnectPickByParity(t *testing.T) {
	rng := func(lo, hi uint16) func(*Host) {
		return func(h *Host) { isolated(h); h.EphemeralRange = inet.PortRange{Lo: lo, Hi: hi} }
	}
	perSocket := func(lo, hi uint16) Socket {
		return with(newTCP(inet.IPv4), func(s *Socket) { s.PortRange = inet.PortRange{Lo: lo, Hi: hi} })
	}
	held := with(tcp(inet.IPv4, "0.0.0.0:40000", Bound), func(s *Socket) {})
	for _, c := range []struct {
		name string
		host func(*Host)
		have []Socket
		s    Socket
		dst  string
		err  string
		rule string
		port uint16 // the local port the model says the kernel takes (0: not known)
	}{
		{"two ports: the first is tried first", rng(40000, 40001), nil, newTCP(inet.IPv4), "127.0.0.1:40000", "ok", "self-connect", 40000},
		{"two ports: the first, not the destination", rng(40000, 40001), nil, newTCP(inet.IPv4), "127.0.0.1:40001", "ECONNREFUSED", "no-listener", 0},
		{"three ports: the top one is never tried", rng(40000, 40002), nil, newTCP(inet.IPv4), "127.0.0.1:40000", "ok", "self-connect", 40000},
		{"odd start: its parity first", rng(40001, 40002), nil, newTCP(inet.IPv4), "127.0.0.1:40001", "ok", "self-connect", 40001},
		{"IPv6 alike", rng(40000, 40001), nil, newTCP(inet.IPv6), "[::1]:40000", "ok", "self-connect", 40000},
		{"first held through bind(): the other parity", rng(40000, 40001), []Socket{held}, newTCP(inet.IPv4), "127.0.0.1:40001", "ok", "self-connect", 40001},
		{"four ports: the random start decides", rng(40000, 40003), nil, newTCP(inet.IPv4), "127.0.0.1:40000", "ECONNREFUSED", "no-listener", 0},
		{"four ports, one of the first parity held: the other", rng(40000, 40003), []Socket{held}, newTCP(inet.IPv4), "127.0.0.1:40002", "ok", "self-connect", 40002},
		{"own range: every port from a random start", rng(40000, 40009), nil, perSocket(40000, 40001), "127.0.0.1:40000", "ECONNREFUSED", "no-listener", 0},
		{"own range of one port", rng(40000, 40009), nil, perSocket(40001, 40001), "127.0.0.1:40001", "ok", "self-connect", 40001},
		{"a listener: the port is named all the same", func(h *Host) { rng(40000, 40001)(h); h.AllListeners = false }, nil, newTCP(inet.IPv4), "127.0.0.1:80", "ok", "connect-search", 40000},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := testHost()
			c.host(&h)
			o := Predict(World{Host: h, Sockets: c.have}, c.s, connect(c.dst))
			if o.ErrName() != c.err || o.Rule != c.rule || o.After.Local.Port() != c.port {
				t.Errorf("connect %s over %v: %s (%s), local port %d; want %s (%s), port %d\n%s",
					c.dst, h.EphemeralRange, o.ErrName(), o.Rule, o.After.Local.Port(), c.err, c.rule, c.port, o.Why)
			}
		})
	}
}

func TestTimeWaitDevice(t *testing.T) {
	noTS := func(h *Host) { h.TCPTWReuse = 0 }
	twLo := tw("10.9.0.1:40000", "10.9.0.1:80", devLo)
	bound := with(tcp(inet.IPv4, "10.9.0.1:40000", Bound), ra)
	runCases(t, []ruleCase{
		{name: "device-bound TIME_WAIT does not match an unbound socket", host: noTS, have: []Socket{twLo}, s: bound, op: connect("10.9.0.1:80"),
			want: verdict{Err: "ok", Rule: "four-tuple-unique"}},
		{name: "device-bound TIME_WAIT matches a socket on the same device", host: noTS, have: []Socket{twLo}, s: with(bound, devLo), op: connect("10.9.0.1:80"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "four-tuple", Blockers: []int{0}}},
		{name: "unbound TIME_WAIT matches a device-bound socket", host: noTS, have: []Socket{tw("10.9.0.1:40000", "10.9.0.1:80")}, s: with(bound, devLo), op: connect("10.9.0.1:80"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "four-tuple", Blockers: []int{0}}},
		{name: "tcp_tw_reuse=2 reuses a TIME_WAIT bound to lo", host: func(h *Host) { h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40000}; h.TCPTWReuse = 2 },
			have: []Socket{with(twLo, func(s *Socket) { s.TWTimestamps = true; s.PortFromConnect = true })}, s: with(newTCP(inet.IPv4), devLo), op: connect("10.9.0.1:80"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "tcp_tw_reuse=2 does not reuse one on 10.9.0.1 bound to no device", host: func(h *Host) { h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40000}; h.TCPTWReuse = 2 },
			have: []Socket{tw("10.9.0.1:40000", "10.9.0.1:80", func(s *Socket) { s.TWTimestamps = true; s.PortFromConnect = true })}, s: newTCP(inet.IPv4), op: connect("10.9.0.1:80"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0}}},
	})
}

func TestUDPDualStackPlaceholder(t *testing.T) {
	// A dual-stack UDP socket bound to [::]:5000 that connected to ::1.
	a := Socket{Proto: inet.UDP, Family: inet.IPv6, Local: ap("[::1]:5000"), Remote: ap("[::1]:9"), State: Connected}
	runCases(t, []ruleCase{
		{name: "127.0.0.1 is free", have: []Socket{a}, s: newUDP(inet.IPv4), op: bind("127.0.0.1:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "127.0.0.6 meets the placeholder", have: []Socket{a}, s: newUDP(inet.IPv4), op: bind("127.0.0.6:5000"),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "0.0.0.0 meets it", have: []Socket{a}, s: newUDP(inet.IPv4), op: bind("0.0.0.0:5000"),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "v6only owner has no IPv4 side", have: []Socket{with(a, v6o)}, s: newUDP(inet.IPv4), op: bind("127.0.0.6:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "AF_INET6 ::ffff:127.0.0.6 compares IPv6 addresses", have: []Socket{a}, s: newUDP(inet.IPv6), op: bind("[::ffff:127.0.0.6]:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
	})
}

func TestCloseListener(t *testing.T) {
	l := with(listener(inet.IPv4, "127.0.0.1:5000"), func(s *Socket) { s.ID = "L" })
	childOf := func(client string, q string) Socket {
		c := conn(inet.IPv4, "127.0.0.1:5000", client)
		c.AcceptQueue = q
		return c
	}
	w := World{Host: testHost(), Sockets: []Socket{
		with(conn(inet.IPv4, "127.0.0.1:40000", "127.0.0.1:5000"), fromConn), // 0: client, connect()-picked port
		childOf("127.0.0.1:40000", "L"),                                      // 1: its unaccepted child
		conn(inet.IPv4, "127.0.0.1:6000", "127.0.0.1:5000"),                  // 2: client, bind()-named port
		childOf("127.0.0.1:6000", "L"),                                       // 3
		conn(inet.IPv4, "127.0.0.1:7000", "127.0.0.1:5000"),                  // 4: client of an accepted child
		childOf("127.0.0.1:7000", ""),                                        // 5: accepted
	}}
	m := NewModel(w)
	out := m.CloseListener(l)
	if len(out.Dropped) != 2 || out.Dropped[0] != 1 || out.Dropped[1] != 3 {
		t.Errorf("dropped %v, want [1 3] (the unaccepted children)", out.Dropped)
	}
	if len(out.Reset) != 2 || out.Reset[0] != 0 || out.Reset[1] != 2 {
		t.Fatalf("reset %v, want [0 2]", out.Reset)
	}
	if a := out.After[0]; a.State != Unbound || a.Local.IsValid() || !a.Reset {
		t.Errorf("connect()-port client after reset: %+v, want unbound (port given back), reset", a)
	}
	if a := out.After[1]; a.State != Bound || a.Local.Port() != 6000 || !a.Reset {
		t.Errorf("bind()-port client after reset: %+v, want bound to 6000, reset", a)
	}
	// The world after the close: the port is free to bind, 6000 is not.
	after := []Socket{out.After[0], out.After[1], w.Sockets[4], w.Sockets[5]}
	if o := Predict(World{Host: testHost(), Sockets: after[:2]}, newTCP(inet.IPv4), bind("127.0.0.1:5000")); !o.OK() {
		t.Errorf("bind of the closed listener's port: %s (%s), want ok", o.ErrName(), o.Why)
	}
	if o := Predict(World{Host: testHost(), Sockets: after}, newTCP(inet.IPv4), bind("127.0.0.1:5000")); o.OK() {
		t.Error("bind of the port an accepted child holds: ok, want EADDRINUSE")
	}
	if o := Predict(World{Host: testHost(), Sockets: after}, newTCP(inet.IPv4), bind("127.0.0.1:6000")); o.OK() {
		t.Error("bind of the reset client's bind()-named port: ok, want EADDRINUSE")
	}
	if o := m.CloseListener(with(l, func(s *Socket) { s.ID = "other" })); len(o.Dropped) != 0 {
		t.Errorf("another listener's close dropped %v", o.Dropped)
	}
}

// A listener whose accept queue holds more than its backlog drops the SYN:
// connect() waits (ETIMEDOUT). The lookup takes the exact address before a
// wildcard, an AF_INET socket before an AF_INET6 one for an IPv4 peer, and
// never a socket bound to another device than lo.
func TestConnectToFullAcceptQueue(t *testing.T) {
	full := func(s *Socket) { s.Waiting, s.Backlog, s.BacklogKnown = 2, 1, true }
	room := func(s *Socket) { s.Waiting, s.Backlog, s.BacklogKnown = 0, 128, true }
	l4 := func(addr string, f func(*Socket)) Socket { return with(listener(inet.IPv4, addr), f) }
	l6 := func(addr string, f func(*Socket)) Socket { return with(listener(inet.IPv6, addr), f) }
	timedOut := func(blocker int) verdict {
		return verdict{Err: "ETIMEDOUT", Rule: "accept-queue-full", Blockers: []int{blocker}}
	}
	searched := verdict{Err: "ok", Rule: "connect-search"}
	runCases(t, []ruleCase{
		{name: "full listener", host: isolated, have: []Socket{l4("127.0.0.1:80", full)}, s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: timedOut(0)},
		{name: "queue unknown", host: isolated, have: []Socket{listener(inet.IPv4, "127.0.0.1:80")}, s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: searched},
		{name: "waiting up to the backlog is room", host: isolated, have: []Socket{l4("127.0.0.1:80", func(s *Socket) { s.Waiting, s.Backlog, s.BacklogKnown = 1, 1, true })},
			s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: searched},
		{name: "exact address before a full wildcard", host: isolated, have: []Socket{l4("0.0.0.0:80", full), l4("127.0.0.1:80", room)},
			s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: searched},
		{name: "full exact address before a wildcard with room", host: isolated, have: []Socket{l4("0.0.0.0:80", room), l4("127.0.0.1:80", full)},
			s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: timedOut(1)},
		{name: "IPv4 peer: AF_INET 0.0.0.0 before AF_INET6 ::", host: isolated, have: []Socket{l4("0.0.0.0:80", full), l6("[::]:80", room)},
			s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: timedOut(0)},
		{name: "IPv4 peer: a full :: loses to 0.0.0.0", host: isolated, have: []Socket{l4("0.0.0.0:80", room), l6("[::]:80", full)},
			s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: searched},
		{name: "IPv6 peer: only :: takes it", host: isolated, have: []Socket{l4("0.0.0.0:80", room), l6("[::]:80", full)},
			s: newTCP(inet.IPv6), op: connect("[::1]:80"), want: timedOut(1)},
		{name: "a listener bound to another device takes nothing from lo", host: isolated, have: []Socket{with(l4("127.0.0.1:80", full), func(s *Socket) { s.Dev = 2 })},
			s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
	})
}

// TestScopedAddresses: a link-local address takes its device from its
// scope, which replaces SO_BINDTODEVICE on bind() and must agree with it on
// connect(); an address of link or host scope binds only on its own device.
func TestScopedAddresses(t *testing.T) {
	scoped := func(h *Host) {
		h.Local = append(h.Local, netip.MustParsePrefix("fe80::1/128"), netip.MustParsePrefix("fe80::2/128"))
		h.Scoped = []ScopedAddr{{netip.MustParseAddr("::1"), LoopbackIndex}, {netip.MustParseAddr("fe80::1"), 2}, {netip.MustParseAddr("fe80::2"), 3}}
	}
	onDev := func(d int) func(*Socket) { return func(s *Socket) { s.Dev = d } }
	holder := with(tcp(inet.IPv6, "[fe80::1]:8080", Bound), onDev(2))
	runCases(t, []ruleCase{
		{name: "no scope, no device", host: scoped, s: newTCP(inet.IPv6), op: bind("[fe80::1]:8080"),
			want: verdict{Err: "EINVAL", Rule: "linklocal-scope"}},
		{name: "its own device as scope", host: scoped, s: newTCP(inet.IPv6), op: bind("[fe80::1%2]:8080"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "another device as scope", host: scoped, s: newTCP(inet.IPv6), op: bind("[fe80::1%3]:8080"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "other-device"}},
		{name: "its own device by SO_BINDTODEVICE", host: scoped, s: with(newTCP(inet.IPv6), onDev(2)), op: bind("[fe80::1]:8080"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "another device by SO_BINDTODEVICE", host: scoped, s: with(newTCP(inet.IPv6), onDev(3)), op: bind("[fe80::1]:8080"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "other-device"}},
		{name: "the scope replaces SO_BINDTODEVICE", host: scoped, s: with(newTCP(inet.IPv6), onDev(3)), op: bind("[fe80::1%2]:8080"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "::1 on another device", host: scoped, s: with(newTCP(inet.IPv6), onDev(2)), op: bind("[::1]:8080"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "other-device"}},
		{name: "::1 on lo", host: scoped, s: with(newTCP(inet.IPv6), devLo), op: bind("[::1]:8080"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "a global address on any device", host: scoped, s: with(newTCP(inet.IPv6), onDev(3)), op: bind("[fd00::1]:8080"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "IP_FREEBIND skips the device", host: scoped, s: with(newTCP(inet.IPv6), func(s *Socket) { s.Freebind = true }), op: bind("[fe80::1%3]:8080"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "the scope's device meets the holder's", host: scoped, have: []Socket{holder}, s: newTCP(inet.IPv6), op: bind("[fe80::1%2]:8080"),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "a scope the model cannot compare (a name)", host: scoped, s: newTCP(inet.IPv6), op: bind("[fe80::1%eth0]:8080"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "connect: a scope that agrees", host: scoped, s: with(newTCP(inet.IPv6), onDev(2)), op: connect("[fe80::9%2]:8080"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "connect: a scope that does not", host: scoped, s: with(newTCP(inet.IPv6), onDev(2)), op: connect("[fe80::9%3]:8080"),
			want: verdict{Err: "EINVAL", Rule: "scope-device"}},
		{name: "connect UDP: a scope that does not", host: scoped, s: with(newUDP(inet.IPv6), onDev(2)), op: connect("[fe80::9%3]:8080"),
			want: verdict{Err: "EINVAL", Rule: "scope-device"}},
	})
	// The scope stays the socket's device, also when bind() then fails.
	h := testHost()
	scoped(&h)
	for _, c := range []struct {
		have []Socket
		want string
	}{{nil, "ok"}, {[]Socket{holder}, "EADDRINUSE"}} {
		o := Predict(World{Host: h, Sockets: c.have}, with(newTCP(inet.IPv6), onDev(3)), bind("[fe80::1%2]:8080"))
		if o.ErrName() != c.want || o.After.Dev != 2 || o.After.Local.Addr().Zone() != "" {
			t.Errorf("bind [fe80::1%%2]:8080 from device 3 beside %d sockets: %s, after: device %d, local %s; want %s, device 2, no zone",
				len(c.have), o.ErrName(), o.After.Dev, o.After.Local, c.want)
		}
	}
}
