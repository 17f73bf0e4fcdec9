package rules

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestConnectPortsManyMatchesConnectPorts checks that the one-walk count
// for many destinations equals ConnectPorts run once per destination, on
// random small worlds with bind()- and connect()-bound owners, TIME_WAIT
// entries with and without timestamps, exact bind buckets, reserved
// ports, odd ranges, duplicate destinations and destinations without a
// source address.
func TestConnectPortsManyMatchesConnectPorts(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("::ffff:10.0.0.9")}
	peers := []netip.AddrPort{ap("10.0.0.1:80"), ap("10.0.0.2:80"), ap("127.0.0.5:443"), ap("[::ffff:10.0.0.1]:80")}
	compared := 0
	for world := range 400 {
		h := DefaultHost()
		h.EphemeralRange = PortRange{Lo: 40000, Hi: 40031 - uint16(r.IntN(2))}
		h.TCPTWReuse = r.IntN(3)
		if r.IntN(3) == 0 {
			h.ReservedPorts = []PortRange{{Lo: 40010, Hi: 40012}}
		}
		w := World{Host: h}
		for range r.IntN(80) {
			s := Socket{Proto: TCP, Family: IPv4, Local: netip.AddrPortFrom(srcs[r.IntN(2)], uint16(39995+r.IntN(42))),
				Remote: peers[r.IntN(3)], PortFromConnect: r.IntN(3) > 0, TWTimestamps: r.IntN(2) == 0,
				TWAge: time.Duration(r.IntN(3)) * time.Second}
			switch r.IntN(6) {
			case 0:
				s.State, s.Remote = Listen, netip.AddrPort{}
			case 1:
				s.State = TimeWait
			default:
				s.State = Connected
			}
			if r.IntN(5) == 0 {
				s.Unknown |= FactPortOrigin | FactTimestamps
			}
			w.Sockets = append(w.Sockets, s)
		}
		if r.IntN(2) == 0 {
			for range 5 {
				w.Buckets = append(w.Buckets, Bucket{Port: uint16(40000 + r.IntN(32)), FastReuse: int8(r.IntN(3) - 1), FastReusePort: int8(r.IntN(3) - 1)})
			}
		}
		m := NewModel(w)
		var dests []Dest
		for range 1 + r.IntN(6) {
			d := Dest{Peer: peers[r.IntN(len(peers))]}
			if r.IntN(4) > 0 {
				d.Source = srcs[r.IntN(len(srcs))]
			}
			dests = append(dests, d)
		}
		s := Socket{Proto: TCP, Family: IPv4}
		got := m.ConnectPortsMany(s, dests)
		for i, d := range dests {
			want := m.ConnectPorts(s, d.Peer, d.Source)
			if got[i] != want {
				t.Fatalf("world %d, destination %+v: ConnectPortsMany %+v, ConnectPorts %+v", world, d, got[i], want)
			}
			compared++
		}
	}
	t.Logf("%d destinations compared", compared)
}
