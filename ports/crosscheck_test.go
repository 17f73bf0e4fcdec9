package ports

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// resolve returns a copy of entries with every unknown port origin and TIME
// WAIT timestamp settled one way: optimistic (connect-picked ports, peers
// with timestamps) or not.
func resolve(entries []Entry, optimistic bool) []rules.Socket {
	out := make([]rules.Socket, len(entries))
	for i, e := range entries {
		s := e.Socket
		if s.Unknown&rules.FactPortOrigin != 0 {
			s.PortFromConnect = optimistic
		}
		if s.Unknown&rules.FactTimestamps != 0 {
			s.TWTimestamps = optimistic
		}
		if e.TimeLeft > 0 {
			s.TWAge = TimeWaitLength - e.TimeLeft
		}
		s.Unknown = 0
		out[i] = s
	}
	return out
}

// randomWorld is a namespace with a small range and a random mix of
// connected sockets, TIME_WAIT entries and bound-only sockets, some with
// unknown origins, over two sources and three destinations.
func randomWorld(r *rand.Rand) ([]Entry, rules.Host) {
	h := rules.DefaultHost()
	h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40031}
	if r.IntN(4) == 0 {
		h.EphemeralRange.Hi = 40030 // odd size: the kernel visits one port fewer
	}
	h.TCPTWReuse = r.IntN(3)
	if r.IntN(3) == 0 {
		h.ReservedPorts = []inet.PortRange{{Lo: 40010, Hi: 40012}}
	}
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.9")}
	dests := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:80"), netip.MustParseAddrPort("10.0.0.2:80"), netip.MustParseAddrPort("127.0.0.5:443")}
	port := func() uint16 { return uint16(39995 + r.IntN(42)) } // some outside the range
	var entries []Entry
	for range r.IntN(60) {
		s := rules.Socket{Proto: inet.TCP, Family: inet.IPv4, UID: uint32(r.IntN(3)),
			Local: netip.AddrPortFrom(srcs[r.IntN(2)], port())}
		e := Entry{}
		switch k := r.IntN(10); {
		case k < 6:
			s.State = rules.Connected
		case k < 8:
			s.State = rules.TimeWait
			e.TimeLeft = time.Duration(r.IntN(60000)) * time.Millisecond
			if r.IntN(2) == 0 {
				s.Unknown |= rules.FactTimestamps
			} else {
				s.TWTimestamps = r.IntN(2) == 0
			}
		default:
			s.State = rules.Bound
			s.Local = netip.AddrPortFrom(netip.IPv4Unspecified(), s.Local.Port())
		}
		if s.State != rules.Bound {
			s.Remote = dests[r.IntN(3)]
			switch r.IntN(3) {
			case 0:
				s.Unknown |= rules.FactPortOrigin
			case 1:
				s.PortFromConnect = true
			}
		}
		e.Socket = s
		entries = append(entries, e)
	}
	return entries, h
}

// TestBudgetMatchesRulesModel checks Budget's free counts against the rules
// model's connect() search (rules.Model.ConnectPorts) on random worlds: the
// lower bound must equal the model with every unknown settled
// pessimistically, the upper bound the model with every unknown settled
// optimistically.
func TestBudgetMatchesRulesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	compared, ranges := 0, 0
	for i := range 500 {
		entries, h := randomWorld(r)
		rep := Budget(entries, h, Options{})
		lo := rules.NewModel(rules.World{Host: h, Sockets: resolve(entries, false)})
		hi := rules.NewModel(rules.World{Host: h, Sockets: resolve(entries, true)})
		newSock := rules.Socket{Proto: inet.TCP, Family: inet.IPv4}
		for _, d := range rep.Destinations {
			wantMin := lo.ConnectPorts(newSock, d.Dest, d.Source).Candidates()
			wantMax := hi.ConnectPorts(newSock, d.Dest, d.Source).Candidates()
			compared++
			if wantMin != wantMax {
				ranges++
			}
			if h.EphemeralRange.Size()%2 == 1 {
				// Which port the kernel skips depends on its random
				// start; the model assumes the top one, Budget widens
				// the range by one instead: the model must fall inside.
				if wantMin < d.FreeMin || wantMax > d.FreeMax || d.FreeMin < wantMin-1 {
					t.Fatalf("world %d (odd range), %s -> %s: Budget %d..%d, rules model %d..%d", i, d.Source, d.Dest, d.FreeMin, d.FreeMax, wantMin, wantMax)
				}
				continue
			}
			if d.FreeMin != wantMin || d.FreeMax != wantMax {
				t.Fatalf("world %d, %s -> %s: Budget %d..%d, rules model %d..%d\nhost %+v\nentries %+v",
					i, d.Source, d.Dest, d.FreeMin, d.FreeMax, wantMin, wantMax, h, entries)
			}
		}
		// A destination nobody uses: only bind()-held ports matter.
		nobody := netip.MustParseAddrPort("10.9.9.9:1")
		wantMin := lo.ConnectPorts(newSock, nobody, netip.MustParseAddr("127.0.0.1")).Candidates()
		wantMax := hi.ConnectPorts(newSock, nobody, netip.MustParseAddr("127.0.0.1")).Candidates()
		if odd := h.EphemeralRange.Size()%2 == 1; odd && (wantMin < rep.ConnectFreeMin || wantMax > rep.ConnectFreeMax) ||
			!odd && (rep.ConnectFreeMin != wantMin || rep.ConnectFreeMax != wantMax) {
			t.Fatalf("world %d, new destination: Budget %d..%d, rules model %d..%d", i, rep.ConnectFreeMin, rep.ConnectFreeMax, wantMin, wantMax)
		}
	}
	if compared < 1000 || ranges < 100 {
		t.Errorf("compared %d destinations, %d with a range: the random worlds are too thin", compared, ranges)
	}
	t.Logf("compared %d destinations with the rules model, %d with min < max", compared, ranges)
}
