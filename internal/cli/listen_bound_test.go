package cli

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBoundAddrString: a wildcard bind prints the families it serves
// (0.0.0.0 IPv4, [::] IPv6 only, * both); `listen -4 P` and `listen -6 P`
// both printed *:P.
func TestBoundAddrString(t *testing.T) {
	for _, tc := range []struct {
		ap   string
		dual bool
		want string
	}{
		{"0.0.0.0:8080", false, "0.0.0.0:8080"},
		{"[::]:8080", false, "[::]:8080"},
		{"[::]:8080", true, "*:8080"},
		{"10.0.0.1:8080", false, "10.0.0.1:8080"},
		{"[2001:db8::1]:8080", false, "[2001:db8::1]:8080"},
		{"0.0.0.0:0", false, "0.0.0.0:*"},
	} {
		b := boundAddr{ap: netip.MustParseAddrPort(tc.ap), dual: tc.dual}
		if got := b.String(); got != tc.want {
			t.Errorf("boundAddr{%s, dual %v}: %q, want %q", tc.ap, tc.dual, got, tc.want)
		}
	}
}

// TestListenPlanWantBound: what `listen` binds for each family flag and
// ADDR, which checkTaken compares with a socket taken over.
func TestListenPlanWantBound(t *testing.T) {
	for _, tc := range []struct {
		v4, v6 bool
		addr   string
		want   string
	}{
		{true, false, "", "0.0.0.0:8080"},
		{false, true, "", "[::]:8080"},
		{false, false, "", "*:8080"}, // Go's "tcp" [::] listener takes IPv4 too
		{false, false, "0.0.0.0", "0.0.0.0:8080"},
		{false, true, "::", "[::]:8080"},
		{false, false, "10.9.0.1", "10.9.0.1:8080"},
	} {
		o := &listenOptions{v4: tc.v4, v6: tc.v6}
		p, err := o.plan(tc.addr, "8080")
		if err != nil {
			t.Fatal(err)
		}
		b, ok := p.wantBound()
		if !ok || b.String() != tc.want {
			t.Errorf("listen -4=%v -6=%v %q 8080: wants %v (%v), want %s", tc.v4, tc.v6, tc.addr, b, ok, tc.want)
		}
	}
}

// TestBoundOfListener: boundOf reads a real listener's address.
func TestBoundOfListener(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got, want := boundOf(ln.Addr(), ln).String(), ln.Addr().String(); got != want {
		t.Errorf("boundOf(%s): %q", want, got)
	}
}

// TestCheckTaken: the listener taken over at --handover must be on the
// address and port asked for (any port for PORT 0), else bad input naming
// both. `listen --handover S 10.9.0.1 8301` took over 8300 and served it.
func TestCheckTaken(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	other := strconv.Itoa(port%60000 + 1)
	un, err := net.Listen("unix", filepath.Join(t.TempDir(), "u.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer un.Close()
	for _, tc := range []struct {
		args []string // [ADDR] PORT, with -4/-6 first
		lns  []net.Listener
		want string // "" when it matches
	}{
		{[]string{"127.0.0.1", strconv.Itoa(port)}, []net.Listener{ln}, ""},
		{[]string{"127.0.0.1", "0"}, []net.Listener{ln}, ""},
		{[]string{"localhost", strconv.Itoa(port)}, []net.Listener{ln}, ""},
		{[]string{"127.0.0.1", other}, []net.Listener{ln}, "serves 127.0.0.1:" + strconv.Itoa(port) + " (tcp), not 127.0.0.1:" + other + " as asked"},
		{[]string{"127.0.0.2", strconv.Itoa(port)}, []net.Listener{ln}, "not 127.0.0.2:" + strconv.Itoa(port) + " as asked"},
		{[]string{"-4", strconv.Itoa(port)}, []net.Listener{ln}, "not 0.0.0.0:" + strconv.Itoa(port) + " as asked"},
		{[]string{strconv.Itoa(port)}, []net.Listener{ln}, "not *:" + strconv.Itoa(port) + " as asked"},
		{[]string{"localhost", other}, []net.Listener{ln}, "not localhost:" + other + " as asked"},
		{[]string{"127.0.0.1", strconv.Itoa(port)}, []net.Listener{ln, un}, "serves unix "},
	} {
		o := &listenOptions{keep: true, group: listenGroupOptions{handover: "/run/h.sock"}}
		args := tc.args
		switch args[0] {
		case "-4":
			o.v4, args = true, args[1:]
		case "-6":
			o.v6, args = true, args[1:]
		}
		addr := ""
		if len(args) == 2 {
			addr = args[0]
		}
		p, err := o.plan(addr, args[len(args)-1])
		if err != nil {
			t.Fatal(err)
		}
		err = p.checkTaken(context.Background(), tc.lns)
		var ee *exitError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("listen %v: %v, want a match", tc.args, err)
		case tc.want == "":
		case !errors.As(err, &ee) || ee.code != exitUsage:
			t.Errorf("listen %v: %v, want bad input (exit 2)", tc.args, err)
		case !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "listen: --handover /run/h.sock: the process there "):
			t.Errorf("listen %v: %q, want it to contain %q", tc.args, err, tc.want)
		}
	}
}
