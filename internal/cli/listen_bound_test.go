package cli

import (
	"net"
	"net/netip"
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
