package sockaddr

import (
	"net"
	"net/netip"
	"testing"
)

func TestOfNet(t *testing.T) {
	var nilTCP *net.TCPAddr
	for _, c := range []struct {
		in   net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 80}, "10.0.0.1:80"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 53}, "10.0.0.1:53"},
		{&net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 53, Zone: "eth0"}, "[fe80::1%eth0]:53"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 8080}, "[::1]:8080"},
		{&net.UnixAddr{Name: "/run/x", Net: "unix"}, "invalid AddrPort"},
		{nilTCP, "invalid AddrPort"},
		{nil, "invalid AddrPort"},
	} {
		if got := OfNet(c.in).String(); got != c.want {
			t.Errorf("OfNet(%v) = %s, want %s", c.in, got, c.want)
		}
	}
	if OfNet(nil) != (netip.AddrPort{}) {
		t.Error("OfNet(nil) is not the zero AddrPort")
	}
}
