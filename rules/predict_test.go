package rules

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tuple-net/tuple/inet"
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

func tcp(fam inet.Family, local string, st State) Socket {
	return Socket{Proto: inet.TCP, Family: fam, Local: ap(local), State: st}
}

func udp(fam inet.Family, local string) Socket {
	return Socket{Proto: inet.UDP, Family: fam, Local: ap(local), State: Bound}
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

func newTCP(fam inet.Family) Socket { return Socket{Proto: inet.TCP, Family: fam} }
func newUDP(fam inet.Family) Socket { return Socket{Proto: inet.UDP, Family: fam} }

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

// sameVerdict fails t unless v (Model.Verdict) is o (Predict) without
// the blockers' list.
func sameVerdict(t *testing.T, o, v Outcome) {
	t.Helper()
	o.Blockers = nil
	if diff := cmp.Diff(o, v, addrCmp); diff != "" {
		t.Errorf("Verdict differs from Predict without its blockers (-Predict +Verdict):\n%s", diff)
	}
}

func runCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := testHost()
			if c.host != nil {
				c.host(&h)
			}
			w := World{Host: h, Sockets: c.have}
			o := Predict(w, c.s, c.op)
			got := verdictOf(o)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Predict() mismatch (-want +got):\n%s", diff)
			}
			sameVerdict(t, o, NewModel(w).Verdict(c.s, c.op))
		})
	}
}

func TestBindErrors(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "AF_INET binds an IPv6 address", s: newTCP(inet.IPv4), op: bind("[fd00::1]:80"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		{name: "AF_INET binds a v4-mapped address", s: newTCP(inet.IPv4), op: bind("[::ffff:127.0.0.1]:80"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		{name: "AF_INET6 binds a sockaddr_in", s: newTCP(inet.IPv6), op: bind("127.0.0.1:80"),
			want: verdict{Err: "EINVAL", Rule: "family"}},
		{name: "non-local IPv4", s: newTCP(inet.IPv4), op: bind("192.0.2.1:5000"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "nonlocal"}},
		{name: "non-local IPv6", s: newUDP(inet.IPv6), op: bind("[2001:db8::1]:5000"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "nonlocal"}},
		{name: "non-local v4-mapped", s: newTCP(inet.IPv6), op: bind("[::ffff:192.0.2.1]:5000"),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "nonlocal"}},
		{name: "non-local with ip_nonlocal_bind", host: func(h *Host) { h.NonlocalBind4 = true }, s: newTCP(inet.IPv4), op: bind("192.0.2.1:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "non-local with IP_FREEBIND", s: with(newTCP(inet.IPv6), func(s *Socket) { s.Freebind = true }), op: bind("[2001:db8::1]:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "privileged port", s: newTCP(inet.IPv4), op: bind("127.0.0.1:80"),
			want: verdict{Err: "EACCES", Rule: "privileged"}},
		{name: "privileged port with CAP_NET_BIND_SERVICE", s: with(newTCP(inet.IPv4), func(s *Socket) { s.CanBindPrivileged = true }), op: bind("127.0.0.1:80"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "privileged port lowered start", host: func(h *Host) { h.UnprivilegedPortStart = 0 }, s: newTCP(inet.IPv4), op: bind("127.0.0.1:80"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "already bound", s: tcp(inet.IPv4, "127.0.0.1:5000", Bound), op: bind("127.0.0.1:5001"),
			want: verdict{Err: "EINVAL", Rule: "already-bound"}},
		{name: "bound without port may bind again", s: with(tcp(inet.IPv4, "127.0.0.1:0", Bound), func(s *Socket) { s.BindNoPort = true }), op: bind("127.0.0.1:5001"),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "v4-mapped on v6only", s: with(newTCP(inet.IPv6), v6o), op: bind("[::ffff:127.0.0.1]:5000"),
			want: verdict{Err: "EINVAL", Rule: "v6only-mapped"}},
		{name: "v4-mapped with bindv6only default", host: func(h *Host) { h.BindV6Only = true }, s: with(newTCP(inet.IPv6), func(s *Socket) { s.V6OnlyDefault = true }), op: bind("[::ffff:127.0.0.1]:5000"),
			want: verdict{Err: "EINVAL", Rule: "v6only-mapped"}},
		{name: "link-local without scope", s: newTCP(inet.IPv6), op: bind("[fe80::1]:5000"),
			want: verdict{Err: "EINVAL", Rule: "linklocal-scope"}},
		{name: "bind-no-port defers the port", s: with(newTCP(inet.IPv4), func(s *Socket) { s.BindNoPort = true }), op: bind("127.0.0.1:0"),
			want: verdict{Err: "ok", Rule: "bind-no-port"}},
	})
}

func TestTCPBindReuse(t *testing.T) {
	a := "127.0.0.1:5000"
	runCases(t, []ruleCase{
		{name: "free port", s: newTCP(inet.IPv4), op: bind(a), want: verdict{Err: "ok", Rule: "free"}},
		{name: "bound owner, no options", have: []Socket{tcp(inet.IPv4, a, Bound)}, s: newTCP(inet.IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "reuseaddr on both, owner bound", have: []Socket{with(tcp(inet.IPv4, a, Bound), ra)}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "reuseaddr only on the new socket", have: []Socket{tcp(inet.IPv4, a, Bound)}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "reuseaddr never against a listener", have: []Socket{with(tcp(inet.IPv4, a, Listen), ra)}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "reuseaddr against a connected owner", have: []Socket{with(tcp(inet.IPv4, a, Connected), ra)}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "reuseport same uid listener", have: []Socket{with(tcp(inet.IPv4, a, Listen), rp)}, s: with(newTCP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "reuseport different uid", have: []Socket{with(with(tcp(inet.IPv4, a, Listen), rp), uid(1000))}, s: with(newTCP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "reuseport different uid TIME_WAIT", have: []Socket{with(with(tcp(inet.IPv4, a, TimeWait), rp), uid(1000))}, s: with(newTCP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "reuseport already in a group", have: []Socket{with(tcp(inet.IPv4, a, Listen), rp)}, s: with(newTCP(inet.IPv4), func(s *Socket) { s.ReusePort, s.InGroup = true, true }), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "TIME_WAIT without reuse blocks reuseaddr bind", have: []Socket{tcp(inet.IPv4, a, TimeWait)}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "TIME_WAIT with reuseaddr", have: []Socket{with(tcp(inet.IPv4, a, TimeWait), ra)}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "different devices", have: []Socket{with(tcp(inet.IPv4, a, Listen), func(s *Socket) { s.Dev = 2 })}, s: with(newTCP(inet.IPv4), func(s *Socket) { s.Dev = 3 }), op: bind(a),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "device and no device", have: []Socket{with(tcp(inet.IPv4, a, Listen), func(s *Socket) { s.Dev = 2 })}, s: newTCP(inet.IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "other protocol does not count", have: []Socket{udp(inet.IPv4, a)}, s: newTCP(inet.IPv4), op: bind(a),
			want: verdict{Err: "ok", Rule: "free"}},
		{name: "every blocker is named", have: []Socket{tcp(inet.IPv4, a, Listen), tcp(inet.IPv4, "0.0.0.0:5000", Bound), tcp(inet.IPv4, "127.0.0.2:5000", Bound)}, s: newTCP(inet.IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0, 1}}},
	})
}

func TestListen(t *testing.T) {
	a := "127.0.0.1:5000"
	runCases(t, []ruleCase{
		{name: "listen rechecks against a reuseaddr listener", have: []Socket{with(tcp(inet.IPv4, a, Listen), both)}, s: with(with(tcp(inet.IPv4, a, Bound), both), uid(7)), op: listenOp,
			want: verdict{Err: "EADDRINUSE", Rule: "listen-conflict", Blockers: []int{0}}},
		{name: "listen with reuseaddr next to bound reuseaddr", have: []Socket{with(tcp(inet.IPv4, a, Bound), ra)}, s: with(tcp(inet.IPv4, a, Bound), ra), op: listenOp,
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "two reuseport listeners", have: []Socket{with(tcp(inet.IPv4, a, Listen), rp)}, s: with(tcp(inet.IPv4, a, Bound), rp), op: listenOp,
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "listen on UDP", s: udp(inet.IPv4, a), op: listenOp, want: verdict{Err: "EOPNOTSUPP", Rule: "udp-listen"}},
		{name: "listen when connected", s: tcp(inet.IPv4, a, Connected), op: listenOp, want: verdict{Err: "EINVAL", Rule: "listen-state"}},
		{name: "listen autobinds", s: newTCP(inet.IPv4), op: listenOp, want: verdict{Err: "ok", Rule: "autobind"}},
	})
}

// TestOverlapTable has one case per cell of docs/kernel-rules.md's overlap
// table: an existing bound TCP socket (row: new, column: old) and a new
// bind to the same port without reuse options.
func TestOverlapTable(t *testing.T) {
	type side struct {
		fam    inet.Family
		addr   string
		v6only bool
	}
	v4a := side{inet.IPv4, "127.0.0.1", false}
	mapA := side{inet.IPv6, "::ffff:127.0.0.1", false}
	v4b := side{inet.IPv4, "127.0.0.2", false}
	any4 := side{inet.IPv4, "0.0.0.0", false}
	anyMapped := side{inet.IPv6, "::ffff:0.0.0.0", false}
	any6 := side{inet.IPv6, "::", false}
	any6only := side{inet.IPv6, "::", true}
	x := side{inet.IPv6, "fd00::1", true}
	x2 := side{inet.IPv6, "fd00::2", true}
	xDual := side{inet.IPv6, "fd00::1", false} // connect()ed without bind: v6only stays off
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
		{name: "UCONFL plain", have: []Socket{udp(inet.IPv4, a)}, s: newUDP(inet.IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "reuseaddr on both shares", have: []Socket{with(udp(inet.IPv4, a), ra)}, s: with(newUDP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "connected counts like bound", have: []Socket{with(udp(inet.IPv4, a), func(s *Socket) { s.State = Connected; s.Remote = ap("127.0.0.1:9") })}, s: newUDP(inet.IPv4), op: bind("0.0.0.0:5000"),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "reuseport same uid", have: []Socket{with(udp(inet.IPv4, a), rp)}, s: with(newUDP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "reuseport different uid", have: []Socket{with(with(udp(inet.IPv4, a), rp), uid(5))}, s: with(newUDP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "newest overlapping IPv4 socket decides", have: []Socket{udp(inet.IPv4, a), with(udp(inet.IPv4, "0.0.0.0:5000"), both)}, s: with(newUDP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "IPv6 reuseport sockets are checked last", have: []Socket{udp(inet.IPv4, a), with(udp(inet.IPv6, "[::]:5000"), both)}, s: with(newUDP(inet.IPv6), rp), op: bind("[::]:5000"),
			want: verdict{Err: "EADDRINUSE", Rule: "udp-conflict", Blockers: []int{0}}},
		{name: "v6only wildcard and v4", have: []Socket{with(udp(inet.IPv6, "[::]:5000"), v6o)}, s: newUDP(inet.IPv4), op: bind("0.0.0.0:5000"),
			want: verdict{Err: "ok", Rule: "free"}},
	})
}

func TestAutobind(t *testing.T) {
	narrow := func(h *Host) { h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40003} }
	held := func(fam inet.Family, ports ...int) []Socket {
		var ss []Socket
		for _, p := range ports {
			ss = append(ss, tcp(fam, netip.AddrPortFrom(netip.MustParseAddr("0.0.0.0"), uint16(p)).String(), Listen))
		}
		return ss
	}
	runCases(t, []ruleCase{
		{name: "bind(0) takes a free port", host: narrow, have: held(inet.IPv4, 40000, 40001, 40002), s: newTCP(inet.IPv4), op: bind("127.0.0.1:0"),
			want: verdict{Err: "ok", Rule: "autobind"}},
		{name: "bind(0) exhausted", host: narrow, have: held(inet.IPv4, 40000, 40001, 40002, 40003), s: newTCP(inet.IPv4), op: bind("127.0.0.1:0"),
			want: verdict{Err: "EADDRINUSE", Rule: "autobind-exhausted", Blockers: []int{0, 1, 2, 3}}},
		{name: "reserved ports are skipped", host: func(h *Host) { narrow(h); h.ReservedPorts = []inet.PortRange{{Lo: 40003, Hi: 40003}} }, have: held(inet.IPv4, 40000, 40001, 40002), s: newTCP(inet.IPv4), op: bind("127.0.0.1:0"),
			want: verdict{Err: "EADDRINUSE", Rule: "autobind-exhausted", Blockers: []int{0, 1, 2}}},
		{name: "autobind_reuse second pass", host: func(h *Host) { narrow(h); h.AutobindReuse = true },
			have: []Socket{with(tcp(inet.IPv4, "127.0.0.1:40000", Connected), ra), tcp(inet.IPv4, "0.0.0.0:40001", Listen), tcp(inet.IPv4, "0.0.0.0:40002", Listen), tcp(inet.IPv4, "0.0.0.0:40003", Listen)},
			s:    with(newTCP(inet.IPv4), ra), op: bind("127.0.0.1:0"), want: verdict{Err: "ok", Rule: "autobind-reuse"}},
		{name: "listen autobind exhausted", host: narrow, have: held(inet.IPv4, 40000, 40001, 40002, 40003), s: newTCP(inet.IPv4), op: listenOp,
			want: verdict{Err: "EADDRINUSE", Rule: "autobind-exhausted", Blockers: []int{0, 1, 2, 3}}},
		{name: "udp bind(0) exhausted", host: narrow,
			have: []Socket{udp(inet.IPv4, "0.0.0.0:40000"), udp(inet.IPv4, "0.0.0.0:40001"), udp(inet.IPv4, "0.0.0.0:40002"), udp(inet.IPv4, "0.0.0.0:40003")},
			s:    newUDP(inet.IPv4), op: bind("0.0.0.0:0"), want: verdict{Err: "EADDRINUSE", Rule: "autobind-exhausted", Blockers: []int{0, 1, 2, 3}}},
		{name: "udp connect autobind exhausted is EAGAIN", host: narrow,
			have: []Socket{udp(inet.IPv4, "0.0.0.0:40000"), udp(inet.IPv4, "0.0.0.0:40001"), udp(inet.IPv4, "0.0.0.0:40002"), udp(inet.IPv4, "0.0.0.0:40003")},
			s:    newUDP(inet.IPv4), op: connect("127.0.0.1:53"), want: verdict{Err: "EAGAIN", Rule: "udp-autobind-exhausted", Blockers: []int{0, 1, 2, 3}}},
	})
}

func TestEffectiveRange(t *testing.T) {
	h := DefaultHost()
	for _, c := range []struct {
		per  inet.PortRange
		want inet.PortRange
	}{
		{inet.PortRange{}, inet.PortRange{Lo: 32768, Hi: 60999}},
		{inet.PortRange{Lo: 40000, Hi: 40010}, inet.PortRange{Lo: 40000, Hi: 40010}},
		{inet.PortRange{Lo: 1000, Hi: 40010}, inet.PortRange{Lo: 32768, Hi: 40010}}, // low end outside: ignored
		{inet.PortRange{Lo: 40000, Hi: 65000}, inet.PortRange{Lo: 40000, Hi: 60999}},
		{inet.PortRange{Lo: 0, Hi: 40000}, inet.PortRange{Lo: 32768, Hi: 40000}},
	} {
		got, per := EffectiveRange(h, Socket{PortRange: c.per})
		if got != c.want || per != !c.per.IsZero() {
			t.Errorf("EffectiveRange(%v) = %v, %v; want %v", c.per, got, per, c.want)
		}
	}
}

func TestConnect(t *testing.T) {
	narrow := func(h *Host) { h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40001} }
	peer := "127.0.0.1:80"
	cb := func(s *Socket) { s.PortFromConnect = true }
	conn := func(local, remote string, f ...func(*Socket)) Socket {
		s := tcp(inet.IPv4, local, Connected)
		s.Remote = ap(remote)
		for _, g := range f {
			g(&s)
		}
		return s
	}
	tw := func(s *Socket) { s.State = TimeWait; s.TWTimestamps = true; s.TWAge = 2 * time.Second }
	runCases(t, []ruleCase{
		{name: "bound: four-tuple unique", have: []Socket{conn("127.0.0.1:5000", "127.0.0.1:81")}, s: tcp(inet.IPv4, "127.0.0.1:5000", Bound), op: connect(peer),
			want: verdict{Err: "ok", Rule: "four-tuple-unique"}},
		{name: "bound: same four-tuple live", have: []Socket{conn("127.0.0.1:5000", peer)}, s: tcp(inet.IPv4, "127.0.0.1:5000", Bound), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "four-tuple", Blockers: []int{0}}},
		{name: "bound: TIME_WAIT with timestamps taken over", have: []Socket{conn("127.0.0.1:5000", peer, tw)}, s: tcp(inet.IPv4, "127.0.0.1:5000", Bound), op: connect(peer),
			want: verdict{Err: "ok", Rule: "tw-takeover"}},
		{name: "bound: TIME_WAIT without timestamps", have: []Socket{conn("127.0.0.1:5000", peer, tw, func(s *Socket) { s.TWTimestamps = false })}, s: tcp(inet.IPv4, "127.0.0.1:5000", Bound), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "four-tuple", Blockers: []int{0}}},
		{name: "search shares connect-bound ports", host: narrow, have: []Socket{conn("127.0.0.1:40000", "127.0.0.1:81", cb)}, s: newTCP(inet.IPv4), op: connect(peer),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "search skips bind-origin ports", host: narrow, have: []Socket{tcp(inet.IPv4, "127.0.0.2:40000", Bound), conn("127.0.0.1:40001", "127.0.0.1:81")}, s: newTCP(inet.IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0, 1}}},
		{name: "search skips used four-tuples", host: narrow, have: []Socket{conn("127.0.0.1:40000", peer, cb), conn("127.0.0.1:40001", peer, cb)}, s: newTCP(inet.IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0, 1}}},
		{name: "search reuses TIME_WAIT on loopback", host: narrow, have: []Socket{conn("127.0.0.1:40000", peer, cb, tw), conn("127.0.0.1:40001", peer, cb)}, s: newTCP(inet.IPv4), op: connect(peer),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "search: TIME_WAIT too young", host: narrow, have: []Socket{conn("127.0.0.1:40000", peer, cb, tw, func(s *Socket) { s.TWAge = 0 }), conn("127.0.0.1:40001", peer, cb)}, s: newTCP(inet.IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0, 1}}},
		{name: "search: tcp_tw_reuse 0", host: func(h *Host) { narrow(h); h.TCPTWReuse = 0 }, have: []Socket{conn("127.0.0.1:40000", peer, cb, tw), conn("127.0.0.1:40001", peer, cb)}, s: newTCP(inet.IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0, 1}}},
		{name: "v6only to mapped", s: with(newTCP(inet.IPv6), v6o), op: connect("[::ffff:127.0.0.1]:80"),
			want: verdict{Err: "ENETUNREACH", Rule: "v6only-connect"}},
		{name: "AF_INET to IPv6", s: newTCP(inet.IPv4), op: connect("[::1]:80"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		{name: "udp connect ignores four-tuples", have: []Socket{with(udp(inet.IPv4, "127.0.0.1:5000"), func(s *Socket) { s.ReuseAddr = true; s.State = Connected; s.Remote = ap(peer) })},
			s: with(udp(inet.IPv4, "127.0.0.1:5000"), ra), op: connect(peer), want: verdict{Err: "ok", Rule: "udp-connect"}},
	})
}

func TestAssumptions(t *testing.T) {
	owner := tcp(inet.IPv4, "127.0.0.1:5000", TimeWait)
	owner.ID = "inode 4711"
	owner.Unknown = FactReusePort | FactReuseAddr
	owner.UnknownReason = "TIME_WAIT"
	o := Predict(World{Host: testHost(), Sockets: []Socket{owner}}, newTCP(inet.IPv4), bind("127.0.0.1:5000"))
	want := []string{
		"assumed SO_REUSEADDR off on inode 4711 (unreadable: TIME_WAIT)",
		"assumed SO_REUSEPORT off on inode 4711 (unreadable: TIME_WAIT)",
	}
	if diff := cmp.Diff(want, o.Assumptions); diff != "" {
		t.Errorf("assumptions (-want +got):\n%s", diff)
	}
}

// TestSeedCases are the situations of the seed walkthrough, as a user
// meets them.
func TestSeedCases(t *testing.T) {
	a := "127.0.0.1:7000"
	peer := "127.0.0.1:9000"
	client := func(f ...func(*Socket)) Socket {
		s := tcp(inet.IPv4, a, Connected)
		s.Remote = ap(peer)
		for _, g := range f {
			g(&s)
		}
		return s
	}
	runCases(t, []ruleCase{
		// nc -p 7000 twice: the first client holds the port (bound, no options).
		{name: "nc-style double -p", have: []Socket{client()}, s: newTCP(inet.IPv4), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "double -p with SO_REUSEADDR on both", have: []Socket{client(ra)}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseaddr"}},
		{name: "double -p with SO_REUSEPORT on both", have: []Socket{client(rp)}, s: with(newTCP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "ok", Rule: "reuseport"}},
		{name: "same destination from the shared port", have: []Socket{client(ra)}, s: with(tcp(inet.IPv4, a, Bound), ra), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "four-tuple", Blockers: []int{0}}},
		{name: "another destination from the shared port", have: []Socket{client(ra)}, s: with(tcp(inet.IPv4, a, Bound), ra), op: connect("127.0.0.1:9001"),
			want: verdict{Err: "ok", Rule: "four-tuple-unique"}},
		{name: "reuseport from a different uid", have: []Socket{client(rp, uid(1000))}, s: with(newTCP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "TIME_WAIT on the same four-tuple blocks the bind", have: []Socket{client(func(s *Socket) { s.State = TimeWait; s.TWTimestamps = true })}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
		{name: "TIME_WAIT with reuseaddr, then the same four-tuple is taken over", have: []Socket{client(ra, func(s *Socket) { s.State = TimeWait; s.TWTimestamps = true })}, s: with(tcp(inet.IPv4, a, Bound), ra), op: connect(peer),
			want: verdict{Err: "ok", Rule: "tw-takeover"}},
		{name: "a listener on the port", have: []Socket{with(tcp(inet.IPv4, "0.0.0.0:7000", Listen), ra)}, s: with(newTCP(inet.IPv4), ra), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
	})
}

// TestKernelQuirks pins behaviours the differential test found in the
// kernel that the plain rules do not predict.
func TestKernelQuirks(t *testing.T) {
	runCases(t, []ruleCase{
		// inet_csk_update_fastreuse: the last reuseport binder (uid 0,
		// 0.0.0.0) lets a later uid-0 reuseport socket on :: through
		// without the scan that would find the listener without reuseport.
		{name: "fastreuseport cache skips the check",
			have: []Socket{with(tcp(inet.IPv6, "[fd00::2]:5000", Listen), func(s *Socket) { s.ReuseAddr = true; s.V6Only = true }), with(tcp(inet.IPv4, "0.0.0.0:5000", Listen), both)},
			s:    with(newTCP(inet.IPv6), both), op: bind("[::]:5000"),
			want: verdict{Err: "ok", Rule: "fastreuseport-cache"}},
		{name: "fastreuseport cache does not cover a mapped binder",
			// The listener (uid 65534) and its child, accepted by uid 0.
			have: []Socket{with(with(tcp(inet.IPv6, "[::ffff:127.0.0.2]:5000", Listen), rp), uid(65534)), with(tcp(inet.IPv6, "[::ffff:127.0.0.2]:5000", Connected), func(s *Socket) { s.ReusePort = true; s.Remote = ap("127.0.0.1:4000") })},
			s:    with(with(newTCP(inet.IPv4), both), uid(65534)), op: bind("0.0.0.0:5000"),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{1}}},
		{name: "connect from a v4-mapped bind to IPv6", s: tcp(inet.IPv6, "[::ffff:127.0.0.1]:5000", Bound), op: connect("[::1]:80"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		{name: "UDP AF_INET6 connect with a sockaddr_in", s: newUDP(inet.IPv6), op: connect("127.0.0.1:53"),
			want: verdict{Err: "ok", Rule: "udp-connect"}},
		{name: "UDP v6only connect with a sockaddr_in", s: with(newUDP(inet.IPv6), v6o), op: connect("127.0.0.1:53"),
			want: verdict{Err: "EAFNOSUPPORT", Rule: "family"}},
		{name: "connect on a listener", s: tcp(inet.IPv4, "127.0.0.1:5000", Listen), op: connect("127.0.0.1:80"),
			want: verdict{Err: "EISCONN", Rule: "connect-state"}},
	})
}

func TestRangeWalks(t *testing.T) {
	h := func(lo, hi uint16) func(*Host) {
		return func(h *Host) { h.EphemeralRange = inet.PortRange{Lo: lo, Hi: hi} }
	}
	for _, c := range []struct {
		name string
		host func(*Host)
		s    Socket
		op   Op
		want int
	}{
		// remaining &= ~1: a 3-port range never tries its top port.
		{"bind(0) odd range skips the top port", h(40000, 40002), newTCP(inet.IPv4), bind("127.0.0.1:0"), 2},
		{"bind(0) with reuseaddr walks two halves", h(40000, 40004), with(newTCP(inet.IPv4), ra), bind("127.0.0.1:0"), 4},
		{"connect odd range skips the top port", h(40000, 40002), newTCP(inet.IPv4), connect("127.0.0.1:80"), 2},
		{"connect with a socket range tries every port", h(40000, 40010), with(newTCP(inet.IPv4), func(s *Socket) { s.PortRange = inet.PortRange{Lo: 40000, Hi: 40002} }), connect("127.0.0.1:80"), 3},
		{"udp bind(0) tries every port", h(40000, 40002), newUDP(inet.IPv4), bind("0.0.0.0:0"), 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			hst := testHost()
			c.host(&hst)
			o := Predict(World{Host: hst}, c.s, c.op)
			if o.Candidates != c.want || !o.OK() {
				t.Errorf("%s: candidates %d, want %d (%s)", o.ErrName(), o.Candidates, c.want, o.Why)
			}
		})
	}
}

func TestAfter(t *testing.T) {
	h := testHost()
	o := Predict(World{Host: h}, newTCP(inet.IPv6), bind("[fd00::1]:5000"))
	if !o.After.V6Only || o.After.State != Bound || o.After.Local != ap("[fd00::1]:5000") {
		t.Errorf("bind to a specific IPv6 address: After = %+v, want v6only forced, bound", o.After)
	}
	h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40000}
	o = Predict(World{Host: h}, newTCP(inet.IPv4), connect("127.0.0.1:80"))
	if o.After.Local != ap("127.0.0.1:40000") || o.After.State != Connected || !o.After.PortFromConnect {
		t.Errorf("connect with one candidate: After = %+v", o.After)
	}
}

func TestOtherRules(t *testing.T) {
	peer := "10.9.0.1:80"
	tw := func(s *Socket) {
		s.State, s.Remote, s.TWTimestamps, s.TWAge, s.PortFromConnect = TimeWait, ap(peer), true, 5*time.Second, true
	}
	runCases(t, []ruleCase{
		{name: "TCP bind to multicast", s: newTCP(inet.IPv6), op: bind("[ff05::1]:5000"), want: verdict{Err: "EINVAL", Rule: "multicast"}},
		{name: "UDP bind to multicast", s: newUDP(inet.IPv6), op: bind("[ff05::1]:5000"), want: verdict{Err: "ok", Rule: "free"}},
		{name: "listen twice", s: tcp(inet.IPv4, "127.0.0.1:5000", Listen), op: listenOp, want: verdict{Err: "ok", Rule: "already-listening"}},
		{name: "unknown protocol", s: Socket{Family: inet.IPv4}, op: bind("127.0.0.1:5000"), want: verdict{Err: "EPROTONOSUPPORT", Rule: "proto"}},
		{name: "unknown operation", s: newTCP(inet.IPv4), op: Op{Kind: 9}, want: verdict{Err: "EINVAL", Rule: "op"}},
		// tcp_tw_reuse=2 reuses TIME_WAIT only for loopback traffic.
		{name: "tw_reuse 2 off loopback", host: func(h *Host) { h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40000} },
			have: []Socket{with(tcp(inet.IPv4, "10.9.0.1:40000", Connected), tw)}, s: newTCP(inet.IPv4), op: connect(peer),
			want: verdict{Err: "EADDRNOTAVAIL", Rule: "connect-exhausted", Blockers: []int{0}}},
		{name: "tw_reuse 1 off loopback", host: func(h *Host) { h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40000}; h.TCPTWReuse = 1 },
			have: []Socket{with(tcp(inet.IPv4, "10.9.0.1:40000", Connected), tw)}, s: newTCP(inet.IPv4), op: connect(peer),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "bind-no-port then connect searches", host: func(h *Host) { h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40001} },
			have: []Socket{tcp(inet.IPv4, "127.0.0.2:40000", Bound)}, s: with(tcp(inet.IPv4, "127.0.0.1:0", Bound), func(s *Socket) { s.BindNoPort = true }), op: connect("127.0.0.1:80"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		// With every listener known, a local peer nobody listens on refuses.
		{name: "no listener on a local peer", host: func(h *Host) { h.AllListeners = true },
			have: []Socket{tcp(inet.IPv4, "127.0.0.1:80", Bound)}, s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"),
			want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
		{name: "wildcard listener covers a local peer", host: func(h *Host) { h.AllListeners = true },
			have: []Socket{tcp(inet.IPv4, "0.0.0.0:80", Listen)}, s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "dual-stack listener covers an IPv4 peer", host: func(h *Host) { h.AllListeners = true },
			have: []Socket{tcp(inet.IPv6, "[::]:80", Listen)}, s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"),
			want: verdict{Err: "ok", Rule: "connect-search"}},
		{name: "v6only listener does not cover an IPv4 peer", host: func(h *Host) { h.AllListeners = true },
			have: []Socket{with(tcp(inet.IPv6, "[::]:80", Listen), func(s *Socket) { s.V6Only = true })}, s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"),
			want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
		{name: "listener on another address", host: func(h *Host) { h.AllListeners = true },
			have: []Socket{tcp(inet.IPv4, "127.0.0.2:80", Listen)}, s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"),
			want: verdict{Err: "ECONNREFUSED", Rule: "no-listener"}},
		{name: "partial world: a missing listener is not assumed", have: []Socket{tcp(inet.IPv4, "127.0.0.1:80", Bound)},
			s: newTCP(inet.IPv4), op: connect("127.0.0.1:80"), want: verdict{Err: "ok", Rule: "connect-search"}},
	})
}

func TestUnknownSource(t *testing.T) {
	h := testHost()
	h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40000}
	o := Predict(World{Host: h}, newTCP(inet.IPv4), connect("198.51.100.7:443"))
	want := []string{"the source address for 198.51.100.7 is unknown: four-tuples were compared on the remote end only"}
	if diff := cmp.Diff(want, o.Assumptions); diff != "" || !o.OK() {
		t.Errorf("%s; assumptions (-want +got):\n%s", o.ErrName(), diff)
	}
	o = Predict(World{Host: h}, newTCP(inet.IPv4), Op{Kind: OpConnect, Addr: ap("198.51.100.7:443"), Source: netip.MustParseAddr("10.9.0.1")})
	if len(o.Assumptions) != 0 || o.After.Local != ap("10.9.0.1:40000") {
		t.Errorf("with Op.Source: assumptions %q, After.Local %v", o.Assumptions, o.After.Local)
	}
}

// TestExactBuckets: a bind bucket read from the kernel replaces what the
// model reconstructs from the owners.
func TestExactBuckets(t *testing.T) {
	a := "127.0.0.1:5000"
	owner := with(tcp(inet.IPv4, a, Connected), func(s *Socket) { s.ReuseAddr, s.Remote = true, ap("127.0.0.1:7") })
	runCases(t, []ruleCase{
		// From the owners alone the bind conflicts...
		{name: "reconstructed cache", have: []Socket{owner}, s: with(newTCP(inet.IPv4), rp), op: bind(a),
			want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{0}}},
	})
	// ...but a reuseport socket of uid 0 on 127.0.0.1 that has since left
	// set the cache, and the kernel skips the scan.
	h := testHost()
	w := World{Host: h, Sockets: []Socket{owner}, Buckets: []Bucket{{Port: 5000, FastReuse: 0, FastReusePort: 2, FastUID: 0, FastFamily: inet.IPv4, FastAddr: netip.MustParseAddr("127.0.0.1")}}}
	if o := Predict(w, with(newTCP(inet.IPv4), rp), bind(a)); o.Err != 0 || o.Rule != "fastreuseport-cache" {
		t.Errorf("with the exact bucket: %s %s, want ok fastreuseport-cache", o.ErrName(), o.Rule)
	}
	// connect(): a bind()-origin owner, but the bucket says connect-only.
	h.EphemeralRange = inet.PortRange{Lo: 5000, Hi: 5000}
	w = World{Host: h, Sockets: []Socket{owner}, Buckets: []Bucket{{Port: 5000, FastReuse: -1, FastReusePort: -1}}}
	if o := Predict(w, newTCP(inet.IPv4), connect("127.0.0.1:8")); o.Err != 0 || o.Candidates != 1 {
		t.Errorf("connect-only bucket: %s, %d candidates; want ok, 1", o.ErrName(), o.Candidates)
	}
	w.Buckets = nil
	if o := Predict(w, newTCP(inet.IPv4), connect("127.0.0.1:8")); o.Err != syscall.EADDRNOTAVAIL {
		t.Errorf("reconstructed bucket: %s, want EADDRNOTAVAIL", o.ErrName())
	}
}

// A conflict's reason names each socket once: "the new socket lacks
// SO_REUSEADDR and SO_REUSEPORT", not "the new socket lacks SO_REUSEADDR,
// and the new socket lacks SO_REUSEPORT"; and it still names every option.
func TestTCPConflictReasonNamesEachSocketOnce(t *testing.T) {
	for bits := range 32 {
		n := Socket{Proto: inet.TCP, ReuseAddr: bits&1 != 0, ReusePort: bits&2 != 0, InGroup: bits&16 != 0, UID: 1000}
		o := Socket{Proto: inet.TCP, State: Connected, Local: netip.MustParseAddrPort("10.0.0.1:80"),
			ReuseAddr: bits&4 != 0, ReusePort: bits&8 != 0}
		if n.ReuseAddr && o.ReuseAddr {
			o.State = Listen // otherwise SO_REUSEADDR shares
		}
		if n.ReusePort && o.ReusePort && !n.InGroup {
			o.UID = 1 // otherwise SO_REUSEPORT shares
		}
		why := tcpConflictReason(n, o)
		if strings.Count(why, ", and ") > 1 {
			t.Errorf("new ra=%v rp=%v group=%v, owner ra=%v rp=%v: %q joins three clauses with \", and\"", n.ReuseAddr, n.ReusePort, n.InGroup, o.ReuseAddr, o.ReusePort, why)
		}
		for _, twice := range []string{"the new socket", "it lacks", "neither"} {
			if strings.Count(why, twice) > 1 {
				t.Errorf("new ra=%v rp=%v group=%v, owner ra=%v rp=%v: %q says %q twice", n.ReuseAddr, n.ReusePort, n.InGroup, o.ReuseAddr, o.ReusePort, why, twice)
			}
		}
		for _, opt := range []string{"SO_REUSEADDR", "SO_REUSEPORT"} {
			if !strings.Contains(why, opt) && !(opt == "SO_REUSEPORT" && strings.Contains(why, "reuseport group")) {
				t.Errorf("new ra=%v rp=%v, owner ra=%v rp=%v: %q does not say what %s lacks", n.ReuseAddr, n.ReusePort, o.ReuseAddr, o.ReusePort, why, opt)
			}
		}
	}
}

// TestFirstOwnerSetsFastreuse: before 6.8 the port's first binder sets the
// reuse cache to FASTREUSEPORT_ANY for its uid, so a later SO_REUSEPORT
// bind of that uid skips the scan that would meet the listener's child,
// accepted by another uid (the differential test's case on 5.10 and 6.1);
// from 6.8 the scan runs and meets it.
func TestFirstOwnerSetsFastreuse(t *testing.T) {
	on := func(v string) func(*Host) {
		return func(h *Host) {
			k, err := ParseKernel(v)
			if err != nil {
				t.Fatal(err)
			}
			h.Kernel = k
		}
	}
	have := []Socket{
		with(with(tcp(inet.IPv4, "127.0.0.1:5780", Listen), rp), uid(65534)),
		with(tcp(inet.IPv4, "127.0.0.1:5780", Connected), func(s *Socket) { s.ReusePort = true; s.Remote = ap("127.0.0.1:5785") }),
	}
	s := with(with(newTCP(inet.IPv6), both), uid(65534))
	runCases(t, []ruleCase{
		{name: "5.10", host: on("5.10"), have: have, s: s, op: bind("[::ffff:0.0.0.0]:5780"), want: verdict{Err: "ok", Rule: "fastreuseport-cache"}},
		{name: "6.1", host: on("6.1"), have: have, s: s, op: bind("[::ffff:0.0.0.0]:5780"), want: verdict{Err: "ok", Rule: "fastreuseport-cache"}},
		{name: "6.12", host: on("6.12"), have: have, s: s, op: bind("[::ffff:0.0.0.0]:5780"), want: verdict{Err: "EADDRINUSE", Rule: "bind-conflict", Blockers: []int{1}}},
	})
}
