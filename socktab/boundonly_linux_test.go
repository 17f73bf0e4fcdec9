package socktab

import (
	"context"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// TestBoundOnlyFromDescriptors checks the finder kernels before 6.8 rely
// on against the kernel that lists bound-only sockets itself: in a
// namespace holding bound-only TCP sockets (IPv4, IPv6 v6only, one bound
// to a device, one of another uid) beside a listener, a connected pair, an
// unbound socket, a UDP socket and a bound-only socket of another
// namespace, what the descriptors give must be exactly what inet_diag
// lists, field by field.
func TestBoundOnlyFromDescriptors(t *testing.T) {
	netnstest.RequireRoot(t)
	other := netnstest.New(t)
	if err := other.Do(func() error {
		newSock(t, unix.AF_INET, unix.SOCK_STREAM, "127.0.0.1:7104", nil) // bound-only, elsewhere
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	var dumped []Socket
	var found []Socket
	err := ns.Do(func() error {
		newSock(t, unix.AF_INET, unix.SOCK_STREAM, "10.0.0.1:7100", nil)
		newSock(t, unix.AF_INET6, unix.SOCK_STREAM, "[fd00::1]:7101", setInts([3]int{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1}))
		newSock(t, unix.AF_INET, unix.SOCK_STREAM, "127.0.0.1:7102", func(fd int) error {
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, 1)
		})
		// Another uid's socket: the inode's owner, as sock_i_uid reads it.
		uidSock := newSock(t, unix.AF_INET, unix.SOCK_STREAM, "", nil)
		if err := unix.Fchown(uidSock, 4321, 4321); err != nil {
			return err
		}
		if err := unix.Bind(uidSock, sockaddr(netip.MustParseAddrPort("127.0.0.1:7103"))); err != nil {
			return err
		}
		ln := newSock(t, unix.AF_INET, unix.SOCK_STREAM, "127.0.0.1:7110", nil)
		if err := unix.Listen(ln, 4); err != nil {
			return err
		}
		c := newSock(t, unix.AF_INET, unix.SOCK_STREAM, "", nil)
		connect(t, c, "127.0.0.1:7110")
		accept(t, ln)
		newSock(t, unix.AF_INET, unix.SOCK_STREAM, "", nil)              // unbound
		newSock(t, unix.AF_INET, unix.SOCK_DGRAM, "127.0.0.1:7111", nil) // UDP
		tab, err := Snapshot(context.Background(), Query{TCP: true})
		if err != nil {
			return err
		}
		known := map[uint64]bool{}
		for _, s := range tab.Sockets {
			if s.State == BoundInactive {
				dumped = append(dumped, s)
			} else {
				known[s.Inode] = true
			}
		}
		found, err = boundOnlyFromDescriptors(known)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dumped) != 4 {
		t.Fatalf("inet_diag listed %d bound-only sockets, want 4: %+v", len(dumped), dumped)
	}
	if len(found) != len(dumped) {
		t.Fatalf("descriptors gave %d bound-only sockets, inet_diag %d:\n%+v\n%+v", len(found), len(dumped), found, dumped)
	}
	for _, d := range dumped {
		f := byInode(found, d.Inode)
		if f == nil {
			t.Errorf("inet_diag's %v (inode %d) not found among descriptors", d.Local, d.Inode)
			continue
		}
		type facts struct {
			proto, family, state string
			local, remote        string
			uid                  uint32
			cookie               uint64
			dev                  int
			v6only               Bool
		}
		of := func(s *Socket) facts {
			return facts{s.Proto.String(), s.Family.String(), s.State.String(), s.Local.String(), s.Remote.String(), s.UID, s.Cookie, s.Dev, s.V6Only}
		}
		if got, want := of(f), of(&d); got != want {
			t.Errorf("inode %d:\n descriptors %+v\n inet_diag   %+v", d.Inode, got, want)
		}
	}
}
