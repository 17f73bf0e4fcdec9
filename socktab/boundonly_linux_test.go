package socktab

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// TestBoundOnlyFromDescriptors checks the finder kernels before 6.8 rely
// on against the kernel that lists bound-only sockets itself: in a
// namespace holding bound-only TCP sockets (IPv4, IPv6 v6only, one bound
// to a device, one of another uid, one bound to a port whose connect()
// was refused) beside a listener, a connected pair, an unbound socket, a
// UDP socket, a socket whose connect() picked a port and was refused (the
// kernel gave the port back; getsockname still shows it) and a bound-only
// socket of another namespace, what the descriptors give must be exactly
// what inet_diag lists, field by field.
func TestBoundOnlyFromDescriptors(t *testing.T) {
	netnstest.RequireRoot(t)
	if !dumpsBoundOnly() {
		t.Skip("the kernel does not list bound-only sockets itself (6.8+): nothing to compare with")
	}
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
		refused := sockaddr(netip.MustParseAddrPort("127.0.0.1:7199"))   // nobody listens
		picked := newSock(t, unix.AF_INET, unix.SOCK_STREAM, "", nil)
		if err := unix.Connect(picked, refused); err != unix.ECONNREFUSED {
			return fmt.Errorf("connect to a closed port: %v, want ECONNREFUSED", err)
		}
		if sa, err := unix.Getsockname(picked); err != nil || sa.(*unix.SockaddrInet4).Port == 0 {
			t.Logf("a refused connect() leaves getsockname at %v (%v)", sa, err)
		}
		kept := newSock(t, unix.AF_INET, unix.SOCK_STREAM, "127.0.0.1:7105", nil)
		if err := unix.Connect(kept, refused); err != unix.ECONNREFUSED {
			return fmt.Errorf("connect to a closed port: %v, want ECONNREFUSED", err)
		}
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
		var unread int
		found, unread, err = boundOnlyFromDescriptors(known)
		if unread != 0 {
			t.Errorf("%d bound-only sockets not readable", unread)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dumped) != 5 {
		t.Fatalf("inet_diag listed %d bound-only sockets, want 5: %+v", len(dumped), dumped)
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
		want := of(&d)
		if d.Remote.Port() == 0 && !d.Remote.Addr().IsUnspecified() {
			// A refused connect() leaves the peer's address in the
			// socket: inet_diag shows it, getpeername does not.
			want.remote = f.Remote.String()
		}
		if got := of(f); got != want {
			t.Errorf("inode %d:\n descriptors %+v\n inet_diag   %+v", d.Inode, got, want)
		}
	}
}
