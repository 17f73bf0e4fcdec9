package rules

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// verdict is the part of an Outcome a rule decides.
type verdict struct {
	Err      string
	Rule     string
	Blockers []int
}

func verdictOf(o Outcome) verdict {
	v := verdict{Err: o.ErrName(), Rule: o.Rule}
	for _, b := range o.Blockers {
		v.Blockers = append(v.Blockers, b.Index)
	}
	return v
}

// Helpers that read like the rules' own words.
func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func tcp(fam Family, local string, st State) Socket {
	return Socket{Proto: TCP, Family: fam, Local: ap(local), State: st}
}

func udp(fam Family, local string) Socket {
	return Socket{Proto: UDP, Family: fam, Local: ap(local), State: Bound}
}

func with(s Socket, f func(*Socket)) Socket { f(&s); return s }

func ra(s *Socket)  { s.ReuseAddr = true }
func rp(s *Socket)  { s.ReusePort = true }
func v6o(s *Socket) { s.V6Only = true }
func both(s *Socket) {
	s.ReuseAddr = true
	s.ReusePort = true
}
func uid(u uint32) func(*Socket) { return func(s *Socket) { s.UID = u } }

func newTCP(fam Family) Socket { return Socket{Proto: TCP, Family: fam} }
func newUDP(fam Family) Socket { return Socket{Proto: UDP, Family: fam} }

func bind(a string) Op    { return Op{Kind: OpBind, Addr: ap(a)} }
func connect(a string) Op { return Op{Kind: OpConnect, Addr: ap(a)} }

var listenOp = Op{Kind: OpListen}

// testHost is a namespace with loopback, 10.9.0.1 and fd00::1 local.
func testHost() Host {
	h := DefaultHost()
	h.Local = append(h.Local, netip.MustParsePrefix("10.9.0.1/32"), netip.MustParsePrefix("fd00::1/128"), netip.MustParsePrefix("fd00::2/128"))
	return h
}

type ruleCase struct {
	name string
	host func(*Host)
	have []Socket
	s    Socket
	op   Op
	want verdict
}

func runCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := testHost()
			if c.host != nil {
				c.host(&h)
			}
			got := verdictOf(Predict(World{Host: h, Sockets: c.have}, c.s, c.op))
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Predict() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBindErrors(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "AF_INET binds an IPv6 address", s: newTCP(IPv4), op: bind("[fd00::1]:80"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		{name: "AF_INET binds a v4-mapped address", s: newTCP(IPv4), op: bind("[::ffff:127.0.0.1]:80"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		{name: "AF_INET6 binds a sockaddr_in", s: newTCP(IPv6), op: bind("127.0.0.1:80"),
			want: verdict{Err: "EINVAL", Rule: "family"}},
		{name: "non-local IPv4", s: newTCP(IPv4), op: bind("192.0.2.1:5000"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "nonlocal"}},
		{name: "non-local IPv6", s: newUDP(IPv6), op: bind("[2001:db8::1]:5000"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "nonlocal"}},
		{name: "non-local v4-mapped", s: newTCP(IPv6), op: bind("[::ffff:192.0.2.1]:5000"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "nonlocal"}},
		{name: "non-local with ip_nonlocal_bind", host: func(h *Host) { h.NonlocalBind4 = true }, s: newTCP(IPv4), op: bind("192.0.2.1:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "non-local with IP_FREEBIND", s: with(newTCP(IPv6), func(s *Socket) { s.Freebind = true }), op: bind("[2001:db8::1]:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "privileged port", s: newTCP(IPv4), op: bind("127.0.0.1:80"),
			want: verdict{Err: "EACCES", Rule: "privileged"}},
		{name: "privileged port with CAP_NET_BIND_SERVICE", s: with(newTCP(IPv4), func(s *Socket) { s.CanBindPrivileged = true }), op: bind("127.0.0.1:80"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "privileged port lowered start", host: func(h *Host) { h.UnprivilegedPortStart = 0 }, s: newTCP(IPv4), op: bind("127.0.0.1:80"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "already bound", s: tcp(IPv4, "127.0.0.1:5000", Bound), op: bind("127.0.0.1:5001"),
			want: verdict{Err: "EINVAL", Rule: "already-bound"}},
		{name: "bound without port may bind again", s: with(tcp(IPv4, "127.0.0.1:0", Bound), func(s *Socket) { s.BindNoPort = true }), op: bind("127.0.0.1:5001"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "v4-mapped on v6only", s: with(newTCP(IPv6), v6o), op: bind("[::ffff:127.0.0.1]:5000"),
			want: verdict{Err: "EINVAL", Rule: "v6only-mapped"}},
		{name: "v4-mapped with bindv6only default", host: func(h *Host) { h.BindV6Only = true }, s: with(newTCP(IPv6), func(s *Socket) { s.V6OnlyDefault = true }), op: bind("[::ffff:127.0.0.1]:5000"),
			want: verdict{Err: "EINVAL", Rule: "v6only-mapped"}},
		{name: "link-local without scope", s: newTCP(IPv6), op: bind("[fe80::1]:5000"),
			want: verdict{Err: "EINVAL", Rule: "linklocal-scope"}},
		{name: "bind-no-port defers the port", s: with(newTCP(IPv4), func(s *Socket) { s.BindNoPort = true }), op: bind("127.0.0.1:0"),
			want: verdict{Err: "ok", Rule: "bind-no-port"}},
	})
}

func TestTCPBindReuse(t *testing.T) {
	a := "127.0.0.1:5000"
	runCases(t, []ruleCase{
		{name: "free port", s: newTCP(IPv4), op: bind(a), want: verdict{Err: "ok", Rule: "free"}},
		{name: "bound owner, no options", have: []Socket{tcp(IPv4, a, Bound)}, s: newTCP(IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "reuseaddr on both, owner bound", have: []Socket{with(tcp(IPv4, a, Bound), ra)}, s: with(newTCP(IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "reuseaddr only on the new socket", have: []Socket{tcp(IPv4, a, Bound)}, s: with(newTCP(IPv4), ra), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "reuseaddr never against a listener", have: []Socket{with(tcp(IPv4, a, Listen), ra)}, s: with(newTCP(IPv4), ra), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "reuseaddr against a connected owner", have: []Socket{with(tcp(IPv4, a, Connected), ra)}, s: with(newTCP(IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "reuseport same uid listener", have: []Socket{with(tcp(IPv4, a, Listen), rp)}, s: with(newTCP(IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "reuseport different uid", have: []Socket{with(with(tcp(IPv4, a, Listen), rp), uid(1000))}, s: with(newTCP(IPv4), rp), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "reuseport different uid TIME_WAIT", have: []Socket{with(with(tcp(IPv4, a, TimeWait), rp), uid(1000))}, s: with(newTCP(IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "reuseport already in a group", have: []Socket{with(tcp(IPv4, a, Listen), rp)}, s: with(newTCP(IPv4), func(s *Socket) { s.ReusePort, s.InGroup = true, true }), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "TIME_WAIT without reuse blocks reuseaddr bind", have: []Socket{tcp(IPv4, a, TimeWait)}, s: with(newTCP(IPv4), ra), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "TIME_WAIT with reuseaddr", have: []Socket{with(tcp(IPv4, a, TimeWait), ra)}, s: with(newTCP(IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "different devices", have: []Socket{with(tcp(IPv4, a, Listen), func(s *Socket) { s.Dev = 2 })}, s: with(newTCP(IPv4), func(s *Socket) { s.Dev = 3 }), op: bind(a),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "device and no device", have: []Socket{with(tcp(IPv4, a, Listen), func(s *Socket) { s.Dev = 2 })}, s: newTCP(IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "other protocol does not count", have: []Socket{udp(IPv4, a)}, s: newTCP(IPv4), op: bind(a),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "every blocker is named", have: []Socket{tcp(IPv4, a, Listen), tcp(IPv4, "0.0.0.0:5000", Bound), tcp(IPv4, "127.0.0.2:5000", Bound)}, s: newTCP(IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0, 1}}},
	})
}

func TestListen(t *testing.T) {
	a := "127.0.0.1:5000"
	runCases(t, []ruleCase{
		{name: "listen rechecks against a reuseaddr listener", have: []Socket{with(tcp(IPv4, a, Listen), both)}, s: with(with(tcp(IPv4, a, Bound), both), uid(7)), op: listenOp,
			want: verdict{Err: "EADDRINUSE", Rule: "listen-conflict", Blockers: []int{0}}},
		{name: "listen with reuseaddr next to bound reuseaddr", have: []Socket{with(tcp(IPv4, a, Bound), ra)}, s: with(tcp(IPv4, a, Bound), ra), op: listenOp,
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "two reuseport listeners", have: []Socket{with(tcp(IPv4, a, Listen), rp)}, s: with(tcp(IPv4, a, Bound), rp), op: listenOp,
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "listen on UDP", s: udp(IPv4, a), op: listenOp, want: verdict{Err: "EOPNOTSUPP", Rule: "udp-listen"}},
		{name: "listen when connected", s: tcp(IPv4, a, Connected), op: listenOp, want: verdict{Err: "EINVAL", Rule: "listen-state"}},
		{name: "listen autobinds", s: newTCP(IPv4), op: listenOp, want: verdict{Err: "ok", Rule: "autobind"}},
	})
}

// TestOverlapTable has one case per cell of kernel-rules.md's OVERLAP
// table: an existing bound TCP socket (row: new, column: old) and a new
// bind to the same port without reuse options.
func TestOverlapTable(t *testing.T) {
	type side struct {
		fam    Family
		addr   string
		v6only bool
	}
	v4a := side{IPv4, "127.0.0.1", false}
	mapA := side{IPv6, "::ffff:127.0.0.1", false}
	v4b := side{IPv4, "127.0.0.2", false}
	any4 := side{IPv4, "0.0.0.0", false}
	anyMapped := side{IPv6, "::ffff:0.0.0.0", false}
	any6 := side{IPv6, "::", false}
	any6only := side{IPv6, "::", true}
	x := side{IPv6, "fd00::1", true}
	x2 := side{IPv6, "fd00::2", true}
	xDual := side{IPv6, "fd00::1", false} // connect()ed without bind: v6only stays off
	cells := []struct {
		name     string
		new, old side
		want     bool
	}{
		{"v4 a / v4 a", v4a, v4a, true},
		{"v4 a / mapped a", v4a, mapA, true},
		{"mapped a / v4 a", mapA, v4a, true},
		{"v4 a / v4 b", v4a, v4b, false},
		{"v4 a / 0.0.0.0", v4a, any4, true},
		{"v4 a / ::ffff:0.0.0.0", v4a, anyMapped, true},
		{"v4 a / ::", v4a, any6, true},
		{"v4 a / :: v6only", v4a, any6only, false},
		{"mapped a / :: v6only", mapA, any6only, false},
		{"v4 a / v6 X", v4a, x, false},
		{"v4 a / v6 X not v6only", v4a, xDual, false},
		{"*4 / v4 b", any4, v4b, true},
		{"::ffff:0.0.0.0 / v4 b", anyMapped, v4b, true},
		{"*4 / ::", any4, any6, true},
		{"*4 / :: v6only", any4, any6only, false},
		{"::ffff:0.0.0.0 / :: v6only", anyMapped, any6only, false},
		{"0.0.0.0 / v6 X v6only", any4, x, false},
		{"0.0.0.0 / v6 X not v6only", any4, xDual, true},
		{"::ffff:0.0.0.0 / v6 X not v6only", anyMapped, xDual, false},
		{":: / v4 b", any6, v4b, true},
		{":: v6only / v4 b", any6only, v4b, false},
		{":: v6only / 0.0.0.0", any6only, any4, false},
		{":: / ::", any6, any6only, true},
		{":: v6only / :: v6only", any6only, any6only, true},
		{":: / v6 X", any6, x, true},
		{":: v6only / v6 X", any6only, x, true},
		{"v6 X / v4 b", x, v4b, false},
		{"v6 X / ::ffff:0.0.0.0", x, anyMapped, false},
		{"v6 X / ::", x, any6, true},
		{"v6 X / :: v6only", x, any6only, true},
		{"v6 X / v6 X", x, x, true},
		{"v6 X / v6 X'", x, x2, false},
	}
	for _, c := range cells {
		t.Run(c.name, func(t *testing.T) {
			old := tcp(c.old.fam, netip.AddrPortFrom(netip.MustParseAddr(c.old.addr), 5000).String(), Bound)
			old.V6Only = c.old.v6only
			n := with(newTCP(c.new.fam), func(s *Socket) { s.V6Only = c.new.v6only })
			o := Predict(World{Host: testHost(), Sockets: []Socket{old}}, n, Op{Kind: OpBind, Addr: netip.AddrPortFrom(netip.MustParseAddr(c.new.addr), 5000)})
			if got := o.Err == syscall.EADDRINUSE; got != c.want {
				t.Errorf("overlap = %v, want %v (outcome %s %s: %s)", got, c.want, o.ErrName(), o.Rule, o.Why)
			}
		})
	}
}

func TestUDPBind(t *testing.T) {
	a := "127.0.0.1:5000"
	runCases(t, []ruleCase{
		{name: "UCONFL plain", have: []Socket{udp(IPv4, a)}, s: newUDP(IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "reuseaddr on both shares", have: []Socket{with(udp(IPv4, a), ra)}, s: with(newUDP(IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "connected counts like bound", have: []Socket{with(udp(IPv4, a), func(s *Socket) { s.State = Connected; s.Remote = ap("127.0.0.1:9") })}, s: newUDP(IPv4), op: bind("0.0.0.0:5000"),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "reuseport same uid", have: []Socket{with(udp(IPv4, a), rp)}, s: with(newUDP(IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "reuseport different uid", have: []Socket{with(with(udp(IPv4, a), rp), uid(5))}, s: with(newUDP(IPv4), rp), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "newest overlapping IPv4 socket decides", have: []Socket{udp(IPv4, a), with(udp(IPv4, "0.0.0.0:5000"), both)}, s: with(newUDP(IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "IPv6 reuseport sockets are checked last", have: []Socket{udp(IPv4, a), with(udp(IPv6, "[::]:5000"), both)}, s: with(newUDP(IPv6), rp), op: bind("[::]:5000"),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "v6only wildcard and v4", have: []Socket{with(udp(IPv6, "[::]:5000"), v6o)}, s: newUDP(IPv4), op: bind("0.0.0.0:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
	})
}

func TestAutobind(t *testing.T) {
	narrow := func(h *Host) { h.EphemeralRange = PortRange{40000, 40003} }
	held := func(fam Family, ports ...int) []Socket {
		var ss []Socket
		for _, p := range ports {
			ss = append(ss, tcp(fam, netip.AddrPortFrom(netip.MustParseAddr("0.0.0.0"), uint16(p)).String(), Listen))
		}
		return ss
	}
	runCases(t, []ruleCase{
		{name: "bind(0) takes a free port", host: narrow, have: held(IPv4, 40000, 40001, 40002), s: newTCP(IPv4), op: bind("127.0.0.1:0"),
			want: verdict{Err: "ok", Rule: "autobind"}},
		{name: "bind(0) exhausted", host: narrow, have: held(IPv4, 40000, 40001, 40002, 40003), s: newTCP(IPv4), op: bind("127.0.0.1:0"),
			want: verdict{Err: "EADDRINUSE", Rule: "autobind-exhausted", Blockers: []int{0, 1, 2, 3}}},
		{name: "reserved ports are skipped", host: func(h *Host) { narrow(h); h.ReservedPorts = []PortRange{{40003, 40003}} }, have: held(IPv4, 40000, 40001, 40002), s: newTCP(IPv4), op: bind("127.0.0.1:0"),
			want: verdict{Err: "EADDRINUSE", Rule: "autobind-exhausted", Blockers: []int{0, 1, 2}}},
		{name: "autobind_reuse second pass", host: func(h *Host) { narrow(h); h.AutobindReuse = true },
			have: []Socket{with(tcp(IPv4, "127.0.0.1:40000", Connected), ra), tcp(IPv4, "0.0.0.0:40001", Listen), tcp(IPv4, "0.0.0.0:40002", Listen), tcp(IPv4, "0.0.0.0:40003", Listen)},
			s:    with(newTCP(IPv4), ra), op: bind("127.0.0.1:0"), want: verdict{Err: "ok", Rule: "autobind-reuse"}},
		{name: "listen autobind exhausted", host: narrow, have: held(IPv4, 40000, 40001, 40002, 40003), s: newTCP(IPv4), op: listenOp,
			want: verdict{Err: "EADDRINUSE", Rule: "autobind-exhausted", Blockers: []int{0, 1, 2, 3}}},
		{name: "udp bind(0) exhausted", host: narrow,
			have: []Socket{udp(IPv4, "0.0.0.0:40000"), udp(IPv4, "0.0.0.0:40001"), udp(IPv4, "0.0.0.0:40002"), udp(IPv4, "0.0.0.0:40003")},
			s:    newUDP(IPv4), op: bind("0.0.0.0:0"), want: verdict{Err: "EADDRINUSE", Rule: "autobind-exhausted", Blockers: []int{0, 1, 2, 3}}},
		{name: "udp connect autobind exhausted is EAGAIN", host: narrow,
			have: []Socket{udp(IPv4, "0.0.0.0:40000"), udp(IPv4, "0.0.0.0:40001"), udp(IPv4, "0.0.0.0:40002"), udp(IPv4, "0.0.0.0:40003")},
			s:    newUDP(IPv4), op: connect("127.0.0.1:53"), want: verdict{Err: "EAGAIN", Rule: "udp-autobind-exhausted", Blockers: []int{0, 1, 2, 3}}},
	})
}

func TestEffectiveRange(t *testing.T) {
	h := DefaultHost()
	for _, c := range []struct {
		per  PortRange
		want PortRange
	}{
		{PortRange{}, PortRange{32768, 60999}},
		{PortRange{40000, 40010}, PortRange{40000, 40010}},
		{PortRange{1000, 40010}, PortRange{32768, 40010}}, // low end outside: ignored
		{PortRange{40000, 65000}, PortRange{40000, 60999}},
		{PortRange{0, 40000}, PortRange{32768, 40000}},
	} {
		got, per := EffectiveRange(h, Socket{PortRange: c.per})
		if got != c.want || per != !c.per.IsZero() {
			t.Errorf("EffectiveRange(%v) = %v, %v; want %v", c.per, got, per, c.want)
		}
	}
}

func TestConnect(t *testing.T) {
	narrow := func(h *Host) { h.EphemeralRange = PortRange{40000, 40001} }
	peer := "127.0.0.1:80"
	cb := func(s *Socket) { s.PortFromConnect = true }
	conn := func(local, remote string, f ...func(*Socket)) Socket {
		s := tcp(IPv4, local, Connected)
		s.Remote = ap(remote)
		for _, g := range f {
			g(&s)
		}
		return s
	}
	tw := func(s *Socket) { s.State = TimeWait; s.TWTimestamps = true; s.TWAge = 2 * time.Second }
	runCases(t, []ruleCase{
		{name: "bound: four-tuple unique", have: []Socket{conn("127.0.0.1:5000", "127.0.0.1:81")}, s: tcp(IPv4, "127.0.0.1:5000", Bound), op: connect(peer),
			want: verdict{Err: "ok", Rule: "four-tuple-unique"}},
		{name: "bound: same four-tuple live", have: []Socket{conn("127.0.0.1:5000", peer)}, s: tcp(IPv4, "127.0.0.1:5000", Bound), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "four-tuple", Blockers: []int{0}}},
		{name: "bound: TIME_WAIT with timestamps taken over", have: []Socket{conn("127.0.0.1:5000", peer, tw)}, s: tcp(IPv4, "127.0.0.1:5000", Bound), op: connect(peer),
			want: verdict{Err: "ok", Rule: "tw-takeover"}},
		{name: "bound: TIME_WAIT without timestamps", have: []Socket{conn("127.0.0.1:5000", peer, tw, func(s *Socket) { s.TWTimestamps = false })}, s: tcp(IPv4, "127.0.0.1:5000", Bound), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "four-tuple", Blockers: []int{0}}},
		{name: "search shares connect-bound ports", host: narrow, have: []Socket{conn("127.0.0.1:40000", "127.0.0.1:81", cb)}, s: newTCP(IPv4), op: connect(peer),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "search skips bind-origin ports", host: narrow, have: []Socket{tcp(IPv4, "127.0.0.2:40000", Bound), conn("127.0.0.1:40001", "127.0.0.1:81")}, s: newTCP(IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0, 1}}},
		{name: "search skips used four-tuples", host: narrow, have: []Socket{conn("127.0.0.1:40000", peer, cb), conn("127.0.0.1:40001", peer, cb)}, s: newTCP(IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0, 1}}},
		{name: "search reuses TIME_WAIT on loopback", host: narrow, have: []Socket{conn("127.0.0.1:40000", peer, cb, tw), conn("127.0.0.1:40001", peer, cb)}, s: newTCP(IPv4), op: connect(peer),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "search: TIME_WAIT too young", host: narrow, have: []Socket{conn("127.0.0.1:40000", peer, cb, tw, func(s *Socket) { s.TWAge = 0 }), conn("127.0.0.1:40001", peer, cb)}, s: newTCP(IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0, 1}}},
		{name: "search: tcp_tw_reuse 0", host: func(h *Host) { narrow(h); h.TCPTWReuse = 0 }, have: []Socket{conn("127.0.0.1:40000", peer, cb, tw), conn("127.0.0.1:40001", peer, cb)}, s: newTCP(IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0, 1}}},
		{name: "v6only to mapped", s: with(newTCP(IPv6), v6o), op: connect("[::ffff:127.0.0.1]:80"),
			want: verdict{Err: "ENETUNREACH", Rule: "v6only-connect"}},
		{name: "AF_INET to IPv6", s: newTCP(IPv4), op: connect("[::1]:80"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		{name: "udp connect ignores four-tuples", have: []Socket{with(udp(IPv4, "127.0.0.1:5000"), func(s *Socket) { s.ReuseAddr = true; s.State = Connected; s.Remote = ap(peer) })},
			s: with(udp(IPv4, "127.0.0.1:5000"), ra), op: connect(peer), want: verdict{Err: "ok", Rule: "udp-connect"}},
	})
}

func TestAssumptions(t *testing.T) {
	owner := tcp(IPv4, "127.0.0.1:5000", TimeWait)
	owner.ID = "inode 4711"
	owner.Unknown = FactReusePort | FactReuseAddr
	owner.UnknownReason = "TIME_WAIT"
	o := Predict(World{Host: testHost(), Sockets: []Socket{owner}}, newTCP(IPv4), bind("127.0.0.1:5000"))
	want := []string{
		"assumed SO_REUSEADDR off on inode 4711 (unreadable: TIME_WAIT)",
		"assumed SO_REUSEPORT off on inode 4711 (unreadable: TIME_WAIT)",
	}
	if diff := cmp.Diff(want, o.Assumptions); diff != "" {
		t.Errorf("assumptions (-want +got):\n%s", diff)
	}
}
