package nat

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tuple-net/tuple/sockopt"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// netipEqual lets cmp compare netip values (their fields are unexported).
var netipEqual = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

// flow is a TCP conntrack entry from inside client src to dest, translated
// to nat.
func flow(src, dest, nat string) Flow {
	return Flow{Proto: 6,
		Orig:   Tuple{Src: ap(src), Dst: ap(dest)},
		Reply:  Tuple{Src: ap(dest), Dst: ap(nat)},
		SrcNAT: ap(src) != ap(nat)}
}

func TestBudgetsPerDestination(t *testing.T) {
	rule := Rule{ToMin: netip.MustParseAddr("198.51.100.1"), Ports: sockopt.PortRange{Lo: 40000, Hi: 40009}, OutInterface: "r1"}
	flows := []Flow{
		flow("192.0.2.2:50001", "198.51.100.2:80", "198.51.100.1:40000"),
		flow("192.0.2.2:50002", "198.51.100.2:80", "198.51.100.1:40001"),
		flow("192.0.2.3:50001", "198.51.100.3:80", "198.51.100.1:40000"), // same NAT port, other destination
		// The router's own connection from the NAT address takes a port
		// towards .2:80 too, though nothing translated it.
		flow("198.51.100.1:40005", "198.51.100.2:80", "198.51.100.1:40005"),
		// Outside the rule's range: held, but not a port of the budget.
		flow("192.0.2.4:50001", "198.51.100.2:80", "198.51.100.1:50001"),
	}
	got := Budgets([]Rule{rule}, flows, nil)
	want := []Budget{
		{NATAddress: netip.MustParseAddr("198.51.100.1"), Proto: "tcp", Destination: ap("198.51.100.2:80"),
			Translated: 3, InUse: 3, Size: 10, Free: 7, Exhaustive: true, Rule: rule.Describe()},
		{NATAddress: netip.MustParseAddr("198.51.100.1"), Proto: "tcp", Destination: ap("198.51.100.3:80"),
			Translated: 1, InUse: 1, Size: 10, Free: 9, Exhaustive: true, Rule: rule.Describe()},
	}
	if d := cmp.Diff(want, got, netipEqual); d != "" {
		t.Errorf("budgets (-want +got):\n%s", d)
	}
}

func TestBudgetsMasqueradeDefaultRange(t *testing.T) {
	rules := []Rule{
		{Masquerade: true, OutInterface: "eth1", Ports: sockopt.PortRange{Lo: 1000, Hi: 1001}},
		{Masquerade: true, OutInterface: "eth0"},
	}
	ifaces := map[string][]netip.Addr{"eth0": {netip.MustParseAddr("203.0.113.7")}, "eth1": {netip.MustParseAddr("203.0.113.8")}}
	got := Budgets(rules, []Flow{flow("192.0.2.2:12345", "198.51.100.2:443", "203.0.113.7:12345")}, ifaces)
	if len(got) != 1 {
		t.Fatalf("got %d budgets, want 1: %+v", len(got), got)
	}
	b := got[0]
	// Without a port range the kernel searches 1024-65535: 64,512 ports,
	// and says nothing of exhaustiveness past 128 ports.
	if b.Size != 64512 || b.Free != 64511 || b.Exhaustive || b.Rule != "oifname eth0 masquerade" {
		t.Errorf("budget = %+v, want the eth0 masquerade rule with 64512 ports, 64511 free, not exhaustive", b)
	}
}

func TestBudgetsUnknownRule(t *testing.T) {
	got := Budgets(nil, []Flow{flow("192.0.2.2:12345", "198.51.100.2:443", "203.0.113.7:2000")}, nil)
	if len(got) != 1 || got[0].Rule != "" || got[0].Size != 64512 {
		t.Errorf("budget without a known rule = %+v, want Rule \"\" and the kernel's default range", got)
	}
}

func TestRuleDescribe(t *testing.T) {
	r := Rule{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.4"),
		Ports: sockopt.PortRange{Lo: 40000, Hi: 40009}, FullyRandom: true, Table: "t", Chain: "c"}
	if got, want := r.Describe(), "snat to 198.51.100.1-198.51.100.4 to :40000-40009 fully-random (t/c)"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}
