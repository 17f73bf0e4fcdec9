package nat

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"

	"github.com/tuple-net/tuple/sockopt"
)

// The expressions Apply writes read back as the same rule.
func TestRuleExprsRoundTrip(t *testing.T) {
	for _, r := range []Rule{
		{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.1"), Ports: sockopt.PortRange{Lo: 40000, Hi: 40009}, OutInterface: "r1"},
		{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.9"), FullyRandom: true},
		{Masquerade: true, OutInterface: "eth0", Random: true},
		{Masquerade: true, Ports: sockopt.PortRange{Lo: 1024, Hi: 2047}},
	} {
		exprs, err := ruleExprs(r, nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatalf("ruleExprs(%+v): %v", r, err)
		}
		got, ok := ruleFromExprs(exprs)
		if !ok {
			t.Fatalf("ruleFromExprs(ruleExprs(%+v)) is not a NAT rule", r)
		}
		if d := cmp.Diff(r, got, netipEqual); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	}
	if _, err := ruleExprs(Rule{Masquerade: true, Random: true, Ports: sockopt.PortRange{Lo: 1, Hi: 2}}, nftables.TableFamilyIPv4); err == nil {
		t.Error("masquerade with ports and random: no error")
	}
}
