package ports

import (
	"net/netip"
	"testing"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// BenchmarkBudget40k is the budget over a table like the benchmark
// script's: 20,000 loopback connections from 4 holders (each client and its
// accepted child), 40,004 sockets.
func BenchmarkBudget40k(b *testing.B) {
	h := rules.DefaultHost()
	var entries []Entry
	lo := netip.MustParseAddr("127.0.0.1")
	for holder := range 4 {
		srv := netip.AddrPortFrom(lo, uint16(20000+holder))
		entries = append(entries, Entry{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, State: rules.Listen, Local: srv}})
		for i := range 5000 {
			cli := netip.AddrPortFrom(lo, uint16(32768+(holder*5000+i)%28232))
			entries = append(entries,
				Entry{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, State: rules.Connected, Local: cli, Remote: srv, Unknown: rules.FactPortOrigin},
					Owners: []Owner{{PID: 100 + holder, Comm: "holder"}}},
				Entry{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, State: rules.Connected, Local: srv, Remote: cli, Unknown: rules.FactPortOrigin},
					Owners: []Owner{{PID: 100 + holder, Comm: "holder"}}})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		Budget(entries, h, Options{})
	}
}
