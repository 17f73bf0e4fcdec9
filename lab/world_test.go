package lab

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// TestConnectedTakesOverTimeWaitByDevice: a connect() that completes takes
// over the TIME_WAIT entry of its four-tuple only when the kernel's match
// would (the entry bound to no device, or to the connecting socket's), so
// the world keeps a device-bound entry beside a connection from another
// device, as the kernel does.
func TestConnectedTakesOverTimeWaitByDevice(t *testing.T) {
	local := netip.MustParseAddrPort("10.0.0.1:40000")
	peer := netip.MustParseAddrPort("10.0.0.1:80")
	for _, tc := range []struct {
		name           string
		twDev, connDev int
		mapped         bool // the client is an AF_INET6 socket on v4-mapped addresses
		kept           bool
	}{
		{"entry unbound, client unbound", 0, 0, false, false},
		{"entry unbound, client on lo", 0, 1, false, false},
		{"entry on lo, client on lo", 1, 1, false, false},
		{"entry on lo, client unbound", 1, 0, false, true},
		{"entry on lo, client on another device", 1, 2, false, true},
		{"v4-mapped client takes over an IPv4 entry", 0, 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			tw := &entry{sock: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, State: rules.TimeWait, Local: local, Remote: peer, Dev: tc.twDev}}
			w.entries = append(w.entries, tw)
			c := &entry{name: "C"}
			c.sock = rules.Socket{ID: "C", Proto: inet.TCP, Family: inet.IPv4, State: rules.Connected, Local: local, Remote: peer, Dev: tc.connDev}
			if tc.mapped {
				c.sock.Family = inet.IPv6
				c.sock.Local = netip.AddrPortFrom(netip.AddrFrom16(local.Addr().As16()), local.Port())
				c.sock.Remote = netip.AddrPortFrom(netip.AddrFrom16(peer.Addr().As16()), peer.Port())
			}
			w.entries = append(w.entries, c)
			w.connected(c)
			kept := false
			for _, e := range w.entries {
				kept = kept || e == tw
			}
			if kept != tc.kept {
				t.Errorf("TIME_WAIT entry (dev %d) after a connect from dev %d: kept %v, want %v", tc.twDev, tc.connDev, kept, tc.kept)
			}
		})
	}
}

// A TIME_WAIT entry the kernel's coarse clock may have stamped a second
// before the lab dated it is asked about as so stamped only while
// earliestStamps holds: the second has then ticked for it (rules'
// TWSecondTicked), and the entry's own date comes back with restore. An
// earliest second that is not earlier moves nothing.
func TestEarliestStampsDateTimeWaitEarlier(t *testing.T) {
	w, ticked := timeWaitWorld(100)
	w.stampTW(100, 100, 0) // not earlier: nothing to move
	if _, moved := w.earliestStamps(); moved || ticked() {
		t.Fatalf("an entry of this second with no earlier stamp: moved %v, ticked %v", moved, ticked())
	}
	w.stampTW(100, 99, 0)
	if ticked() {
		t.Fatal("the entry dated this second counts as ticked before earliestStamps")
	}
	restore, moved := w.earliestStamps()
	if !moved || !ticked() {
		t.Fatalf("under earliestStamps: moved %v, ticked %v; want both", moved, ticked())
	}
	restore()
	if ticked() || w.entries[0].twSec != 100 {
		t.Errorf("after restore: ticked %v, second %d; want the entry's own 100", ticked(), w.entries[0].twSec)
	}
}

// An entry whose dating straddles two seconds may have been stamped with
// the later one: under latestStamps it is so dated, and the second has not
// yet ticked for it.
func TestLatestStampsDateTimeWaitLater(t *testing.T) {
	w, ticked := timeWaitWorld(101)
	w.stampTW(100, 0, 100) // not later: nothing to move
	if _, moved := w.latestStamps(); moved {
		t.Fatal("an entry with no later stamp moved under latestStamps")
	}
	w.stampTW(100, 0, 101)
	if !ticked() {
		t.Fatal("the entry dated the second before does not count as ticked")
	}
	restore, moved := w.latestStamps()
	if !moved || ticked() {
		t.Fatalf("under latestStamps: moved %v, ticked %v; want moved and not ticked", moved, ticked())
	}
	restore()
	if !ticked() || w.entries[0].twSec != 100 {
		t.Errorf("after restore: ticked %v, second %d; want the entry's own 100", ticked(), w.entries[0].twSec)
	}
	if _, moved := w.earliestStamps(); moved {
		t.Error("a later stamp moved the entry under earliestStamps")
	}
}

// timeWaitWorld is a world of one TIME_WAIT entry at the monotonic clock's
// second now, and whether the model is told the second has ticked for it.
func timeWaitWorld(now int64) (*world, func() bool) {
	w := newWorld()
	w.monoSec = func() int64 { return now }
	local, peer := netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:80")
	w.entries = append(w.entries, &entry{sock: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, State: rules.TimeWait, Local: local, Remote: peer}})
	return w, func() bool {
		var got rules.World
		w.predict(func(rw rules.World, _ rules.Socket, _ rules.Op) rules.Outcome { got = rw; return rules.Outcome{} },
			&entry{name: "C", sock: rules.Socket{ID: "C", Proto: inet.TCP, Family: inet.IPv4}}, rules.Op{Kind: rules.OpConnect, Addr: peer}, time.Now())
		return len(got.Sockets) == 1 && got.Sockets[0].TWSecondTicked
	}
}
