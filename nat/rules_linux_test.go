package nat

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/tuple-net/tuple/inet"
)

// The expressions Apply writes read back as the same rule.
func TestRuleExprsRoundTrip(t *testing.T) {
	for _, r := range []Rule{
		{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.1"), Ports: inet.PortRange{Lo: 40000, Hi: 40009}, OutInterface: "r1"},
		{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.9"), FullyRandom: true},
		{Masquerade: true, OutInterface: "eth0", Random: true},
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
	// A masquerade port range would be ignored by the kernel (no
	// NF_NAT_RANGE_PROTO_SPECIFIED flag beside the registers): refused.
	if _, err := ruleExprs(Rule{Masquerade: true, Ports: inet.PortRange{Lo: 1, Hi: 2}}, nftables.TableFamilyIPv4); err == nil {
		t.Error("masquerade with ports: no error")
	}
}

// iptables-nft's MASQUERADE and SNAT targets read as rules too.
func TestRuleFromIptablesTargets(t *testing.T) {
	masq := &xt.NatIPv4MultiRangeCompat{{Flags: uint(xt.NatRangeProtoSpecified | xt.NatRangeProtoRandomFully), MinPort: 20000, MaxPort: 20099}}
	oif := []byte("eth0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	got, ok := ruleFromExprs([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: oif},
		&expr.Target{Name: "MASQUERADE", Info: masq},
	})
	want := Rule{Masquerade: true, OutInterface: "eth0", Ports: inet.PortRange{Lo: 20000, Hi: 20099}, FullyRandom: true}
	if !ok || got != want {
		t.Errorf("MASQUERADE target read as %+v (ok %v), want %+v", got, ok, want)
	}
	snat := &xt.NatIPv4MultiRangeCompat{{Flags: uint(xt.NatRangeMapIPs), MinIP: []byte{198, 51, 100, 1}, MaxIP: []byte{198, 51, 100, 2}}}
	got, ok = ruleFromExprs([]expr.Any{&expr.Target{Name: "SNAT", Info: snat}})
	want = Rule{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.2")}
	if !ok || got != want {
		t.Errorf("SNAT target read as %+v (ok %v), want %+v", got, ok, want)
	}
	if _, ok := ruleFromExprs([]expr.Any{&expr.Target{Name: "DNAT", Info: snat}}); ok {
		t.Error("a DNAT target read as a source-NAT rule")
	}
}
