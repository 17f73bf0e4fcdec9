package broker

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tuple-net/tuple/inet"
)

// The example grant is a contract: it must keep parsing to this.
const contractPolicy = `
[[grant]]
uids = [65534]            # and/or gids = [...]
proto = "tcp"             # tcp | udp
address = "127.0.0.1"     # an address, or "0.0.0.0" / "::"
ports = "8000-8009"       # one port or a range
options = ["reuseport"]   # optional: reuseport, reuseaddr, v6only
group = "web"             # optional: one reuseport group shared by every grantee
max_sockets = 3           # optional quota per uid for this grant
`

func TestParsePolicyContract(t *testing.T) {
	p, err := ParsePolicy([]byte(contractPolicy))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{Grants: []Grant{{
		Index: 1, UIDs: []uint32{65534}, Proto: inet.TCP, Address: netip.MustParseAddr("127.0.0.1"),
		Ports: inet.PortRange{Lo: 8000, Hi: 8009}, Options: Options{ReusePort: true}, Group: "web", MaxSockets: 3,
	}}}
	if diff := cmp.Diff(want, p, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("-want +got:\n%s", diff)
	}
}

func TestParsePolicyFull(t *testing.T) {
	p, err := ParsePolicy([]byte(`
max_sockets = 10
[socket]
path = "/run/x/../tuple-broker.sock"
mode = "0660"
owner = "root"
group = 998
[[grant]]
gids = [100]
cgroups = ["/system.slice/web.service/"]
proto = "udp"
address = "::"
ports = 53
options = ["v6only", "reuseaddr"]
device = "eth0"
`))
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxSockets != 10 || p.Socket != (SocketFile{Path: "/run/tuple-broker.sock", Mode: 0o660, Owner: "root", Group: "998"}) {
		t.Errorf("top level: %+v", p)
	}
	g := p.Grants[0]
	if g.Proto != inet.UDP || g.Address != netip.IPv6Unspecified() || g.Ports != (inet.PortRange{Lo: 53, Hi: 53}) ||
		!g.Options.V6Only || !g.Options.ReuseAddr || g.Options.ReusePort || g.Device != "eth0" ||
		len(g.Cgroups) != 1 || g.Cgroups[0] != "/system.slice/web.service" {
		t.Errorf("grant: %+v", g)
	}
	if got := g.Key(); got != "udp :: 53" {
		t.Errorf("Key = %q", got)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	grant := func(body string) string { return "[[grant]]\n" + body }
	base := "uids = [1]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = \"80\"\n"
	for _, tc := range []struct{ in, want string }{
		{"[[grant]\n", "line "},
		{"bogus = 1\n", `unknown key "bogus"`},
		{grant(base + "colour = \"red\"\n"), `unknown key "grant.colour"`},
		{grant("proto = \"tcp\"\naddress = \"127.0.0.1\"\nports = 80\n"), "grant #1: names no uids or gids"},
		{grant("uids = [-1]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = 80\n"), "not a valid id"},
		{grant("uids = [4294967295]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = 80\n"), "not a valid id"},
		{grant("uids = [1]\nproto = \"sctp\"\naddress = \"127.0.0.1\"\nports = 80\n"), `proto "sctp"`},
		{grant("uids = [1]\nproto = \"tcp\"\nports = 80\n"), "address is missing"},
		{grant("uids = [1]\nproto = \"tcp\"\naddress = \"fe80::1%eth0\"\nports = 80\n"), "without a zone"},
		{grant("uids = [1]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\n"), "ports is missing"},
		{grant("uids = [1]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = 0\n"), "want 1-65535"},
		{grant("uids = [1]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = \"90-80\"\n"), "low end"},
		{grant("uids = [1]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = 1.5\n"), "want a port"},
		{grant(base + "options = [\"v6only\"]\n"), "v6only needs an IPv6 address"},
		{grant(base + "options = [\"freebind\"]\n"), `"freebind"`},
		{grant(base + "group = \"a b\"\n"), "group"},
		{grant(base + "device = \"a/b\"\n"), "not an interface name"},
		{grant(base + "max_sockets = -1\n"), "max_sockets -1"},
		{grant(base + "cgroups = [\"system.slice\"]\n"), "starting with /"},
		{"[socket]\nmode = \"0999\"\n", "mode"},
		{"[socket]\npath = \"relative\"\n", "absolute"},
		{"[socket]\nowner = -5\n", "owner -5"},
		{"max_sockets = -2\n", "max_sockets -2"},
		{grant("uids=[1]\nproto=\"tcp\"\naddress=\"127.0.0.1\"\nports=\"80-90\"\ngroup=\"a\"\n") +
			grant("uids=[2]\nproto=\"tcp\"\naddress=\"127.0.0.1\"\nports=\"85\"\ngroup=\"b\"\n"), "would merge"},
	} {
		_, err := ParsePolicy([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePolicy(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
	// Groups on different ports, or the same group twice, are fine. So
	// are groups on one port whose family, address or device differ: the
	// kernel joins a group only on the exact same ones (0.0.0.0 and
	// 127.0.0.1 make two groups, and the lookup picks between them).
	ok := grant("uids=[1]\nproto=\"tcp\"\naddress=\"0.0.0.0\"\nports=\"80\"\ngroup=\"a\"\n") +
		grant("uids=[2]\nproto=\"tcp\"\naddress=\"0.0.0.0\"\nports=\"81\"\ngroup=\"b\"\n") +
		grant("uids=[3]\nproto=\"tcp\"\naddress=\"0.0.0.0\"\nports=\"80\"\ngroup=\"a\"\n") +
		grant("uids=[4]\nproto=\"tcp\"\naddress=\"127.0.0.1\"\nports=\"80\"\ngroup=\"c\"\n") +
		grant("uids=[6]\nproto=\"tcp\"\naddress=\"127.0.0.1\"\nports=\"80\"\ngroup=\"e\"\ndevice=\"lo\"\n")
	if _, err := ParsePolicy([]byte(ok)); err != nil {
		t.Errorf("groups the kernel keeps apart: %v", err)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(contractPolicy))
	f.Add([]byte("max_sockets = 3\n[socket]\nmode=\"0600\"\n[[grant]]\ngids=[5]\nproto=\"udp\"\naddress=\"::\"\nports=53\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		// Whatever parses is internally consistent: the checks Decide
		// relies on hold.
		for i, g := range p.Grants {
			if g.Index != i+1 || (len(g.UIDs) == 0 && len(g.GIDs) == 0) || g.Ports.Lo == 0 || g.Ports.Lo > g.Ports.Hi ||
				(g.Proto != inet.TCP && g.Proto != inet.UDP) || !g.Address.IsValid() || (g.Group != "" && !g.Options.ReusePort) {
				t.Fatalf("inconsistent grant %+v from %q", g, b)
			}
		}
	})
}

// fakeUsage is a Usage with fixed counts.
type fakeUsage struct {
	live  map[string]int
	total int
}

func (u fakeUsage) Live(uid uint32, key string) int { return u.live[key] }
func (u fakeUsage) LiveTotal(uid uint32) int        { return u.total }

func TestDecide(t *testing.T) {
	p, err := ParsePolicy([]byte(`
max_sockets = 4
[[grant]]
uids = [1000]
proto = "tcp"
address = "127.0.0.1"
ports = "8000-8009"
max_sockets = 2
[[grant]]
gids = [50]
proto = "tcp"
address = "0.0.0.0"
ports = 80
group = "web"
[[grant]]
uids = [1000]
cgroups = ["/system.slice/web.service"]
proto = "udp"
address = "::"
ports = 53
options = ["v6only"]
`))
	if err != nil {
		t.Fatal(err)
	}
	req := func(js string) *Request {
		r, err := ParseRequest([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	user := Peer{PID: 10, UID: 1000, GID: 1000}
	web := Peer{PID: 11, UID: 2000, GID: 2000, Groups: []uint32{7, 50}}
	for _, tc := range []struct {
		name  string
		peer  Peer
		req   string
		use   fakeUsage
		allow bool
		grant int
		quota bool
		why   string
	}{
		{"in range", user, `{"op":"socket","proto":"tcp","address":"127.0.0.1","port":8005}`, fakeUsage{}, true, 1, false, "allowed by grant #1"},
		{"any port", user, `{"op":"socket","proto":"tcp","address":"127.0.0.1"}`, fakeUsage{}, true, 1, false, "allowed"},
		{"outside range", user, `{"op":"socket","proto":"tcp","address":"127.0.0.1","port":8010}`, fakeUsage{}, false, 1, false, "port 8010 is outside 8000-8009"},
		{"other address", user, `{"op":"socket","proto":"tcp","address":"127.0.0.2","port":8000}`, fakeUsage{}, false, 0, false, "no grant for uid 1000 allows tcp 127.0.0.2"},
		{"unknown uid", Peer{UID: 3}, `{"op":"socket","proto":"tcp","address":"127.0.0.1","port":8000}`, fakeUsage{}, false, 0, false, "no grant names uid 3"},
		{"option not granted", user, `{"op":"socket","proto":"tcp","address":"127.0.0.1","port":8000,"options":["reuseport"]}`, fakeUsage{}, false, 1, false, "does not allow option reuseport"},
		{"grant quota", user, `{"op":"socket","proto":"tcp","address":"127.0.0.1"}`, fakeUsage{live: map[string]int{"tcp 127.0.0.1 8000-8009": 2}}, false, 1, true, "holds 2 of 2 sockets under grant #1"},
		{"uid quota", user, `{"op":"socket","proto":"tcp","address":"127.0.0.1"}`, fakeUsage{total: 4}, false, 1, true, "holds 4 of 4 sockets (max_sockets)"},
		{"supplementary gid", web, `{"op":"socket","proto":"tcp","address":"0.0.0.0","port":80,"listen":true}`, fakeUsage{}, true, 2, false, "allowed by grant #2"},
		{"group by name", web, `{"op":"socket","proto":"tcp","address":"0.0.0.0","port":80,"group":"web"}`, fakeUsage{}, true, 2, false, "allowed"},
		{"any port is not a group", web, `{"op":"socket","proto":"tcp","address":"0.0.0.0"}`, fakeUsage{}, false, 2, false, "name the port or the group"},
		{"any port of a group", web, `{"op":"socket","proto":"tcp","address":"0.0.0.0","group":"web"}`, fakeUsage{}, true, 2, false, "allowed"},
		{"wrong group", web, `{"op":"socket","proto":"tcp","address":"0.0.0.0","port":80,"group":"api"}`, fakeUsage{}, false, 2, false, `not reuseport group "api"`},
		{"cgroup below", Peer{UID: 1000, Cgroup: "/system.slice/web.service/sub"}, `{"op":"socket","proto":"udp","address":"::","port":53,"options":["v6only"]}`, fakeUsage{}, true, 3, false, "allowed"},
		{"cgroup sibling", Peer{UID: 1000, Cgroup: "/system.slice/web.service2"}, `{"op":"socket","proto":"udp","address":"::","port":53}`, fakeUsage{}, false, 3, false, "is not under /system.slice/web.service"},
		{"cgroup unknown", Peer{UID: 1000}, `{"op":"socket","proto":"udp","address":"::","port":53}`, fakeUsage{}, false, 3, false, "cgroup unknown"},
	} {
		d := p.Decide(tc.peer, req(tc.req), tc.use)
		gi := 0
		if d.Grant != nil {
			gi = d.Grant.Index
		}
		if d.Allowed != tc.allow || d.Quota != tc.quota || (tc.grant != 0 && gi != tc.grant) || !strings.Contains(d.Reason, tc.why) {
			t.Errorf("%s: got allowed=%v quota=%v grant=%d reason=%q; want allowed=%v quota=%v grant=%d reason containing %q",
				tc.name, d.Allowed, d.Quota, gi, d.Reason, tc.allow, tc.quota, tc.grant, tc.why)
		}
	}
}

func TestParseCgroup(t *testing.T) {
	for in, want := range map[string]string{
		"0::/system.slice/web.service\n":              "/system.slice/web.service",
		"12:cpu:/x\n0::/user.slice/user-1000.slice\n": "/user.slice/user-1000.slice",
		"12:cpu:/x\n":    "",
		"0::\n":          "",
		"0::/\n":         "/",
		"0::/a\n0::/b\n": "/a",
		"garbage":        "",
	} {
		if got := ParseCgroup([]byte(in)); got != want {
			t.Errorf("ParseCgroup(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestActivationEnv(t *testing.T) {
	got := ActivationEnv([]string{"PATH=/bin", "LISTEN_FDS=9", "LISTEN_PID=1", "LISTEN_FDNAMES=x", "HOME=/"}, 42, []string{"web", "dns"})
	want := []string{"PATH=/bin", "HOME=/", "LISTEN_PID=42", "LISTEN_FDS=2", "LISTEN_FDNAMES=web:dns"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("-want +got:\n%s", diff)
	}
}
