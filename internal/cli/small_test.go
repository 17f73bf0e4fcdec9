package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/ports"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// TestFlagValueErrors: a value a flag's parser refuses is named in one
// line, with what the flag wants, and no Go parser names leak.
func TestFlagValueErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ls", "--sport", "80000"}, `tuple: ls: --sport "80000": out of range; want a number from 0 to 65535`},
		{[]string{"why", "bind", "80", "--uid", "abc"}, `tuple: why bind: --uid "abc": not a number; want a whole number`},
		{[]string{"ls", "--pid", "x"}, `tuple: ls: --pid "x": not a number; want a whole number`},
	} {
		code, _, errOut := run(t, "", tc.args...)
		if code != 2 || strings.TrimSpace(errOut) != tc.want || strings.Contains(errOut, "strconv") {
			t.Errorf("tuple %v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestVersionFlagAndBuildVersion(t *testing.T) {
	code, out, _ := run(t, "", "--version")
	_, want, _ := run(t, "", "version")
	if code != 0 || out != want || !strings.HasPrefix(out, "tuple ") || strings.Contains(out, "(devel)") {
		t.Errorf("tuple --version: exit %d, %q; tuple version: %q", code, out, want)
	}
	for _, tc := range []struct {
		info debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3, go1.26"},
		{debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-11-30T12:00:00Z"}, {Key: "vcs.modified", Value: "true"}}},
			"revision 0123456789ab (2026-11-30T12:00:00Z)-dirty, go1.26"},
		{debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}}, "unreleased (no VCS revision: built with -buildvcs=false), go1.26"},
	} {
		if got := versionOf(&tc.info); got != tc.want {
			t.Errorf("versionOf: %q, want %q", got, tc.want)
		}
	}
}

// TestWhyBindPort: `why bind 80` reads a port as who does (the IPv4
// wildcard).
func TestWhyBindPort(t *testing.T) {
	p, err := whyPlan(&whyOptions{uid: -1}, rules.OpBind, "8080")
	if err != nil || p.Ops[0].Addr != netip.MustParseAddrPort("0.0.0.0:8080") {
		t.Errorf("why bind 8080: %+v, %v", p.Ops, err)
	}
	if _, err := whyPlan(&whyOptions{uid: -1}, rules.OpBind, "80000"); err == nil {
		t.Errorf("why bind 80000 accepted")
	}
}

// TestLoadPolicyFlags: --policy is checked first and named; shared needs
// --from.
func TestLoadPolicyFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "--policy", "foo"}, "tuple: load: --policy: "},
		{[]string{"load", "--policy", "shared", "--to", "127.0.0.1:80", "--conns", "1"}, "tuple: load: --policy shared binds every connection to --from ADDR"},
	} {
		code, _, errOut := run(t, "", tc.args...)
		if code != 2 || !strings.HasPrefix(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("tuple %v: exit %d, %q; want 2 and %q...", tc.args, code, errOut, tc.want)
		}
	}
}

// TestUnresolvableExits2: a name that does not resolve is bad input.
func TestUnresolvableExits2(t *testing.T) {
	dns := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nosuch.invalid", IsNotFound: true}}
	err := reportNetFailure(nil, newNetFailure("connect", "tcp", netip.AddrPort{}, netip.AddrPort{}, dns))
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitUsage {
		t.Errorf("unresolvable name: %v, want exit 2", err)
	}
	temp := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: "x.example", IsTemporary: true}}
	if err := reportNetFailure(nil, newNetFailure("connect", "tcp", netip.AddrPort{}, netip.AddrPort{}, temp)); !errors.As(err, &ee) || ee.code != exitFailure {
		t.Errorf("a failing resolver: %v, want exit 1", err)
	}
}

// TestLsOptionsColumnPadded: the Process column starts at one offset
// whatever the options' width.
func TestLsOptionsColumnPadded(t *testing.T) {
	known := func(v bool) socktab.Bool { return socktab.Bool{Known: true, Value: v} }
	socks := []socktab.Socket{
		{Proto: inet.TCP, State: socktab.Listen, Local: netip.MustParseAddrPort("127.0.0.1:80"), Options: socktab.Options{ReuseAddr: known(true), ReusePort: known(true)},
			Owners: []socktab.Owner{{PID: 1, Comm: "a", FD: 3}}},
		{Proto: inet.TCP, State: socktab.Listen, Local: netip.MustParseAddrPort("127.0.0.1:81"), Options: socktab.Options{ReuseAddr: known(false), ReusePort: known(false)},
			Owners: []socktab.Owner{{PID: 2, Comm: "b", FD: 4}}},
	}
	var b strings.Builder
	w := bufio.NewWriter(&b)
	if err := writeTable(w, socks, columns{procs: true, options: true}); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	golden(t, "ls-options.txt", b.String())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	col := strings.Index(lines[0], "Process")
	for _, l := range lines[1:] {
		if i := strings.Index(l, "a(pid=1"); i >= 0 && i != col {
			t.Errorf("process at %d, header at %d:\n%s", i, col, b.String())
		}
		if i := strings.Index(l, "b(pid=2"); i >= 0 && i != col {
			t.Errorf("process at %d, header at %d:\n%s", i, col, b.String())
		}
	}
}

// TestPortsJSONKeys: ranges under lower-case descriptive keys.
func TestPortsJSONKeys(t *testing.T) {
	b, err := json.Marshal(portsJSON(ports.Report{Range: inet.PortRange{Lo: 32768, Hi: 60999}, Reserved: []inet.PortRange{{Lo: 40000, Hi: 40000}}}))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ports-json-keys.json", string(b))
}

// TestPortsSaysConnectPicked: the text names the ports connect() picked.
func TestPortsSaysConnectPicked(t *testing.T) {
	var b strings.Builder
	if err := writePortsReport(&b, ports.Report{Range: inet.PortRange{Lo: 1, Hi: 10}, Pool: 10, InUse: 5, BindOwned: 1, UnknownOrigin: 1}, 5); err != nil {
		t.Fatal(err)
	}
	golden(t, "ports-connect-picked.txt", b.String())
}

// TestCompletionValues: lab groups, states and policies are offered.
func TestCompletionValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "lab", ""}, "seed"},
		{[]string{"__complete", "ls", "--state", ""}, "time-wait"},
		{[]string{"__complete", "load", "--policy", ""}, "shared"},
	} {
		code, out, _ := run(t, "", tc.args...)
		if code != 0 || !slices.Contains(strings.Split(out, "\n"), tc.want) {
			t.Errorf("tuple %v: exit %d, %q does not offer %q", tc.args, code, out, tc.want)
		}
	}
}

// TestLsFilterFlags: -4 and -6 exclude each other; a bad expression is one
// line naming it; --pid and --sport mean every state.
func TestLsFilterFlags(t *testing.T) {
	badInputGolden(t, "bad-input-ls-family.txt", [][]string{{"ls", "-4", "-6"}})
	if code, _, errOut := run(t, "", "ls", "sport", "=", ":http"); code != 2 || !strings.HasPrefix(errOut, "tuple: ls: filter expression: ") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("ls sport = :http: exit %d, %q", code, errOut)
	}
	for _, o := range []lsOptions{{pid: 1, uid: -1}, {sport: 80, uid: -1}, {summary: true, uid: -1}} {
		q, err := o.query()
		if err != nil || q.States != socktab.AllStates {
			t.Errorf("%+v: states %b, %v; want every state", o, q.States, err)
		}
	}
	o := lsOptions{sport: 80, listening: true, uid: -1}
	if q, _ := o.query(); q.States == socktab.AllStates {
		t.Errorf("--sport with -l: every state")
	}
}
