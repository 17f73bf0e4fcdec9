package lab

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/nat"
)

const topoText = `[through-nat]
host alice via=192.0.2.1
router gw
host web
link alice=192.0.2.2/24 gw=192.0.2.1/24
link gw=198.51.100.1/24 web=198.51.100.2/24,198.51.100.3/24
nat gw snat to=198.51.100.1 ports=40000-40009 out=web fully-random
WEB server tcp4 198.51.100.2:80 in=web
sysctl in=alice net.ipv4.ip_local_port_range=40000 40001
A socket tcp4 in=alice reuseaddr
A connect 198.51.100.2:80 => ok
L socket tcp4
L bind 10.0.0.1:0
`

func TestParseTopology(t *testing.T) {
	scs, err := Parse("t.lab", []byte(topoText))
	if err != nil {
		t.Fatal(err)
	}
	sc := scs[0]
	pfx := netip.MustParsePrefix
	want := Topology{
		Hosts: []Host{
			{Name: "alice", Line: 2, Via: netip.MustParseAddr("192.0.2.1")},
			{Name: "gw", Line: 3, Router: true},
			{Name: "web", Line: 4},
		},
		Links: []Link{
			{Line: 5, A: "alice", B: "gw", AAddrs: []netip.Prefix{pfx("192.0.2.2/24")}, BAddrs: []netip.Prefix{pfx("192.0.2.1/24")}},
			{Line: 6, A: "gw", B: "web", AAddrs: []netip.Prefix{pfx("198.51.100.1/24")}, BAddrs: []netip.Prefix{pfx("198.51.100.2/24"), pfx("198.51.100.3/24")}},
		},
		NAT: []NATRule{{Line: 7, Router: "gw", Rule: nat.Rule{
			ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.1"),
			Ports: inet.PortRange{Lo: 40000, Hi: 40009}, OutInterface: "web", FullyRandom: true}}},
	}
	eq := cmp.Options{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	}
	if d := cmp.Diff(want, sc.Topology, eq); d != "" {
		t.Errorf("topology (-want +got):\n%s", d)
	}
	hosts := map[int]string{}
	for _, st := range sc.Steps {
		hosts[st.Line] = st.Host
	}
	if hosts[8] != "web" || hosts[9] != "alice" || hosts[10] != "alice" || hosts[11] != "alice" || hosts[12] != "" || hosts[13] != "" {
		t.Errorf("hosts of the lines = %v, want web, alice x3, then the scenario's own namespace", hosts)
	}
	if op := sc.Steps[1].Op; op != "sysctl in=alice net.ipv4.ip_local_port_range=40000 40001" {
		t.Errorf("sysctl op = %q", op)
	}
	// Addresses on hosts' links are not added to the scenario's own lo.
	if a := sc.Addrs(); len(a) != 1 || a[0] != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("Addrs = %v, want only 10.0.0.1", a)
	}
	if got := sc.Topology.Owner(netip.MustParseAddr("198.51.100.3")); got != "web" {
		t.Errorf("Owner(198.51.100.3) = %q, want web", got)
	}
	if got := sc.Topology.Addrs("gw"); len(got["alice"]) != 1 || len(got["web"]) != 1 {
		t.Errorf("gw's interfaces = %v, want one address towards alice and one towards web", got)
	}
}

// A socket may still be called like a topology keyword.
func TestParseKeywordSockets(t *testing.T) {
	scs, err := Parse("t.lab", []byte("[x]\nhost socket tcp4\nnat server tcp4 127.0.0.1:80\nlink socket udp4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(scs[0].Steps); n != 3 || scs[0].Steps[0].Sock != "host" || scs[0].Steps[1].Sock != "nat" {
		t.Errorf("steps = %+v, want sockets host, nat and link", scs[0].Steps)
	}
}

func TestParseTopologyErrors(t *testing.T) {
	const two = "[x]\nhost a\nrouter r\n"
	for _, tc := range []struct{ text, want string }{
		{"[x]\nhost A", `t.lab:2: bad host name "A"`},
		{"[x]\nhost lo", `t.lab:2: bad host name "lo"`},
		{"[x]\nhost abcdefghijklmnop", `t.lab:2: bad host name`},
		{"[x]\nhost link", `t.lab:2: bad host name "link": it is a keyword`},
		{"[x]\nhost a\nhost a", `t.lab:3: host a already defined at line 2`},
		{"[x]\nhost a via=1.2.3", `t.lab:2: via=1.2.3: want an IPv4 address`},
		{"[x]\nhost a gw=1.2.3.4", `t.lab:2: unknown host option "gw=1.2.3.4"`},
		{"[x]\nhost a => ok", `t.lab:2: host lines assert nothing`},
		{"[x]\nA socket tcp4\nhost a", `t.lab:3: host: topology lines (host, router, link, nat) come before`},
		{two + "link a=192.0.2.2/24", `t.lab:4: link takes two ends`},
		{two + "link a=192.0.2.2/24 b=192.0.2.1/24", `t.lab:4: link end "b=192.0.2.1/24": no host b`},
		{two + "link a=192.0.2.2 r=192.0.2.1/24", `t.lab:4: link end "a=192.0.2.2": "192.0.2.2" is not an IPv4 host address`},
		{two + "link a=192.0.2.0/24 r=192.0.2.1/24", `t.lab:4: link end "a=192.0.2.0/24": "192.0.2.0/24" is not an IPv4 host address`},
		{two + "link a=[2001:db8::1]/64 r=192.0.2.1/24", `t.lab:4: link end`},
		{two + "link a=127.0.0.2/8 r=192.0.2.1/24", `t.lab:4: link end "a=127.0.0.2/8": 127.0.0.2 cannot be`},
		{two + "link a=192.0.2.2/24 r=192.0.2.2/24", `t.lab:4: link end "r=192.0.2.2/24": address 192.0.2.2 is already on a link`},
		{two + "link a=192.0.2.2/24 a=192.0.2.1/24", `t.lab:4: link joins a to itself`},
		{two + "link a=192.0.2.2/24 r=192.0.2.1/24\nlink r=192.0.3.1/24 a=192.0.3.2/24", `t.lab:5: hosts r and a are linked already`},
		{two + "nat a masquerade", `t.lab:4: nat: a is a host, not a router`},
		{two + "nat z masquerade", `t.lab:4: nat: no host z`},
		{two + "nat r dnat to=1.2.3.4", `t.lab:4: nat: unknown kind "dnat"`},
		{two + "nat r snat", `t.lab:4: nat: snat needs to=ADDR`},
		{two + "nat r masquerade to=1.2.3.4", `t.lab:4: option to: want to=IPV4ADDR, on snat only`},
		{two + "nat r snat to=1.2.3.4 ports=0-9", `t.lab:4: option ports: want ports=LO-HI`},
		{two + "nat r snat to=1.2.3.4 ports=9-1", `t.lab:4: option ports: want ports=LO-HI`},
		{two + "nat r snat to=1.2.3.4 out=a", `t.lab:4: option out: want out=HOST, a host linked to r`},
		{two + "nat r snat to=1.2.3.4 random fully-random", `t.lab:4: nat: random and fully-random together`},
		{two + "nat r snat to=1.2.3.4 random=1", `t.lab:4: option "random" takes no value`},
		{two + "nat r snat to=1.2.3.4 to=1.2.3.5", `t.lab:4: option "to" given twice`},
		{two + "nat r masquerade ports=1-2", `t.lab:4: nat: masquerade takes no ports= here`},
		{two + "nat r snat to=1.2.3.4 hairpin", `t.lab:4: unknown nat option "hairpin"`},
		{two + "A socket tcp4 in=z", `t.lab:4: option in: no host "z"`},
		{two + "A socket tcp6 in=a", `t.lab:4: option in: hosts are IPv4`},
		{two + "sysctl in=z net.ipv4.ip_forward=1", `t.lab:4: option in: no host "z"`},
		{"[x]\nhost a via=192.0.2.9\nrouter r\nlink a=192.0.2.2/24 r=192.0.2.1/24\nA socket tcp4 in=a", `t.lab:2: host a: via=192.0.2.9 is no address of a host linked to it`},
		{"[x]\nhost a via=192.0.3.1\nrouter r\nlink a=192.0.2.2/24 r=192.0.2.1/24,192.0.3.1/24\nA socket tcp4 in=a", `t.lab:2: host a: via=192.0.3.1 is not on a prefix of its link to r`},
		{"[x]\nhost a\nrouter r\nA socket tcp4 in=a", `t.lab:2: host a has no link`},
	} {
		wantParseError(t, tc.text, tc.want)
	}
}
