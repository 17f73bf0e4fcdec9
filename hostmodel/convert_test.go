package hostmodel

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

func known(v bool) socktab.Bool { return socktab.Bool{Known: true, Value: v} }

var unknown = socktab.Bool{Reason: "pidfd_getfd not permitted"}

func TestConvert(t *testing.T) {
	host := rules.DefaultHost()
	ap := netip.MustParseAddrPort
	listener := socktab.Socket{Proto: inet.TCP, Family: inet.IPv6, State: socktab.Listen, Local: ap("[::]:8080"),
		V6Only: known(false), Options: socktab.Options{ReuseAddr: known(true), ReusePort: known(true)}, UID: 1000}
	child := socktab.Socket{Proto: inet.TCP, Family: inet.IPv6, State: socktab.Established,
		Local: ap("[::ffff:127.0.0.1]:8080"), Remote: ap("[::ffff:127.0.0.1]:40000"),
		Options: socktab.Options{ReuseAddr: unknown, ReusePort: unknown, V6Only: unknown}}
	tw := socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.TimeWait,
		Local: ap("127.0.0.1:5555"), Remote: ap("127.0.0.2:80"), TimeLeft: 45 * time.Second,
		Options: socktab.Options{ReuseAddr: unknown, ReusePort: unknown}}
	client := socktab.Socket{Proto: inet.TCP, Family: inet.IPv6, State: socktab.SynSent,
		Local: ap("[fd00::1]:40001"), Remote: ap("[fd00::2]:80"),
		Options: socktab.Options{ReuseAddr: known(false), ReusePort: known(false), V6Only: unknown}}
	bound6 := socktab.Socket{Proto: inet.TCP, Family: inet.IPv6, State: socktab.BoundInactive, Local: ap("[fd00::1]:9000"),
		Options: socktab.Options{ReuseAddr: unknown, ReusePort: known(true), V6Only: unknown}}
	udpConn := socktab.Socket{Proto: inet.UDP, Family: inet.IPv4, State: socktab.Established,
		Local: ap("127.0.0.1:53000"), Remote: ap("127.0.0.1:53"), Options: socktab.Options{ReuseAddr: known(true), ReusePort: known(false)}}
	req := socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.NewSynRecv, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:40000")}
	all := []socktab.Socket{listener, child, tw, client, bound6, udpConn, req}

	conv := func(s socktab.Socket) (rules.Socket, Entry) {
		t.Helper()
		e, ok := convert(host, &s, all, nil, true)
		if !ok {
			t.Fatalf("convert(%v) left it out", s.Local)
		}
		return e.Socket, e
	}

	l, _ := conv(listener)
	if l.State != rules.Listen || !l.ReuseAddr || !l.ReusePort || l.V6Only || l.PortFromConnect || l.Unknown != 0 || l.UID != 1000 {
		t.Errorf("listener: %+v", l)
	}
	c, _ := conv(child)
	if c.State != rules.Connected || !c.ReusePort || !c.ReuseAddr || c.PortFromConnect || c.Unknown != 0 {
		t.Errorf("accepted child should inherit the listener's flags and its port origin: %+v", c)
	}
	w, we := conv(tw)
	if w.State != rules.TimeWait || w.TWAge != 15*time.Second || we.TimeLeft != 45*time.Second ||
		w.Unknown&(rules.FactReuseAddr|rules.FactReusePort|rules.FactTimestamps) == 0 || w.Unknown&rules.FactPortOrigin == 0 || w.PortFromConnect {
		t.Errorf("TIME_WAIT: %+v", w)
	}
	if !strings.Contains(strings.Join(we.Assumed, "\n"), "outside the ephemeral range") {
		t.Errorf("TIME_WAIT assumptions do not state the port origin: %q", we.Assumed)
	}
	// With the kernel's record, nothing is assumed.
	kf := &sockfacts.Sock{Proto: inet.TCP, Family: 4, Local: tw.Local, Remote: tw.Remote, TimeWait: true,
		ReuseAddr: true, ConnectBind: true, ConnectBindKnown: true, Timestamps: false}
	idx := IndexFacts([]sockfacts.Sock{*kf})
	if e, ok := convert(host, &tw, all, idx.Lookup(&tw), true); !ok || e.Socket.Unknown != 0 || !e.Socket.ReuseAddr ||
		e.Socket.ReusePort || !e.Socket.PortFromConnect || e.Socket.TWTimestamps || len(e.Assumed) != 0 {
		t.Errorf("TIME_WAIT with the kernel's record: %+v %q", e.Socket, e.Assumed)
	}
	if idx.Lookup(&listener) != nil {
		t.Error("Lookup matched a socket the kernel record is not about")
	}
	cl, ce := conv(client)
	if cl.State != rules.Connected || !cl.PortFromConnect || cl.Unknown != rules.FactV6Only|rules.FactPortOrigin || cl.V6Only != host.BindV6Only {
		t.Errorf("client: %+v (%q)", cl, ce.Assumed)
	}
	b, _ := conv(bound6)
	if b.State != rules.Bound || !b.V6Only || !b.ReusePort || b.ReuseAddr || b.Unknown != rules.FactReuseAddr {
		t.Errorf("bound to a specific IPv6 address: %+v", b)
	}
	u, _ := conv(udpConn)
	if u.Proto != inet.UDP || u.State != rules.Connected || !u.ReuseAddr {
		t.Errorf("udp: %+v", u)
	}
	if _, ok := convert(host, &req, all, nil, true); ok {
		t.Error("a request socket owns no port but was converted")
	}
	sit := FromTable(host, &socktab.Table{Sockets: all, Notes: []string{"n"}}, nil)
	if len(sit.Entries) != 6 || len(sit.World().Sockets) != 6 || sit.Notes[0] != "n" {
		t.Errorf("FromTable: %d entries, notes %q", len(sit.Entries), sit.Notes)
	}
}

// TestBucketDecidesConnectSharing: the kernel's bind bucket, passed to the
// model as it is, decides whether connect() may share a port, whatever the
// owners' own flags say (a bind() owner may have left the port).
func TestBucketDecidesConnectSharing(t *testing.T) {
	ap := netip.MustParseAddrPort
	tw := socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.TimeWait, Local: ap("10.0.0.9:40033"), Remote: ap("10.0.0.9:9000")}
	est := socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.Established, Local: ap("10.0.0.1:40033"), Remote: ap("10.0.0.9:9000")}
	for _, connectOnly := range []bool{true, false} {
		b := sockfacts.Bucket{}
		if connectOnly {
			b.FastReuse, b.FastReusePort = -1, -1
		}
		facts := IndexFacts([]sockfacts.Sock{
			{Proto: inet.TCP, Family: 4, Local: tw.Local, Remote: tw.Remote, TimeWait: true, ConnectBindKnown: true, ConnectBind: false, BucketKnown: true, BucketConnectOnly: connectOnly, Bucket: b},
			{Proto: inet.TCP, Family: 4, Local: est.Local, Remote: est.Remote, ConnectBindKnown: true, ConnectBind: true, BucketKnown: true, BucketConnectOnly: connectOnly, Bucket: b},
		})
		sit := FromTable(rules.DefaultHost(), &socktab.Table{Sockets: []socktab.Socket{tw, est}}, facts)
		if len(sit.Buckets) != 1 || sit.Buckets[0].Port != 40033 {
			t.Fatalf("buckets %+v, want port 40033's", sit.Buckets)
		}
		c := rules.NewModel(sit.World()).ConnectPorts(rules.Socket{Proto: inet.TCP, Family: inet.IPv4}, ap("10.0.0.7:80"), netip.MustParseAddr("10.0.0.1"))
		if connectOnly && c.HeldByBind != 0 {
			t.Errorf("connect-only bucket: %d ports held by bind(), want 0 (connect() shares port 40033)", c.HeldByBind)
		}
		if !connectOnly && c.HeldByBind != 1 {
			t.Errorf("bind()-held bucket: %d ports held by bind(), want 1 (connect() skips port 40033)", c.HeldByBind)
		}
	}
}

// TestFromRecordTimeWait: a record's TIME_WAIT entry keeps its age, its
// peer's timestamps and its FIN_WAIT2 substate, which connect() reads to
// decide whether it may take the entry over (rules.Socket.TWFinWait2).
func TestFromRecordTimeWait(t *testing.T) {
	for _, fw2 := range []bool{false, true} {
		k := sockfacts.Sock{Proto: inet.TCP, Family: inet.IPv4, State: 6, TimeWait: true, Timestamps: true, FinWait2: fw2,
			Local: netip.MustParseAddrPort("10.0.0.2:40001"), Remote: netip.MustParseAddrPort("10.0.0.1:80")}
		s, _, ok := FromRecord(&k, 50*time.Second)
		if !ok || s.State != rules.TimeWait || !s.TWTimestamps || s.TWFinWait2 != fw2 || s.TWAge != 10*time.Second {
			t.Errorf("FromRecord(FinWait2 %v) = %+v, %v; want a TIME_WAIT entry 10 s old, with timestamps, FIN_WAIT2 %v", fw2, s, ok, fw2)
		}
	}
}
