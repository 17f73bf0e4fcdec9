package rules

import (
	"net/netip"
	"testing"

	"github.com/tuple-net/tuple/inet"
)

// bigWorld is a busy host: 40,000 TCP sockets, mostly connections from
// connect()-bound ephemeral ports to a few destinations, some bound,
// listening and TIME_WAIT.
func bigWorld() World {
	w := World{Host: DefaultHost()}
	dsts := []netip.AddrPort{ap("10.9.0.1:443"), ap("10.9.0.1:80"), ap("127.0.0.1:5432")}
	src := netip.MustParseAddr("10.9.0.1")
	port := uint16(32768)
	for i := 0; len(w.Sockets) < 40000; i++ {
		s := Socket{Proto: inet.TCP, Family: inet.IPv4, Local: netip.AddrPortFrom(src, port), Remote: dsts[i%len(dsts)],
			State: Connected, PortFromConnect: true}
		if port%5 == 0 && s.Remote.Port() == 443 {
			s.Remote = ap("10.9.0.2:443") // some ports are shared with other destinations only
		}
		switch i % 10 {
		case 7:
			s.State = TimeWait
		case 9:
			s = Socket{Proto: inet.TCP, Family: inet.IPv4, Local: netip.AddrPortFrom(netip.IPv4Unspecified(), port), State: Listen}
		}
		w.Sockets = append(w.Sockets, s)
		if i%len(dsts) == len(dsts)-1 {
			port++
			if port > 60999 {
				port = 32768
			}
		}
	}
	return w
}

// BenchmarkConnectPorts counts, per destination, the ports a connect()
// could take on a 40,000-socket table, as the ports package does. The
// anchor is one plain pass over the table (the least any count needs),
// measured in the same run; ratio = ConnectPorts / pass.
func BenchmarkConnectPorts(b *testing.B) {
	w := bigWorld()
	m := NewModel(w)
	s := Socket{Proto: inet.TCP, Family: inet.IPv4}
	dst := ap("10.9.0.1:443")
	var anchor, model float64
	b.Run("anchor-table-pass", func(b *testing.B) {
		n := 0
		for b.Loop() {
			for i := range w.Sockets {
				if w.Sockets[i].Remote == dst {
					n++
				}
			}
		}
		anchor = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		_ = n
	})
	b.Run("NewModel", func(b *testing.B) {
		for b.Loop() {
			NewModel(w)
		}
	})
	b.Run("ConnectPorts", func(b *testing.B) {
		b.ReportAllocs()
		var c PortCount
		for b.Loop() {
			c = m.ConnectPorts(s, dst, netip.MustParseAddr("10.9.0.1"))
		}
		model = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(float64(c.Candidates()), "candidates")
	})
	if anchor > 0 {
		b.Logf("ConnectPorts %.0f ns, table pass %.0f ns: ratio %.1f", model, anchor, model/anchor)
	}
}

// TestConnectPortsBigTable checks the counts on the big table: every port
// of the range is searched, and ports holding a listener (bind()-origin)
// are skipped.
func TestConnectPortsBigTable(t *testing.T) {
	w := bigWorld()
	m := NewModel(w)
	c := m.ConnectPorts(Socket{Proto: inet.TCP, Family: inet.IPv4}, ap("10.9.0.1:443"), netip.MustParseAddr("10.9.0.1"))
	held := map[uint16]bool{}
	used := map[uint16]bool{}
	owned := map[uint16]bool{}
	for _, s := range w.Sockets {
		owned[s.Local.Port()] = true
		if s.State == Listen {
			held[s.Local.Port()] = true
		}
		if s.Remote == ap("10.9.0.1:443") && s.Local.Port()%5 != 0 {
			used[s.Local.Port()] = true
		}
	}
	for p := range used {
		if held[p] {
			delete(used, p)
		}
	}
	want := PortCount{Range: inet.PortRange{Lo: 32768, Hi: 60999}, Searched: 28232, HeldByBind: len(held), Busy: len(used)}
	want.Free = want.Searched - len(owned)
	want.Shared = len(owned) - want.HeldByBind - want.Busy
	if c != want {
		t.Errorf("ConnectPorts = %+v\nwant %+v", c, want)
	}
	if o := m.Predict(Socket{Proto: inet.TCP, Family: inet.IPv4}, Op{Kind: OpConnect, Addr: ap("10.9.0.1:443")}); o.Candidates != c.Candidates() || !o.OK() {
		t.Errorf("Predict: %s, %d candidates; want ok, %d", o.ErrName(), o.Candidates, c.Candidates())
	}
}
