package ports

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

func TestFromTable(t *testing.T) {
	ap := netip.MustParseAddrPort
	known := func(v bool) socktab.Bool { return socktab.Bool{Known: true, Value: v} }
	tab := &socktab.Table{Sockets: []socktab.Socket{
		{Proto: socktab.TCP, Family: socktab.IPv4, State: socktab.Listen, Local: ap("0.0.0.0:80")},
		{Proto: socktab.TCP, Family: socktab.IPv4, State: socktab.BoundInactive, Local: ap("0.0.0.0:40001"), UID: 65534,
			Owners: []socktab.Owner{{PID: 7, Comm: "hog", FD: 3}}},
		{Proto: socktab.TCP, Family: socktab.IPv4, State: socktab.Established, Local: ap("127.0.0.1:40002"), Remote: ap("127.0.0.1:80"),
			Options: socktab.Options{BindAddressNoPort: known(true), ReuseAddr: known(true)}},
		{Proto: socktab.TCP, Family: socktab.IPv6, State: socktab.SynSent, Local: ap("[::1]:40003"), Remote: ap("[::1]:80")},
		{Proto: socktab.TCP, Family: socktab.IPv4, State: socktab.TimeWait, Local: ap("127.0.0.1:40004"), Remote: ap("127.0.0.1:80"), TimeLeft: 45 * time.Second},
		{Proto: socktab.TCP, Family: socktab.IPv4, State: socktab.NewSynRecv, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:40005")},
		{Proto: socktab.UDP, Family: socktab.IPv4, State: socktab.Close, Local: ap("0.0.0.0:53")},
	}}
	got := FromTable(rules.DefaultHost(), tab, nil).Entries
	if len(got) != 5 {
		t.Fatalf("%d entries, want 5 (request socket and UDP skipped)", len(got))
	}
	type want struct {
		state       rules.State
		fromConnect bool
		unknown     rules.Fact
	}
	reuse := rules.FactReuseAddr | rules.FactReusePort
	for i, w := range []want{
		{rules.Listen, false, reuse},
		{rules.Bound, false, reuse},
		{rules.Connected, true, rules.FactReusePort},
		// Unknown origin: the stated assumption is connect() for a port
		// inside the ephemeral range, and the fact stays marked unknown.
		{rules.Connected, true, reuse | rules.FactPortOrigin | rules.FactV6Only},
		{rules.TimeWait, true, reuse | rules.FactPortOrigin | rules.FactTimestamps},
	} {
		s := got[i].Socket
		if s.State != w.state || s.PortFromConnect != w.fromConnect || s.Unknown != w.unknown {
			t.Errorf("entry %d: state %v, from connect %v, unknown %b; want %v, %v, %b", i, s.State, s.PortFromConnect, s.Unknown, w.state, w.fromConnect, w.unknown)
		}
	}
	if o := got[1].Owners; len(o) != 1 || o[0] != (Owner{PID: 7, Comm: "hog"}) || got[1].Socket.UID != 65534 {
		t.Errorf("bound-only socket: owners %+v, uid %d", o, got[1].Socket.UID)
	}
	if tw := got[4]; tw.TimeLeft != 45*time.Second || tw.Socket.TWAge != 15*time.Second {
		t.Errorf("TIME_WAIT: left %v, age %v; want 45s and 15s", tw.TimeLeft, tw.Socket.TWAge)
	}
	if !got[2].Socket.ReuseAddr {
		t.Errorf("live SO_REUSEADDR not carried over")
	}
}
