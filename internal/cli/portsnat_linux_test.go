package cli

import (
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/nat"
	"github.com/tuple-net/tuple/sockopt"
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
		{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.1"), Ports: sockopt.PortRange{Lo: 40000, Hi: 40009}},
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
