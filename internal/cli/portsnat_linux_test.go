package cli

import (
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/nattest"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/nat"
)

// `tuple ports --nat` reads the namespace's source-NAT rules through
// nftables and reports them, with conntrack's counters; the budget
// arithmetic itself is checked against the kernel in package nat.
func TestPortsNATReadsRules(t *testing.T) {
	ns := netnstest.New(t)
	fd, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	rules := []nat.Rule{
		{Masquerade: true, OutInterface: "eth9"},
		{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.1"), Ports: inet.PortRange{Lo: 40000, Hi: 40009}},
	}
	if err := nat.Apply(int(fd.Fd()), nftables.TableFamilyIPv4, rules); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runIn(t, ns, "ports", "--nat", "--json")
	if code != 0 {
		t.Fatalf("ports --nat --json: exit %d: %s", code, errOut)
	}
	var rep natReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("ports --nat --json output is not JSON: %v\n%s", err, out)
	}
	want := []string{
		"oifname eth9 masquerade (tuple-nat/postrouting)",
		"snat to 198.51.100.1 to :40000-40009 (tuple-nat/postrouting)",
	}
	if strings.Join(rep.Rules, "\n") != strings.Join(want, "\n") {
		t.Errorf("rules = %q, want %q", rep.Rules, want)
	}
	if len(rep.Budgets) != 0 {
		t.Errorf("budgets without traffic = %+v, want none", rep.Budgets)
	}
	code, out, _ = runIn(t, ns, "ports", "--nat")
	if code != 0 || !strings.Contains(out, "Source-NAT rules  oifname eth9 masquerade") || !strings.Contains(out, "No translated connections") {
		t.Errorf("ports --nat: exit %d\n%s", code, out)
	}
}

// The must-show of the NAT work: with an SNAT range of 10 ports and two
// destinations holding 7 and 3 of them, `tuple ports --nat --json` run on
// the router says 3 and 7 free, and the kernel then allows exactly that
// many further connections to each destination before it drops one.
func TestPortsNATPredictsFurtherConnections(t *testing.T) {
	rule := nat.Rule{ToMin: nattest.NATAddr, ToMax: nattest.NATAddr, Ports: inet.PortRange{Lo: 40000, Hi: 40009}, OutInterface: nattest.OutInterface}
	tp := nattest.New(t, func(fd int) error { return nat.Apply(fd, nftables.TableFamilyIPv4, []nat.Rule{rule}) })
	tp.Open(t, nattest.DestA, 7)
	tp.Open(t, nattest.DestB, 3)
	code, out, errOut := runIn(t, tp.Router, "ports", "--nat", "--json")
	if code != 0 {
		t.Fatalf("ports --nat --json: exit %d: %s", code, errOut)
	}
	var rep natReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("ports --nat --json output is not JSON: %v\n%s", err, out)
	}
	free := map[netip.AddrPort]int{}
	for _, b := range rep.Budgets {
		if b.NATAddress == nattest.NATAddr && b.Proto == "tcp" && b.Exhaustive {
			free[b.Destination] = b.Free
		}
	}
	if free[nattest.DestA] != 3 || free[nattest.DestB] != 7 {
		t.Fatalf("ports --nat predicts %v free, want 3 towards %s and 7 towards %s:\n%s", free, nattest.DestA, nattest.DestB, out)
	}
	for _, d := range []netip.AddrPort{nattest.DestA, nattest.DestB} {
		if n := tp.Further(t, d, free[d]+2, rule.Ports.Lo, rule.Ports.Hi); n != free[d] {
			t.Errorf("the kernel allowed %d further connections to %s; ports --nat predicted %d", n, d, free[d])
		}
	}
}
