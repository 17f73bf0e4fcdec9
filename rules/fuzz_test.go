package rules

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tuple-net/tuple/inet"
)

// fuzzAddrs are the addresses fuzzed sockets use: every class of the
// OVERLAP table, non-local and link-local ones, and an invalid Addr.
var fuzzAddrs = []netip.Addr{
	{},
	netip.MustParseAddr("0.0.0.0"),
	netip.MustParseAddr("127.0.0.1"),
	netip.MustParseAddr("127.0.0.2"),
	netip.MustParseAddr("10.9.0.1"),
	netip.MustParseAddr("192.0.2.1"),
	netip.MustParseAddr("::"),
	netip.MustParseAddr("::1"),
	netip.MustParseAddr("::ffff:0.0.0.0"),
	netip.MustParseAddr("::ffff:127.0.0.1"),
	netip.MustParseAddr("fd00::1"),
	netip.MustParseAddr("fe80::1"),
	netip.MustParseAddr("ff02::1"),
	netip.MustParseAddr("224.0.0.1"),
}

// fuzzReader turns fuzz bytes into choices; it yields zeros when empty.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *fuzzReader) u16() uint16 { return uint16(r.byte())<<8 | uint16(r.byte()) }

func (r *fuzzReader) addrPort() netip.AddrPort {
	a := fuzzAddrs[int(r.byte())%len(fuzzAddrs)]
	// Ports cluster near 40000 so sockets meet; some are 0 or privileged.
	p := uint16(40000) + uint16(r.byte()%8)
	switch r.byte() % 8 {
	case 0:
		p = 0
	case 1:
		p = uint16(r.byte())
	case 2:
		p = r.u16()
	}
	return netip.AddrPortFrom(a, p)
}

func (r *fuzzReader) socket() Socket {
	f := r.byte()
	s := Socket{
		Proto:             inet.Proto(f % 4), // includes invalid 0 and 3
		Family:            []inet.Family{0, inet.IPv4, inet.IPv6, 9}[(f>>2)%4],
		Local:             r.addrPort(),
		Remote:            r.addrPort(),
		State:             State(r.byte() % 5),
		UID:               uint32(r.byte() % 3),
		Dev:               int(r.byte() % 3),
		TWAge:             time.Duration(r.byte()) * 10 * time.Millisecond,
		Unknown:           Fact(r.byte()),
		UnknownReason:     "fuzz",
		PortRange:         inet.PortRange{Lo: 40000 + uint16(r.byte()%10), Hi: 40000 + uint16(r.byte()%10)},
		BindAddr:          fuzzAddrs[int(r.byte())%len(fuzzAddrs)],
		CanBindPrivileged: f&0x40 != 0,
	}
	o := r.byte()
	s.ReuseAddr, s.ReusePort, s.V6Only = o&1 != 0, o&2 != 0, o&4 != 0
	s.PortFromConnect, s.InGroup, s.BindNoPort = o&8 != 0, o&16 != 0, o&32 != 0
	s.Freebind, s.TWTimestamps, s.V6OnlyDefault = o&64 != 0, o&128 != 0, f&0x80 != 0
	return s
}

var addrCmp = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

// FuzzPredict checks that the model never panics and is deterministic:
// the same world, socket and operation give equal outcomes, through
// Predict and through a reused Model; and Verdict is Predict without the
// blockers' list.
func FuzzPredict(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x05\x02\x01\x00\x01\x03\x02\x00\x07\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"))
	f.Add([]byte("tcp listen reuseport uid 0 0.0.0.0:40000 and a new bind on [::]:40000 with v6only"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{b: data}
		h := testHost()
		hf := r.byte()
		h.EphemeralRange = inet.PortRange{Lo: 40000 + uint16(r.byte()%4), Hi: 40000 + uint16(r.byte()%8)}
		h.AutobindReuse, h.BindV6Only, h.NonlocalBind4 = hf&1 != 0, hf&2 != 0, hf&4 != 0
		h.TCPTWReuse = int(hf>>3) % 4
		if hf&0x80 != 0 {
			h.ReservedPorts = []inet.PortRange{{Lo: 40001, Hi: 40002}}
		}
		var w World
		w.Host = h
		for n := int(r.byte() % 6); n > 0; n-- {
			w.Sockets = append(w.Sockets, r.socket())
		}
		if bf := r.byte(); bf&1 != 0 {
			w.Buckets = append(w.Buckets, Bucket{Port: 40000 + uint16(bf>>5), FastReuse: int8(r.byte()%3) - 1,
				FastReusePort: int8(r.byte()%4) - 1, FastUID: uint32(r.byte() % 3), FastFamily: []inet.Family{inet.IPv4, inet.IPv6}[bf>>1&1],
				FastAddr: fuzzAddrs[int(r.byte())%len(fuzzAddrs)], FastV6Only: bf&4 != 0})
		}
		s := r.socket()
		op := Op{Kind: OpKind(r.byte() % 5), Addr: r.addrPort(), Source: fuzzAddrs[int(r.byte())%len(fuzzAddrs)]}
		a := Predict(w, s, op)
		m := NewModel(w)
		b := m.Predict(s, op)
		c := m.Predict(s, op)
		if diff := cmp.Diff(a, b, addrCmp); diff != "" {
			t.Fatalf("Predict and Model.Predict differ (-Predict +Model):\n%s", diff)
		}
		if diff := cmp.Diff(b, c, addrCmp); diff != "" {
			t.Fatalf("two Model.Predict calls differ:\n%s", diff)
		}
		sameVerdict(t, a, m.Verdict(s, op))
		if a.OK() != (a.Err == 0) || a.Rule == "" || a.Why == "" {
			t.Fatalf("incomplete outcome: %+v", a)
		}
		for _, bl := range a.Blockers {
			if bl.Index < 0 || bl.Index >= len(w.Sockets) || bl.Reason == "" {
				t.Fatalf("bad blocker %+v", bl)
			}
		}
		pc := m.ConnectPorts(s, op.Addr, op.Source)
		if pc.Candidates() < 0 || pc.Searched > int(pc.Range.Size()) {
			t.Fatalf("bad port count %+v", pc)
		}
	})
}
