package dial

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"unicode/utf8"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockopt"
)

func TestParsePolicy(t *testing.T) {
	good := map[string]Policy{
		"kernel":            Kernel,
		"bind":              Bind,
		"shared":            Shared,
		"fixed:5000":        Fixed(5000),
		"fixed:65535":       Fixed(65535),
		"range:40000-40009": Range(40000, 40009),
		"range:7-7":         Range(7, 7),
	}
	for in, want := range good {
		got, err := ParsePolicy(in)
		if err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("%q.String() = %q", in, got.String())
		}
	}
	for _, in := range []string{"", "Kernel", "kernel:1", "shared:", "fixed", "fixed:", "fixed:0",
		"fixed:65536", "fixed:-1", "fixed:+5", "range:", "range:5", "range:9-8", "range:0-5",
		"range:1-70000", "range:1-2-3", "bogus", "fixed:5000 ", string(make([]byte, 100))} {
		if p, err := ParsePolicy(in); err == nil {
			t.Errorf("ParsePolicy(%q) = %v, want an error", in, p)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"kernel", "bind", "shared", "fixed:1", "range:1-2", "range:2-1", "fixed:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			return
		}
		if verr := p.Validate(); verr != nil {
			t.Fatalf("ParsePolicy(%q) = %v, which does not validate: %v", s, p, verr)
		}
		if !utf8.ValidString(s) {
			return
		}
		back, err := ParsePolicy(p.String())
		if err != nil || back != p {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, p, p.String(), back, err)
		}
	})
}

func TestDialRejectsBadSetups(t *testing.T) {
	for _, tc := range []struct {
		name    string
		d       Dialer
		network string
	}{
		{"kernel with source", Dialer{Source: netip.MustParseAddr("127.0.0.1"), Policy: Kernel}, "tcp"},
		{"fixed port 0", Dialer{Policy: Fixed(0)}, "tcp"},
		{"reversed range", Dialer{Policy: Range(9, 8)}, "tcp"},
		{"unix network", Dialer{}, "unix"},
	} {
		_, err := tc.d.Dial(tc.network, "127.0.0.1:1")
		var op *net.OpError
		if err == nil || !errors.As(err, &op) {
			t.Errorf("%s: err %v, want a *net.OpError", tc.name, err)
		}
	}
}

func TestPlanOptions(t *testing.T) {
	for _, tc := range []struct {
		p         Policy
		hasSource bool
		want      plan
	}{
		{Kernel, false, plan{}},
		{Bind, true, plan{bind: true}},
		{Shared, true, plan{bind: true, opts: sockopt.Options{BindAddressNoPort: true}}},
		{Fixed(80), true, plan{bind: true, port: 80, opts: sockopt.Options{ReuseAddr: true, ReusePort: true}}},
		{Range(5, 6), true, plan{bind: true, opts: sockopt.Options{BindAddressNoPort: true, PortRange: inet.PortRange{Lo: 5, Hi: 6}}}},
		{Range(5, 6), false, plan{opts: sockopt.Options{PortRange: inet.PortRange{Lo: 5, Hi: 6}}}},
	} {
		if got := tc.p.plan(tc.hasSource); got != tc.want {
			t.Errorf("%v (source %v): plan %+v, want %+v", tc.p, tc.hasSource, got, tc.want)
		}
	}
	if got := (Policy{}).resolve(true); got != Shared {
		t.Errorf("default with a source resolves to %v, want shared", got)
	}
	if got := (Policy{}).resolve(false); got != Kernel {
		t.Errorf("default without a source resolves to %v, want kernel", got)
	}
}

// Where the platform lacks IP_BIND_ADDRESS_NO_PORT or IP_LOCAL_PORT_RANGE
// (everything but Linux), the policies that need them fail clearly instead
// of falling back to a plain bind.
func TestPoliciesWithoutTheirOptionsSayNotSupported(t *testing.T) {
	if sockopt.Supported(sockopt.BindAddressNoPort) && sockopt.Supported(sockopt.LocalPortRange) {
		t.Skip("this platform has the options Shared and Range need (checked on other GOOS)")
	}
	src := netip.MustParseAddr("127.0.0.1")
	for _, p := range []Policy{Shared, Range(40000, 40010)} {
		_, err := (&Dialer{Source: src, Policy: p}).Dial("tcp", "127.0.0.1:1")
		if !errors.Is(err, inet.ErrUnsupported) {
			t.Errorf("policy %s: %v, want an error wrapping inet.ErrUnsupported", p, err)
		}
	}
}
