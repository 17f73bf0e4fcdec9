package socktab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/netns"
)

// TestBoundOnlyFromDescriptors checks the finder kernels before 6.8 rely
// on against the kernel that lists bound-only sockets itself: in a
// namespace holding bound-only TCP sockets (IPv4, IPv6 v6only, one bound
// to a device, one of another uid, one bound to a port whose connect()
// was refused) beside a listener, a connected pair, an unbound socket, a
// UDP socket, a socket whose connect() picked a port and was refused (the
// kernel gave the port back; getsockname still shows it) and a bound-only
// socket of another namespace, what the descriptors give must be exactly
// what inet_diag lists, field by field. Asked for both namespaces at once,
// the same pass also gives the other namespace's socket, tagged with it.
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
	here, there := nsInode(t, ns), nsInode(t, other)
	var dumped []Socket
	var found, both []Socket
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
		for _, s := range tab.Sockets {
			if s.State == BoundInactive {
				dumped = append(dumped, s)
			}
		}
		var unread int
		if found, unread, err = boundOnlyFromDescriptors(map[uint64]bool{here: true}); err != nil {
			return err
		}
		if unread != 0 {
			t.Errorf("%d bound-only sockets not readable", unread)
		}
		both, _, err = boundOnlyFromDescriptors(map[uint64]bool{here: true, there: true})
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
	for _, f := range found {
		if f.NetNS != here {
			t.Errorf("%v tagged with namespace %d, want %d", f.Local, f.NetNS, here)
		}
	}
	if len(both) != len(found)+1 {
		t.Errorf("asked for both namespaces, descriptors gave %d bound-only sockets, want %d", len(both), len(found)+1)
	}
	for _, b := range both {
		if b.NetNS == there && b.Local.String() != "127.0.0.1:7104" {
			t.Errorf("the other namespace's socket is %v, want 127.0.0.1:7104", b.Local)
		}
		if b.NetNS != here && b.NetNS != there {
			t.Errorf("%v tagged with namespace %d, neither of the two asked for", b.Local, b.NetNS)
		}
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

// Bound-only sockets of several namespaces come back in one table across
// them, each once and tagged with its namespace, on every kernel: listed by
// inet_diag from 6.8, found among processes' descriptors before it. The
// same address and port in both namespaces are two sockets; a namespace
// not asked for, and a socket that has given its port back, are not there.
func TestBoundOnlyAcrossNamespaces(t *testing.T) {
	netnstest.RequireRoot(t)
	bind := func(ns *netnstest.NS, addrs ...string) {
		t.Helper()
		if err := ns.Do(func() error {
			for _, a := range addrs {
				newSock(t, unix.AF_INET, unix.SOCK_STREAM, a, nil)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	a, b, unasked := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	bind(a, "127.0.0.1:7120", "127.0.0.1:7121")
	if err := a.Do(func() error {
		// connect() picked a port, was refused and gave the port back.
		picked := newSock(t, unix.AF_INET, unix.SOCK_STREAM, "", nil)
		if err := unix.Connect(picked, sockaddr(netip.MustParseAddrPort("127.0.0.1:7199"))); err != unix.ECONNREFUSED {
			return fmt.Errorf("connect to a closed port: %v, want ECONNREFUSED", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bind(b, "127.0.0.1:7120")
	bind(unasked, "127.0.0.1:7122")
	var spaces []netns.Namespace
	for _, ns := range []*netnstest.NS{a, b} {
		spaces = append(spaces, netns.Namespace{Inode: nsInode(t, ns), Path: netns.RunDir + "/" + ns.Name})
	}
	tab, err := Snapshot(context.Background(), Query{TCP: true, States: States(BoundInactive), Namespaces: spaces})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tab.Notes {
		t.Errorf("note: %s", n)
	}
	got := map[string]int{}
	for _, s := range tab.Sockets {
		got[fmt.Sprintf("%d %v", s.NetNS, s.Local)]++
	}
	want := map[string]int{
		fmt.Sprintf("%d 127.0.0.1:7120", spaces[0].Inode): 1,
		fmt.Sprintf("%d 127.0.0.1:7121", spaces[0].Inode): 1,
		fmt.Sprintf("%d 127.0.0.1:7120", spaces[1].Inode): 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("bound-only sockets (namespace address): %v, want %v (source %s)", got, want, tab.Source)
	}

	// Each namespace's own table, the two sharing one search (as an
	// exporter scrape's do): each gets its own sockets, untagged.
	search := &BoundOnlySearch{}
	for i, ns := range []*netnstest.NS{a, b} {
		var own []string
		if err := ns.Do(func() error {
			tab, err := Snapshot(context.Background(), Query{TCP: true, States: States(BoundInactive), BoundOnly: search})
			if err != nil {
				return err
			}
			for _, n := range tab.Notes {
				t.Errorf("note: %s", n)
			}
			for _, s := range tab.Sockets {
				own = append(own, fmt.Sprintf("%d %v", s.NetNS, s.Local))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(own)
		if want := [][]string{{"0 127.0.0.1:7120", "0 127.0.0.1:7121"}, {"0 127.0.0.1:7120"}}[i]; !slices.Equal(own, want) {
			t.Errorf("namespace %s's own table: %v, want %v", ns.Name, own, want)
		}
	}
	if needsBoundOnlyFinder(Query{TCP: true, States: States(BoundInactive)}) {
		// The tables took their sockets from the search's pass, made
		// for every namespace: the one no table asked for is in it too
		// (a table's own pass keeps only its namespace's).
		if !slices.ContainsFunc(search.s.found, func(s Socket) bool { return s.NetNS == nsInode(t, unasked) }) {
			t.Errorf("the shared search holds no socket of the namespace no table asked for: %+v", search.s.found)
		}
	}
}

// nsInode is the inode of ns's network namespace.
func nsInode(t *testing.T, ns *netnstest.NS) uint64 {
	t.Helper()
	got, err := netns.Resolve(netns.Spec{Name: ns.Name}, "/proc", netns.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	return got[0].Inode
}
