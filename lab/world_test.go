package lab

import (
	"net/netip"
	"testing"

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
