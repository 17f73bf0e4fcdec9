package rules

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
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
		h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40031 - uint16(r.IntN(2))}
		h.TCPTWReuse = r.IntN(3)
		if r.IntN(3) == 0 {
			h.ReservedPorts = []inet.PortRange{{Lo: 40010, Hi: 40012}}
		}
		w := World{Host: h}
		for range r.IntN(80) {
			s := Socket{Proto: inet.TCP, Family: inet.IPv4, Local: netip.AddrPortFrom(srcs[r.IntN(2)], uint16(39995+r.IntN(42))),
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
		s := Socket{Proto: inet.TCP, Family: inet.IPv4}
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

// TestSearchesIgnoreUnsearchablePorts: sockets on ports outside the
// ephemeral range (Searchable false) change neither a connect() search nor
// an autobind's, whatever the new socket's own IP_LOCAL_PORT_RANGE: the
// promise that lets a budget leave a server's accepted connections out of
// its model.
func TestSearchesIgnoreUnsearchablePorts(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 2))
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.9")}
	peers := []netip.AddrPort{ap("10.0.0.1:80"), ap("10.0.0.2:39990"), ap("127.0.0.1:40005")}
	left := 0
	for world := range 400 {
		h := DefaultHost()
		h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40031 - uint16(r.IntN(2))}
		h.TCPTWReuse = r.IntN(3)
		all := World{Host: h}
		for range r.IntN(80) {
			s := Socket{Proto: inet.TCP, Family: inet.IPv4, Local: netip.AddrPortFrom(srcs[r.IntN(2)], uint16(39990+r.IntN(52))),
				Remote: peers[r.IntN(3)], PortFromConnect: r.IntN(2) == 0, TWTimestamps: r.IntN(2) == 0, ReuseAddr: r.IntN(2) == 0}
			switch r.IntN(6) {
			case 0:
				s.State, s.Remote = Listen, netip.AddrPort{}
			case 1:
				s.State = TimeWait
			case 2:
				s.State, s.Remote = Bound, netip.AddrPort{}
			default:
				s.State = Connected
			}
			all.Sockets = append(all.Sockets, s)
		}
		searchable := World{Host: h}
		for _, s := range all.Sockets {
			if Searchable(h, s.Local.Port()) {
				searchable.Sockets = append(searchable.Sockets, s)
			}
		}
		left += len(all.Sockets) - len(searchable.Sockets)
		full, part := NewModel(all), NewModel(searchable)
		s := Socket{Proto: inet.TCP, Family: inet.IPv4}
		if r.IntN(3) == 0 {
			s.PortRange = inet.PortRange{Lo: uint16(39995 + r.IntN(10)), Hi: uint16(40020 + r.IntN(20))}
		}
		dests := []Dest{{Peer: peers[0]}, {Peer: peers[1], Source: srcs[1]}, {Peer: peers[2], Source: srcs[0]}}
		a, b := full.ConnectPortsMany(s, dests), part.ConnectPortsMany(s, dests)
		for i := range dests {
			if a[i] != b[i] {
				t.Fatalf("world %d, %+v: connect() over every socket %+v, over the searchable ones %+v", world, dests[i], a[i], b[i])
			}
		}
		bind := Op{Kind: OpBind, Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)}
		if x, y := full.Predict(s, bind), part.Predict(s, bind); x.Err != y.Err || x.After != y.After || x.Candidates != y.Candidates {
			t.Fatalf("world %d: bind(0) over every socket %+v, over the searchable ones %+v", world, x, y)
		}
	}
	if left < 1000 {
		t.Errorf("only %d sockets outside the range: the worlds are too thin", left)
	}
}

// TestConnectSearchedMatchesWalk: the pool size ConnectSearched gives
// without a model is the Searched of the model's connect() walk, over
// ranges of both parities, reserved ports and sockets' own ranges.
func TestConnectSearchedMatchesWalk(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 11))
	for world := range 300 {
		h := DefaultHost()
		lo := uint16(1000 + r.IntN(60000))
		h.EphemeralRange = inet.PortRange{Lo: lo, Hi: lo + uint16(r.IntN(300))}
		for range r.IntN(3) {
			p := lo + uint16(r.IntN(300))
			h.ReservedPorts = append(h.ReservedPorts, inet.PortRange{Lo: p, Hi: p + uint16(r.IntN(20))})
		}
		s := Socket{Proto: inet.TCP, Family: inet.IPv4}
		if r.IntN(2) == 0 {
			a := lo + uint16(r.IntN(200)) - 50
			s.PortRange = inet.PortRange{Lo: a, Hi: a + uint16(r.IntN(150))}
		}
		walk := NewModel(World{Host: h}).ConnectPortsMany(s, []Dest{{}})[0].Searched
		if got := ConnectSearched(h, s); got != walk {
			t.Fatalf("world %d, range %v reserved %v, socket range %v: ConnectSearched %d, the walk searched %d",
				world, h.EphemeralRange, h.ReservedPorts, s.PortRange, got, walk)
		}
	}
}

// TestBucketLookup: a model finds each port's bind bucket (the last one
// given for a port) whether it scans a few buckets or indexes many, and
// after being reindexed from many to few and back.
func TestBucketLookup(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 1))
	var m Model
	for _, n := range []int{0, 3, bucketsScanned, bucketsScanned + 1, 500, 5, 2000} {
		bs := make([]Bucket, n)
		for i := range bs {
			bs[i] = Bucket{Port: uint16(40000 + r.IntN(n+1)), FastReuse: int8(r.IntN(3) - 1), FastUID: uint32(i)}
		}
		m.Reindex(World{Host: DefaultHost(), Buckets: bs})
		for p := 39990; p <= 40000+n+10; p++ {
			want, wok := Bucket{}, false
			for _, b := range bs {
				if int(b.Port) == p {
					want, wok = b, true
				}
			}
			if got, ok := m.bucket(uint16(p)); ok != wok || got != want {
				t.Fatalf("%d buckets, port %d: %+v %v, want %+v %v", n, p, got, ok, want, wok)
			}
		}
	}
}
