package socktab

import (
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/kversion"
	sa "github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/sockfacts"
)

// dumpsBoundOnly reports whether this kernel's inet_diag lists bound-only
// TCP sockets (TCP_BOUND_INACTIVE, Linux 6.8).
func dumpsBoundOnly() bool { return kversion.AtLeast(6, 8) }

// boundOnlyFromDescriptors finds the bound-only TCP sockets of the network
// namespaces whose inodes are in spaces (nil: of every namespace) where
// inet_diag cannot list them (before 6.8): the BPF task_file iterator picks
// the descriptors of TCP sockets in state CLOSE that still hold a port
// (sockfacts.BoundFiles, the test inet_diag applies), and each one is
// duplicated (pidfd_getfd) to read it as inet_diag would report it and to
// learn its namespace (SIOCGSKNS). One pass serves any number of
// namespaces, since the iterator walks every process's descriptors
// wherever their sockets live; each socket found carries its namespace's
// inode in NetNS. It needs root; a socket no process holds (in flight over
// SCM_RIGHTS) is not found. unread counts the sockets that could not be
// duplicated for another reason than their process or descriptor having
// gone meanwhile (a ptrace policy, no descriptor free).
func boundOnlyFromDescriptors(spaces map[uint64]bool) (found []Socket, unread int, err error) {
	files, err := sockfacts.BoundFiles()
	if err != nil {
		return nil, 0, err
	}
	// The iterator lists a process's descriptors together: one pidfd is
	// open at a time.
	pid, pidfd := int32(-1), -1
	defer func() {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
	}()
	seen := map[uint64]bool{}
	for _, f := range files {
		if seen[f.Inode] {
			continue
		}
		if f.PID != pid {
			if pidfd >= 0 {
				unix.Close(pidfd)
			}
			pid = f.PID
			if pidfd, err = unix.PidfdOpen(int(pid), 0); err != nil {
				pidfd = -1
				if err != unix.ESRCH {
					unread++
				}
			}
		}
		if pidfd < 0 {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, int(f.FD), 0)
		if err != nil {
			if err != unix.EBADF && err != unix.ESRCH {
				unread++
			}
			continue
		}
		s, ok := boundOnly(fd, f.Inode, spaces)
		unix.Close(fd)
		seen[f.Inode] = true // one descriptor of a socket answers for all
		if ok {
			found = append(found, s)
		}
	}
	return found, unread, nil
}

// boundOnly reads the socket at fd (a duplicate) as inet_diag reports a
// bound-only TCP socket, if it is one of a namespace whose inode is in
// spaces (nil: of any).
func boundOnly(fd int, inode uint64, spaces map[uint64]bool) (Socket, bool) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Ino != inode {
		return Socket{}, false // the descriptor changed since the listing
	}
	domain, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	proto, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err1 != nil || err2 != nil || (domain != unix.AF_INET && domain != unix.AF_INET6) || proto != unix.IPPROTO_TCP {
		return Socket{}, false
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != 7 { // TCP_CLOSE: neither listening nor connected
		return Socket{}, false
	}
	name, err := unix.Getsockname(fd)
	if err != nil {
		return Socket{}, false
	}
	local := sa.AddrPort(name)
	if local.Port() == 0 {
		return Socket{}, false // not bound to a port: it holds none
	}
	// SIOCGSKNS opens the socket's network namespace: the socket is kept
	// only if that is one of spaces.
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return Socket{}, false
	}
	var nst unix.Stat_t
	err = unix.Fstat(nsfd, &nst)
	unix.Close(nsfd)
	if err != nil || (spaces != nil && !spaces[nst.Ino]) {
		return Socket{}, false
	}
	s := Socket{Proto: inet.TCP, Family: inet.IPv4, State: BoundInactive, Local: local, UID: st.Uid, Inode: inode, NetNS: nst.Ino,
		Remote: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), V6Only: Bool{Reason: reasonIPv4}}
	if domain == unix.AF_INET6 {
		s.Family, s.Remote = inet.IPv6, netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		s.V6Only = Bool{Reason: "not readable"}
		if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err == nil {
			s.V6Only = Bool{Known: true, Value: v != 0}
		}
	}
	if c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err == nil {
		s.Cookie = c
	}
	if dev, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX); err == nil {
		s.Dev = dev
	}
	return s, true
}

// needsBoundOnlyFinder reports whether q asks for bound-only TCP sockets
// the kernel's dump cannot list.
func needsBoundOnlyFinder(q Query) bool {
	return q.TCP && q.States.Has(BoundInactive) && !dumpsBoundOnly()
}

// boundOnlySearch is BoundOnlySearch's pass, made once.
type boundOnlySearch struct {
	once   sync.Once
	found  []Socket // of every namespace, NetNS set; never changed once made
	unread int
	err    error
}

// find makes the pass at the first call; every call gets its results.
func (b *boundOnlySearch) find() ([]Socket, int, error) {
	b.once.Do(func() { b.found, b.unread, b.err = boundOnlyFromDescriptors(nil) })
	return b.found, b.unread, b.err
}

// addBoundOnly adds to socks the bound-only TCP sockets q asks for that
// the dump could not list, found among processes' descriptors (by
// q.BoundOnly's pass, or by one of its own), or returns the note that says
// they are missing. They are the sockets of the namespaces whose inodes
// are in spaces; a table of one namespace (spaces nil, the calling
// thread's) leaves their NetNS 0, as its dump does.
func addBoundOnly(socks []Socket, q Query, spaces map[uint64]bool) ([]Socket, string) {
	if !needsBoundOnlyFinder(q) {
		return socks, ""
	}
	tagged := spaces != nil
	if !tagged {
		var here unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &here); err != nil {
			return socks, missingNote(os.NewSyscallError("stat /proc/thread-self/ns/net", err))
		}
		spaces = map[uint64]bool{here.Ino: true}
	}
	var found []Socket
	var unread int
	var err error
	if q.BoundOnly != nil {
		found, unread, err = q.BoundOnly.s.find()
	} else {
		found, unread, err = boundOnlyFromDescriptors(spaces)
	}
	if err != nil {
		return socks, missingNote(err)
	}
	known := make(map[uint64]bool, len(socks))
	for i := range socks {
		known[socks[i].Inode] = true
	}
	for _, s := range found { // a copy: a shared pass's sockets stay as they are
		if !spaces[s.NetNS] || known[s.Inode] {
			continue
		}
		if !tagged {
			s.NetNS = 0
		}
		socks = append(socks, s)
	}
	if unread > 0 {
		// Unread, they are of no known namespace: the count is the host's.
		return socks, fmt.Sprintf("%s: %d found among processes' descriptors, of this namespace or another, "+
			"could not be read (this kernel's inet_diag does not report them: 6.8+)", NoteBoundOnlyMissing, unread)
	}
	return socks, ""
}

// missingNote is the table's note when bound-only sockets could not be
// looked for at all.
func missingNote(err error) string {
	return fmt.Sprintf("%s: this kernel's inet_diag does not report them (6.8+) and they could not be "+
		"looked for among processes' descriptors (%v), so a port held only by one looks free", NoteBoundOnlyMissing, err)
}
