//go:build unix

package sockaddr

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// What From makes the kernel takes, and what it gives back AddrPort reads
// as the address bound.
func TestRoundTripThroughKernel(t *testing.T) {
	for _, tc := range []struct {
		family int
		ap     string
	}{
		{unix.AF_INET, "127.0.0.1:0"},
		{unix.AF_INET6, "[::1]:0"},
		{unix.AF_INET6, "[::ffff:127.0.0.1]:0"},
	} {
		fd, err := unix.Socket(tc.family, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.MustParseAddrPort(tc.ap)
		if err := unix.Bind(fd, From(ap)); err != nil {
			unix.Close(fd)
			t.Fatalf("bind %s: %v", ap, err)
		}
		sa, err := unix.Getsockname(fd)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		got := AddrPort(sa)
		if got.Addr() != ap.Addr() || got.Port() == 0 {
			t.Errorf("bound %s, getsockname gives %s; want the same address and a port", ap, got)
		}
	}
	if got := AddrPort(&unix.SockaddrUnix{Name: "/x"}); got.IsValid() {
		t.Errorf("AddrPort(AF_UNIX) = %s, want the zero AddrPort", got)
	}
}
