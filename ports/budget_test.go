package ports

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tuple-net/tuple/rules"
)

var (
	srcA  = netip.MustParseAddr("127.0.0.1")
	dst1  = netip.MustParseAddrPort("10.0.0.1:80")
	dst2  = netip.MustParseAddrPort("10.0.0.2:443")
	small = rules.PortRange{Lo: 40000, Hi: 40009}
)

func host(r rules.PortRange) rules.Host {
	h := rules.DefaultHost()
	h.EphemeralRange = r
	return h
}

// conn is a socket connect()ed from srcA:port to dest; origin known unless unknown.
func conn(port uint16, dest netip.AddrPort, unknown bool) Entry {
	s := rules.Socket{Proto: rules.TCP, Family: rules.IPv4, State: rules.Connected,
		Local: netip.AddrPortFrom(srcA, port), Remote: dest, UID: 1000, PortFromConnect: true}
	if unknown {
		s.Unknown |= rules.FactPortOrigin
		s.PortFromConnect = false
	}
	return Entry{Socket: s, Owners: []Owner{{PID: 10, Comm: "client"}}}
}

func bound(port uint16, uid uint32, pid int) Entry {
	return Entry{Socket: rules.Socket{Proto: rules.TCP, Family: rules.IPv4, State: rules.Bound,
		Local: netip.AddrPortFrom(netip.IPv4Unspecified(), port), UID: uid},
		Owners: []Owner{{PID: pid, Comm: "hog"}}}
}

func timeWait(port uint16, dest netip.AddrPort, left time.Duration) Entry {
	return Entry{Socket: rules.Socket{Proto: rules.TCP, Family: rules.IPv4, State: rules.TimeWait,
		Local: netip.AddrPortFrom(srcA, port), Remote: dest, Unknown: rules.FactPortOrigin | rules.FactTimestamps},
		TimeLeft: left}
}

type free struct{ Min, Max int }

func destFree(rep Report) map[netip.AddrPort]free {
	m := map[netip.AddrPort]free{}
	for _, d := range rep.Destinations {
		m[d.Dest] = free{d.FreeMin, d.FreeMax}
	}
	return m
}

func TestBudgetConnectPerDestination(t *testing.T) {
	tests := []struct {
		name     string
		host     rules.Host
		entries  []Entry
		dests    map[netip.AddrPort]free
		newDest  free
		bindFree int
	}{
		{
			name: "empty", host: host(small),
			dests: map[netip.AddrPort]free{}, newDest: free{10, 10}, bindFree: 10,
		},
		{
			name: "connect-bound ports are shared across destinations", host: host(small),
			entries: []Entry{conn(40000, dst1, false), conn(40001, dst1, false), conn(40000, dst2, false)},
			dests:   map[netip.AddrPort]free{dst1: {8, 8}, dst2: {9, 9}}, newDest: free{10, 10}, bindFree: 8,
		},
		{
			name: "unknown origin gives a range", host: host(small),
			entries: []Entry{conn(40000, dst1, true), conn(40001, dst1, true), conn(40000, dst2, true)},
			dests:   map[netip.AddrPort]free{dst1: {8, 8}, dst2: {8, 9}}, newDest: free{8, 10}, bindFree: 8,
		},
		{
			name: "bound-only ports are out of every destination's pool", host: host(small),
			entries: []Entry{conn(40000, dst1, false), bound(40005, 65534, 20), bound(40006, 65534, 20), bound(40000, 65534, 20)},
			dests:   map[netip.AddrPort]free{dst1: {7, 7}}, newDest: free{7, 7}, bindFree: 7,
		},
		{
			name: "reserved ports are skipped", host: func() rules.Host {
				h := host(small)
				h.ReservedPorts = []rules.PortRange{{Lo: 40008, Hi: 40009}}
				return h
			}(),
			entries: []Entry{conn(40000, dst1, false), conn(40008, dst1, false)},
			dests:   map[netip.AddrPort]free{dst1: {7, 7}}, newDest: free{8, 8}, bindFree: 7,
		},
		{
			name: "odd range: one port unvisited", host: host(rules.PortRange{Lo: 40000, Hi: 40010}),
			entries: []Entry{conn(40000, dst1, false)},
			// bind(0) too leaves one port out; the model's search leaves out
			// the top one.
			dests: map[netip.AddrPort]free{dst1: {9, 10}}, newDest: free{10, 10}, bindFree: 9,
		},
		{
			name: "TIME_WAIT without tw_reuse blocks its four-tuple", host: func() rules.Host {
				h := host(small)
				h.TCPTWReuse = 0
				return h
			}(),
			entries: []Entry{timeWait(40001, dst1, 30*time.Second)},
			dests:   map[netip.AddrPort]free{dst1: {9, 9}}, newDest: free{9, 10}, bindFree: 9,
		},
		{
			name: "TIME_WAIT on loopback with unknown timestamps is a range", host: host(small),
			entries: []Entry{timeWait(40001, netip.MustParseAddrPort("127.0.0.2:80"), 30*time.Second)},
			dests:   map[netip.AddrPort]free{netip.MustParseAddrPort("127.0.0.2:80"): {9, 10}}, newDest: free{9, 10}, bindFree: 9,
		},
		{
			name: "TIME_WAIT younger than tw_reuse_delay blocks", host: host(small),
			entries: []Entry{timeWait(40001, netip.MustParseAddrPort("127.0.0.2:80"), TimeWaitLength-100*time.Millisecond)},
			dests:   map[netip.AddrPort]free{netip.MustParseAddrPort("127.0.0.2:80"): {9, 9}}, newDest: free{9, 10}, bindFree: 9,
		},
		{
			name: "accepted children are not destinations", host: host(small),
			entries: []Entry{
				{Socket: rules.Socket{Proto: rules.TCP, Family: rules.IPv4, State: rules.Listen, Local: netip.MustParseAddrPort("0.0.0.0:80")}},
				{Socket: rules.Socket{Proto: rules.TCP, Family: rules.IPv4, State: rules.Connected,
					Local: netip.MustParseAddrPort("10.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.1:40000"), Unknown: rules.FactPortOrigin}},
				conn(40000, dst1, true),
			},
			dests: map[netip.AddrPort]free{dst1: {9, 9}}, newDest: free{9, 10}, bindFree: 9,
		},
		{
			name: "v6only IPv6 owner does not block bind(0.0.0.0:0)", host: host(small),
			entries: []Entry{{Socket: rules.Socket{Proto: rules.TCP, Family: rules.IPv6, State: rules.Bound, V6Only: true,
				Local: netip.MustParseAddrPort("[::1]:40003")}}},
			dests: map[netip.AddrPort]free{}, newDest: free{9, 9}, bindFree: 10,
		},
		{
			name: "UDP is ignored", host: host(small),
			entries: []Entry{{Socket: rules.Socket{Proto: rules.UDP, Family: rules.IPv4, State: rules.Bound,
				Local: netip.MustParseAddrPort("0.0.0.0:40003")}}},
			dests: map[netip.AddrPort]free{}, newDest: free{10, 10}, bindFree: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := Budget(tt.entries, tt.host, Options{})
			if diff := cmp.Diff(tt.dests, destFree(rep)); diff != "" {
				t.Errorf("free per destination (-want +got):\n%s", diff)
			}
			if got := (free{rep.ConnectFreeMin, rep.ConnectFreeMax}); got != tt.newDest {
				t.Errorf("free for a new destination = %v, want %v", got, tt.newDest)
			}
			if rep.BindFree != tt.bindFree {
				t.Errorf("bind(0) free = %d, want %d", rep.BindFree, tt.bindFree)
			}
			for _, d := range rep.Destinations {
				if d.FreeMin > d.FreeMax {
					t.Errorf("%v: FreeMin %d > FreeMax %d", d.Dest, d.FreeMin, d.FreeMax)
				}
			}
		})
	}
}

func TestBudgetHoldersAndHogWarning(t *testing.T) {
	var entries []Entry
	for p := uint16(40000); p < 40006; p++ {
		entries = append(entries, bound(p, 65534, 20))
	}
	entries = append(entries, conn(40007, dst1, false), conn(40007, dst2, false))
	rep := Budget(entries, host(small), Options{})

	wantUIDs := []Holder{
		{UID: 65534, Ports: 6, BoundOnly: 6, Share: 0.6},
		{UID: 1000, Ports: 1, Share: 0.1},
	}
	if diff := cmp.Diff(wantUIDs, rep.UIDs); diff != "" {
		t.Errorf("per uid (-want +got):\n%s", diff)
	}
	wantProcs := []Holder{
		{UID: 65534, PID: 20, Comm: "hog", Ports: 6, BoundOnly: 6, Share: 0.6},
		{UID: 1000, PID: 10, Comm: "client", Ports: 1, Share: 0.1},
	}
	if diff := cmp.Diff(wantProcs, rep.Processes); diff != "" {
		t.Errorf("per process (-want +got):\n%s", diff)
	}
	if rep.BoundOnly != 6 {
		t.Errorf("BoundOnly = %d, want 6", rep.BoundOnly)
	}
	if len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "uid 65534 holds 6 of 10") {
		t.Errorf("want a hog warning for uid 65534, got %q", rep.Warnings)
	}
	if rep := Budget(entries, host(small), Options{HogShare: 0.7}); len(rep.Warnings) != 0 && strings.Contains(rep.Warnings[0], "uid 65534") {
		t.Errorf("HogShare 0.7: unexpected warning %q", rep.Warnings[0])
	}
}

func TestBudgetPerSocketRange(t *testing.T) {
	entries := []Entry{conn(40000, dst1, false), conn(40050, dst1, false)}
	rep := Budget(entries, host(rules.PortRange{Lo: 40000, Hi: 40099}), Options{SocketRange: rules.PortRange{Lo: 40000, Hi: 40004}})
	if rep.Pool != 5 || rep.ConnectPool != 5 {
		t.Fatalf("pool %d connect pool %d, want 5 and 5", rep.Pool, rep.ConnectPool)
	}
	if got := destFree(rep)[dst1]; got != (free{4, 4}) {
		t.Errorf("free to %v = %v, want 4..4", dst1, got)
	}
}
