package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tuple-net/tuple/inet"
)

func TestParse(t *testing.T) {
	text := `# comment
[two-clients]
sysctl net.ipv4.ip_local_port_range=40000 40001   # trailing comment
S server tcp6 [::]:80 reuseport v6only uid=1000 => ok
A socket tcp4 reuseaddr bind-no-port freebind port-range=40000-40010 dev=lo
A bind 10.0.0.1:0
A connect 10.0.0.2:@S     => EADDRNOTAVAIL
A close
sleep 10ms
A socket udp6
A bind [::ffff:127.0.0.1]:@S
A pass uid=2000 =>ok

[second]
B socket tcp4
B listen => EADDRINUSE
`
	got, err := Parse("t.lab", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []Scenario{
		{File: "t.lab", Name: "two-clients", Line: 2, Steps: []Step{
			{Line: 3, Kind: KindSysctl, Op: "sysctl net.ipv4.ip_local_port_range=40000 40001", Key: "net.ipv4.ip_local_port_range", Value: "40000 40001"},
			{Line: 4, Sock: "S", Kind: KindServer, Op: "server tcp6 [::]:80 reuseport v6only uid=1000", Proto: TCP6,
				Addr: Endpoint{Addr: netip.MustParseAddr("::"), Port: 80},
				Opts: Options{ReusePort: true, V6Only: true, UID: 1000}, Expect: "ok"},
			{Line: 5, Sock: "A", Kind: KindSocket, Op: "socket tcp4 reuseaddr bind-no-port freebind port-range=40000-40010 dev=lo", Proto: TCP4,
				Opts: Options{ReuseAddr: true, BindNoPort: true, Freebind: true, PortRange: inet.PortRange{Lo: 40000, Hi: 40010}, Dev: "lo"}},
			{Line: 6, Sock: "A", Kind: KindBind, Op: "bind 10.0.0.1:0", Addr: Endpoint{Addr: netip.MustParseAddr("10.0.0.1")}},
			{Line: 7, Sock: "A", Kind: KindConnect, Op: "connect 10.0.0.2:@S", Addr: Endpoint{Addr: netip.MustParseAddr("10.0.0.2"), PortOf: "S"}, Expect: "EADDRNOTAVAIL"},
			{Line: 8, Sock: "A", Kind: KindClose, Op: "close"},
			{Line: 9, Kind: KindSleep, Op: "sleep 10ms", Sleep: 10 * time.Millisecond},
			{Line: 10, Sock: "A", Kind: KindSocket, Op: "socket udp6", Proto: UDP6},
			{Line: 11, Sock: "A", Kind: KindBind, Op: "bind [::ffff:127.0.0.1]:@S", Addr: Endpoint{Addr: netip.MustParseAddr("::ffff:127.0.0.1"), PortOf: "S"}},
			{Line: 12, Sock: "A", Kind: KindPass, Op: "pass uid=2000", UID: 2000, Expect: "ok"},
		}},
		{File: "t.lab", Name: "second", Line: 14, Steps: []Step{
			{Line: 15, Sock: "B", Kind: KindSocket, Op: "socket tcp4", Proto: TCP4},
			{Line: 16, Sock: "B", Kind: KindListen, Op: "listen", Expect: "EADDRINUSE"},
		}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
	if a := got[0].Addrs(); len(a) != 2 || a[0].String() != "10.0.0.1" || a[1].String() != "10.0.0.2" {
		t.Errorf("Addrs = %v, want [10.0.0.1 10.0.0.2] (loopback, wildcard and mapped loopback are local already)", a)
	}
	if u := got[0].UIDs(); len(u) != 3 || u[0] != 0 || u[1] != 1000 || u[2] != 2000 {
		t.Errorf("UIDs = %v, want [0 1000 2000]", u)
	}
}

// manyUIDs is a scenario body whose sockets are created by n distinct uids
// (root included).
func manyUIDs(n int) string {
	var b strings.Builder
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "S%d socket tcp4 uid=%d\n", i, 1000+i)
	}
	return b.String()
}

// TestParseKernelRanges checks that every IP_LOCAL_PORT_RANGE pair the
// kernel takes (an open end, a cleared option) or refuses itself (low end
// above high: the kernel's EINVAL) parses, that a byte-order mark is not
// part of the first line, and which addresses are added to lo.
func TestParseKernelRanges(t *testing.T) {
	text := "\xef\xbb\xbf[r]\nA socket tcp4 port-range=0-40000\nB socket tcp4 port-range=49999-0\nC socket tcp4 port-range=5-3\nD socket udp4 port-range=0-0\n" +
		"D connect 224.0.0.1:80\nC connect 255.255.255.255:80\nB connect 10.0.0.1:80\nE socket udp6\nE connect [ff02::1]:9\nE bind [::ffff:239.1.1.1]:9\n" + manyUIDs(MaxUIDs)
	scs, err := Parse("r.lab", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []inet.PortRange{{Lo: 0, Hi: 40000}, {Lo: 49999, Hi: 0}, {Lo: 5, Hi: 3}, {}}
	for i, w := range want {
		if got := scs[0].Steps[i].Opts.PortRange; got != w {
			t.Errorf("step %d: range %v, want %v", i, got, w)
		}
	}
	if scs[0].Name != "r" || scs[0].Line != 1 {
		t.Errorf("scenario %q at line %d, want [r] at line 1 (byte-order mark skipped)", scs[0].Name, scs[0].Line)
	}
	if a := scs[0].Addrs(); len(a) != 1 || a[0].String() != "10.0.0.1" {
		t.Errorf("Addrs = %v, want only 10.0.0.1 (multicast and broadcast are never added)", a)
	}
	if n := len(scs[0].UIDs()); n != MaxUIDs {
		t.Errorf("%d uids, want %d", n, MaxUIDs)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"A socket tcp4", "t.lab:1: operation outside a scenario"},
		{"", "t.lab: no scenarios"},
		{"[x]\n", "t.lab:1: scenario [x] has no operations"},
		{"[x]\nA socket tcp4\n[x]\nB socket tcp4", "t.lab:3: scenario [x] already defined at line 1"},
		{"[x y]\nA socket tcp4", `t.lab:1: bad scenario name "x y"`},
		{"[x\nA socket tcp4", `t.lab:1: scenario header "[x": want [NAME]`},
		{"[x]\nA socket tcp4 reuse", `t.lab:2: unknown option "reuse"`},
		{"[x]\nA socket tcp5", `t.lab:2: unknown protocol "tcp5"`},
		{"[x]\nA socket", `t.lab:2: socket needs a protocol`},
		{"[x]\nA", `t.lab:2: want SOCK OPERATION`},
		{"[x]\nA socket tcp4 v6only", `t.lab:2: option v6only needs tcp6 or udp6`},
		{"[x]\nA socket tcp4 reuseaddr reuseaddr", `t.lab:2: option "reuseaddr" given twice`},
		{"[x]\nA socket tcp4 reuseaddr=1", `t.lab:2: option "reuseaddr" takes no value`},
		{"[x]\nA socket tcp4 port-range=9", `t.lab:2: option port-range: want port-range=LO-HI`},
		{"[x]\nA socket tcp4 port-range=1-65536", `t.lab:2: option port-range: want port-range=LO-HI`},
		{"[x]\n" + manyUIDs(MaxUIDs+1), `t.lab:1: scenario [x] uses 17 uids; at most 16`},
		{"[x]\nA socket tcp4 uid=-1", `t.lab:2: bad uid "-1"`},
		{"[x]\nA socket tcp4 dev=", `t.lab:2: option dev: want dev=IFNAME`},
		{"[x]\nA bind 127.0.0.1:1", `t.lab:2: socket A is used before it is created`},
		{"[x]\nA socket tcp4\nA socket tcp4", `t.lab:3: socket A already exists (line 2)`},
		{"[x]\nA socket tcp4\nA close\nA bind 127.0.0.1:1", `t.lab:4: socket A is used after its close`},
		{"[x]\nA socket tcp4\nA jump", `t.lab:3: unknown operation "jump" after socket A (want socket, server, bind, listen, connect, close or pass)`},
		{"[x]\nA socket tcp4\nX sysctl net.ipv4.tcp_tw_reuse=1 => ok", `t.lab:3: sysctl takes no socket name: it acts on the namespace (write "sysctl net.ipv4.tcp_tw_reuse=1" without X)`},
		{"[x]\nA socket tcp4\nA sleep 10ms", `t.lab:3: sleep takes no socket name: it acts on the namespace (write "sleep 10ms" without A)`},
		{"[x]\nA socket tcp4\nA bind 127.0.0.1", `t.lab:3: address "127.0.0.1": want ADDR:PORT`},
		{"[x]\nA socket tcp4\nA bind ::1:80", `t.lab:3: address "::1:80": want an IPv4 address or a bracketed IPv6 address`},
		{"[x]\nA socket tcp4\nA bind [127.0.0.1]:80", `t.lab:3: address "[127.0.0.1]:80": want an IPv4 address`},
		{"[x]\nA socket tcp4\nA bind [::1]:80", `t.lab:3: address "[::1]:80" does not fit a tcp4 socket`},
		{"[x]\nA socket tcp6\nA bind 127.0.0.1:80", `t.lab:3: address "127.0.0.1:80" does not fit a tcp6 socket`},
		{"[x]\nA socket tcp4\nA bind 127.0.0.1:65536", `t.lab:3: port "65536": want 0-65535 or @SOCKET`},
		{"[x]\nA socket tcp4\nA bind 127.0.0.1:@B", `t.lab:3: port @B: no socket B before this line`},
		{"[x]\nA socket tcp4\nA bind 127.0.0.1:1 => EADDRINUS", `t.lab:3: unknown errno name "EADDRINUS"`},
		{"[x]\nA socket tcp4\nA bind 127.0.0.1:1 => fail", `t.lab:3: bad result "fail" after =>`},
		{"[x]\nA socket tcp4\nA bind 127.0.0.1:1 extra", `t.lab:3: bind takes one ADDR:PORT`},
		{"[x]\nA socket udp4\nA listen", `t.lab:3: listen needs a TCP socket; A is udp4`},
		{"[x]\nA socket tcp4\nA close now", `t.lab:3: close takes no arguments`},
		{"[x]\nA socket tcp4\nA pass 1000", `t.lab:3: pass takes uid=N`},
		{"[x]\nS server tcp4 127.0.0.1:80\nS pass uid=1", `t.lab:3: pass hands over sockets made with socket, not servers`},
		{"[x]\nS server tcp4", `t.lab:2: server needs ADDR:PORT after the protocol`},
		{"[x]\nsysctl kernel.pid_max=5", `t.lab:2: sysctl "kernel.pid_max": only net.* keys`},
		{"[x]\nsysctl net.ipv4.ip_local_port_range", `t.lab:2: sysctl takes KEY=VALUE`},
		{"[x]\nsysctl net/../../kernel=1", `t.lab:2: sysctl "net/../../kernel": only net.* keys`},
		{"[x]\nsleep 10s", `t.lab:2: sleep takes a duration up to 5s`},
		{"[x]\n=> ok", `t.lab:2: => without an operation`},
		{"[x]\n1A socket tcp4", `t.lab:2: bad socket name "1A"`},
		{"[x]\nA socket tcp4\n" + strings.Repeat("x", maxLineLen+10), `t.lab:3: line longer than 4096 bytes`},
	} {
		wantParseError(t, tc.text, tc.want)
	}
}

// TestParseSysctlExpectation: a sysctl line takes => RESULT as any
// operation does, so a scenario can expect the kernel to refuse a setting;
// without it the line must succeed (Result.Wants).
func TestParseSysctlExpectation(t *testing.T) {
	scs, err := Parse("t.lab", []byte("[x]\nsysctl net.ipv4.ip_local_port_range=40001 40000 => EINVAL\nsysctl net.ipv4.nosuch=1 => ENOENT\nsysctl net.ipv4.tcp_tw_reuse=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{
		{Line: 2, Kind: KindSysctl, Op: "sysctl net.ipv4.ip_local_port_range=40001 40000", Key: "net.ipv4.ip_local_port_range", Value: "40001 40000", Expect: "EINVAL"},
		{Line: 3, Kind: KindSysctl, Op: "sysctl net.ipv4.nosuch=1", Key: "net.ipv4.nosuch", Value: "1", Expect: "ENOENT"},
		{Line: 4, Kind: KindSysctl, Op: "sysctl net.ipv4.tcp_tw_reuse=1", Key: "net.ipv4.tcp_tw_reuse", Value: "1"},
	}
	if diff := cmp.Diff(want, scs[0].Steps, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("sysctl steps (-want +got):\n%s", diff)
	}
}

// TestDescription: tuple lab --list shows a group's first sentence whole,
// also where it ends mid-line or runs over lines, and cuts one that is
// too long at a word, with an ellipsis; every built-in group's
// description is whole.
func TestDescription(t *testing.T) {
	long := strings.Repeat("word ", 60) // 300 runes, no sentence end
	for _, tc := range []struct{ text, want string }{
		{"# Source NAT: can \"some NAT trickery\" share a source port? Each scenario\n# builds hosts.\n", `Source NAT: can "some NAT trickery" share a source port?`},
		{"\n# Which addresses overlap.\n# No reuse flags here.\n", "Which addresses overlap."},
		{"# A sentence that runs\n# over two lines. Then more.\n", "A sentence that runs over two lines."},
		{"# IP_BIND_ADDRESS_NO_PORT: let connect() pick the port.\n# bind(ip, 0) takes one at bind time.\n", "IP_BIND_ADDRESS_NO_PORT: let connect() pick the port."},
		{"# Rules of Linux 5.10 and 6.18, e.g. the mapped ones (see --kernel)\n\n# Another paragraph.\n", "Rules of Linux 5.10 and 6.18, e.g. the mapped ones (see --kernel)"},
		{"# First paragraph\n#\n# Second.\n", "First paragraph"},
		{"[x]\nA socket tcp4\n", ""},
		{"# " + long + "\n", strings.TrimSpace(strings.Repeat("word ", 48)) + "…"},
		{"# Überall: ümlauts count as runes. Zwei.\n", "Überall: ümlauts count as runes."},
	} {
		got := Description([]byte(tc.text))
		if got != tc.want {
			t.Errorf("Description(%q)\n got %q\nwant %q", tc.text, got, tc.want)
		}
		if n := len([]rune(got)); n > maxDescription {
			t.Errorf("Description(%q): %d runes, at most %d", tc.text, n, maxDescription)
		}
	}
	for _, g := range Groups() {
		text, _ := Builtin(g)
		d := Description(text)
		if d == "" || strings.HasSuffix(d, "…") {
			t.Errorf("group %s: description %q, want its first sentence whole", g, d)
		}
	}
	if text, _ := Builtin("nat"); Description(text) != `Source NAT: can "some NAT trickery" share a source port?` {
		t.Errorf("nat: description %q, want its first sentence", Description(text))
	}
}

// wantParseError checks that Parse rejects text with a *ParseError of one
// line that starts with want (the file, the line and what was wrong).
func wantParseError(t *testing.T, text, want string) {
	t.Helper()
	_, err := Parse("t.lab", []byte(text))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Errorf("Parse(%q) = %v, want a *ParseError", text, err)
		return
	}
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Parse(%q):\n got %q\nwant prefix %q", text, err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("Parse(%q): error spans lines: %q", text, err)
	}
}

// TestLibraryParses checks every built-in group parses, names each claim
// of the seed question, and that every operation line asserts a result
// (the library is a test suite: a line without => would prove nothing).
func TestLibraryParses(t *testing.T) {
	groups := Groups()
	if len(groups) == 0 || groups[0] != "seed" {
		t.Fatalf("Groups() = %v, want seed first", groups)
	}
	for _, g := range groups {
		text, ok := Builtin(g)
		if !ok {
			t.Fatalf("Builtin(%q) missing", g)
		}
		scs, err := Parse(BuiltinFile(g), text)
		if err != nil {
			t.Fatalf("group %s: %v", g, err)
		}
		for _, sc := range scs {
			asserted := 0
			for _, st := range sc.Steps {
				if st.Expect != "" {
					asserted++
				}
			}
			if asserted == 0 {
				t.Errorf("%s [%s]: no line asserts a result", g, sc.Name)
			}
		}
	}
	for _, want := range []string{"seed", "options", "addresses", "udp", "bindnoport", "exhaustion", "uids", "edges", "nat"} {
		if _, ok := Builtin(want); !ok {
			t.Errorf("built-in group %q missing", want)
		}
	}
	if _, ok := Builtin("../lab"); ok {
		t.Error(`Builtin("../lab") found something`)
	}
}

func FuzzParse(f *testing.F) {
	// Small seeds: the fuzzer mutates them quickly; the library itself is
	// covered by TestLibraryParses.
	f.Add([]byte("# c\n[nc-double-p]\nWEB1 server tcp4 10.0.0.1:80\nNC1 socket tcp4 reuseport uid=1000\nNC1 bind 0.0.0.0:12345 => ok\nNC1 connect 10.0.0.1:@WEB1 => ok\nNC1 close\n"))
	f.Add([]byte("[x]\nA socket tcp6 v6only\nA bind [::ffff:1.2.3.4]:@A => EINVAL\n"))
	f.Add([]byte("[x]\nsysctl net.ipv4.a=1 => ok\nsleep 1ms\n"))
	f.Add([]byte("[n]\nhost a via=192.0.2.1\nrouter r\nlink a=192.0.2.2/24 r=192.0.2.1/24\nnat r snat to=192.0.2.1 ports=1-9 out=a random\nA socket tcp4 in=a\nA connect 192.0.2.1:80 => ok\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		scs, err := Parse("f.lab", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not a one-line *ParseError", err)
			}
			return
		}
		for _, sc := range scs {
			if len(sc.Steps) == 0 || sc.Name == "" {
				t.Fatalf("scenario %+v accepted without name or steps", sc)
			}
			for _, st := range sc.Steps {
				if st.Line < 1 || st.Op == "" {
					t.Fatalf("step %+v without line or op", st)
				}
				if st.Kind == KindSysctl && !strings.HasPrefix(st.Key, "net.") {
					t.Fatalf("sysctl %q outside net.* accepted", st.Key)
				}
				if (st.Kind == KindBind || st.Kind == KindConnect || st.Kind == KindServer) && !st.Addr.Addr.IsValid() {
					t.Fatalf("step %+v without an address", st)
				}
				if st.Host != "" && sc.Topology.host(st.Host) == nil {
					t.Fatalf("step %+v on host %q the topology does not have", st, st.Host)
				}
			}
		}
	})
}
