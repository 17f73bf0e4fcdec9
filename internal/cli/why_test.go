package cli

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
)

func TestWhyBadInput(t *testing.T) {
	badInputGolden(t, "bad-input-why.txt", [][]string{
		{"why"},
		{"why", "bind"},
		{"why", "bind", "localhost:80"},
		{"why", "bind", "127.0.0.1"},
		{"why", "bind", "127.0.0.1:70000"},
		{"why", "bind", "::1:80"},
		{"why", "bind", "--kernel-version", "2.6", "127.0.0.1:80"},
		{"why", "connect", "::1"},
		{"why", "bind", "[fe80::1%nosuch0]:80"},
		{"why", "connect", "127.0.0.1:0"},
		{"why", "connect", "0.0.0.0:80"},
		{"why", "connect", "--from", "bad", "127.0.0.1:80"},
		{"why", "connect", "--from", "127.0.0.1:5000", "[::1]:80"},
		{"why", "bind", "--v6only", "127.0.0.1:80"},
		{"why", "bind", "--bind-no-port", "127.0.0.1:80"},
		{"why", "listen", "-u", "127.0.0.1:80"},
		{"why", "bind", "--uid", "-2", "127.0.0.1:80"},
		{"why", "bind", "--dev", "no-such-if0", "127.0.0.1:80"},
		{"why", "bind", "--no-such-flag", "127.0.0.1:80"},
	})
}

func TestNetcatFlags(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		op   string
		in   hostmodel.Edit
		want string
	}{
		{"connect", hostmodel.Edit{Options: []sockopt.ID{sockopt.ReusePort}}, "--reuseport"},
		{"connect", hostmodel.Edit{Local: ap("0.0.0.0:12346")}, "-p 12346"},
		{"connect", hostmodel.Edit{Local: ap("10.0.0.3:12345")}, "-s 10.0.0.3 -p 12345"},
		{"connect", hostmodel.Edit{Local: ap("[fd00::1]:0"), BindNoPort: true}, "-s fd00::1 --bind-no-port"},
		{"connect", hostmodel.Edit{NoBind: true}, "(no -s/-p)"},
		{"connect", hostmodel.Edit{Options: []sockopt.ID{sockopt.ReusePort}, SetUID: true, UID: 65534}, "--reuseport (run as uid 65534)"},
		{"listen", hostmodel.Edit{Local: ap("10.0.0.2:81")}, "10.0.0.2 81"},
		{"listen", hostmodel.Edit{Local: ap("[::1]:80"), Options: []sockopt.ID{sockopt.ReusePort}}, "::1 80 --reuseport"},
	} {
		if got := netcatFlags(tc.op, tc.in); got != tc.want {
			t.Errorf("netcatFlags(%q, %+v) = %q, want %q", tc.op, tc.in, got, tc.want)
		}
	}
}

// TestWhyFlags: `tuple why` spells a connect's new source as --from, a
// bind's or listen's address as the argument, options and uid as flags.
func TestWhyFlags(t *testing.T) {
	ap := netip.MustParseAddrPort
	connect := hostmodel.Plan{Ops: []rules.Op{{Kind: rules.OpConnect, Addr: ap("10.0.0.2:80")}}}
	listen := hostmodel.Plan{Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("10.0.0.2:81")}, {Kind: rules.OpListen}}}
	for _, tc := range []struct {
		p    hostmodel.Plan
		in   hostmodel.Edit
		want string
	}{
		{connect, hostmodel.Edit{Local: ap("10.0.0.3:0"), BindNoPort: true}, "--from 10.0.0.3:0 --bind-no-port"},
		{connect, hostmodel.Edit{NoBind: true}, "(no --from)"},
		{listen, hostmodel.Edit{Local: ap("10.0.0.2:82")}, "10.0.0.2:82"},
		{listen, hostmodel.Edit{Options: []sockopt.ID{sockopt.ReuseAddr}}, "--reuseaddr"},
		{listen, hostmodel.Edit{Options: []sockopt.ID{sockopt.ReusePort}, SetUID: true, UID: 1000}, "--reuseport --uid 1000"},
	} {
		if got := whyFlags(tc.p)(tc.in); got != tc.want {
			t.Errorf("whyFlags(%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestZoneNamesSpell: the model's zone indexes and "device N" read as the
// interfaces' names; other digits after a '%' or "device " stay.
func TestZoneNamesSpell(t *testing.T) {
	z := zoneNames{"2": "eth0", "3": "wlan0"}
	for _, c := range []struct{ in, want string }{
		{"bind [fe80::1%2]:80", "bind [fe80::1%eth0]:80"},
		{"bind address fe80::1%3 instead: [fe80::1%3]:8080", "bind address fe80::1%wlan0 instead: [fe80::1%wlan0]:8080"},
		{"fe80::1 is on device 3, not on device 2, the socket's", "fe80::1 is on device wlan0, not on device eth0, the socket's"},
		{"[fe80::1%7]:80 on device 7", "[fe80::1%7]:80 on device 7"}, // no such interface
		{"[fe80::1%23]:80", "[fe80::1%23]:80"},                       // a longer index is another interface
		{"more than 50% 2 times, 100%", "more than 50% 2 times, 100%"},
		{"%2 at the start, x%2y, devices 2", "%2 at the start, x%2y, devices 2"},
		{"no percent at all", "no percent at all"},
	} {
		if got := z.spell(c.in); got != c.want {
			t.Errorf("spell(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := zoneNames(nil).spell("[fe80::1%2]:80"); got != "[fe80::1%2]:80" {
		t.Errorf("no names: spell changed the text to %q", got)
	}
}

// FuzzZoneNamesSpell: spell never panics, leaves text without a zone or a
// device mark as it is, and only ever writes names where digits were.
func FuzzZoneNamesSpell(f *testing.F) {
	f.Add("bind [fe80::1%2]:80 on device 3")
	f.Add("%")
	f.Add("device ")
	f.Add("a%2%3device 2device 3")
	z := zoneNames{"2": "eth0", "3": "wlan0"}
	f.Fuzz(func(t *testing.T, in string) {
		got := z.spell(in)
		if !strings.Contains(in, "%") && !strings.Contains(in, "device ") && got != in {
			t.Fatalf("spell(%q) = %q: changed text without a zone", in, got)
		}
		if back := strings.NewReplacer("%eth0", "%2", "%wlan0", "%3", "device eth0", "device 2", "device wlan0", "device 3").Replace(got); !strings.Contains(in, "eth0") && !strings.Contains(in, "wlan0") && back != in {
			t.Fatalf("spell(%q) = %q: more than zone indexes changed", in, got)
		}
	})
}
