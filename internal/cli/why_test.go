package cli

import (
	"net/netip"
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
