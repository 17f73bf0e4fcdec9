package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/tuple-net/tuple/inet"
)

// TestReindexForgetsThePreviousWorld: a model built again over another
// world (Reindex, its arrays reused) answers as a model built fresh for
// that world, whether the new world is smaller or larger than the old,
// with and without the kernel's buckets.
func TestReindexForgetsThePreviousWorld(t *testing.T) {
	h := DefaultHost()
	h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40009}
	lo := netip.MustParseAddr("127.0.0.1")
	peer := netip.MustParseAddrPort("127.0.0.1:80")
	world := func(n int, bucket bool) World {
		w := World{Host: h}
		for i := range n {
			w.Sockets = append(w.Sockets, Socket{Proto: inet.TCP, Family: inet.IPv4, State: Connected,
				Local: netip.AddrPortFrom(lo, uint16(40000+i)), Remote: peer, PortFromConnect: i%3 != 0})
		}
		if bucket {
			// Port 40000 is held through bind(); its bucket says otherwise.
			w.Buckets = []Bucket{{Port: 40000, FastReuse: -1, FastReusePort: -1}}
		}
		return w
	}
	answers := func(m *Model) string {
		s := Socket{Proto: inet.TCP, Family: inet.IPv4}
		c := m.ConnectPortsMany(s, []Dest{{Source: lo, Peer: peer}, {Source: lo, Peer: netip.MustParseAddrPort("127.0.0.1:81")}})
		b := m.Predict(s, Op{Kind: OpBind, Addr: netip.AddrPortFrom(lo, 40002)})
		return fmt.Sprintf("%+v %s %d", c, b.ErrName(), b.Candidates)
	}
	m := NewModel(world(8, true))
	for _, w := range []World{world(3, false), world(10, true), world(0, false), world(6, false)} {
		if got, want := answers(m.Reindex(w)), answers(NewModel(w)); got != want {
			t.Errorf("world of %d sockets: reindexed %s, fresh %s", len(w.Sockets), got, want)
		}
	}
}

// TestSortPackedIsSlicesSort: the index's radix sort orders (key, index)
// values as slices.Sort does, for tables below and above the size where
// it takes over, with keys of one protocol or two, ports that differ in
// one byte only, and many owners per port; its buffers serve the next
// sort whichever one the result ends in.
func TestSortPackedIsSlicesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	var packed, spare []uint64
	for _, n := range []int{0, 1, 255, 256, 257, 1000, 5000, 20000} {
		for _, keys := range []func() uint32{
			func() uint32 { return key(inet.TCP, uint16(r.IntN(65536))) },
			func() uint32 { return key([]inet.Proto{inet.TCP, inet.UDP}[r.IntN(2)], uint16(r.IntN(65536))) },
			func() uint32 { return key(inet.TCP, uint16(40000+r.IntN(200))) },
			func() uint32 { return key(inet.UDP, uint16(r.IntN(8))) },
		} {
			packed = packed[:0]
			for i := range n {
				packed = append(packed, uint64(keys())<<32|uint64(i))
			}
			want := slices.Sorted(slices.Values(packed))
			var got []uint64
			got, spare = sortPacked(packed, spare)
			if !slices.Equal(got, want) {
				t.Fatalf("%d values: sortPacked differs from slices.Sort", n)
			}
			packed = got
		}
	}
}
