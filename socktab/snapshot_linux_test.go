package socktab

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/netns"
	"golang.org/x/sys/unix"
)

// world is a set of sockets of every kind, created inside a namespace.
type world struct {
	listener, client, accepted  int // 127.0.0.1:7001, reuseaddr+reuseport; client has IP_BIND_ADDRESS_NO_PORT
	twPort                      uint16
	bound                       int // bound-only 10.0.0.1:7004, freebind, bound to lo
	udpBound, udpConn           int // 10.0.0.1:7005 unconnected; 127.0.0.1:7006 -> 10.0.0.1:7005
	v6Listener                  int // [fd00::1]:7007
	dualListener, v4c, mappedAc int // [::]:7008 v6only=0; 127.0.0.1 client; accepted [::ffff:127.0.0.1]:7008
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// newSock makes a socket, runs setup on it and binds it to local (when
// valid); it is closed when t ends.
func newSock(t *testing.T, family, typ int, local string, setup func(fd int) error) int {
	t.Helper()
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if setup != nil {
		if err := setup(fd); err != nil {
			t.Fatalf("setup %s: %v", local, err)
		}
	}
	if local != "" {
		if err := unix.Bind(fd, sockaddr(netip.MustParseAddrPort(local))); err != nil {
			t.Fatalf("bind %s: %v", local, err)
		}
	}
	return fd
}

// setInts sets {level, name, value} options.
func setInts(opts ...[3]int) func(fd int) error {
	return func(fd int) error {
		for _, o := range opts {
			if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
				return fmt.Errorf("setsockopt %d/%d: %w", o[0], o[1], err)
			}
		}
		return nil
	}
}

func accept(t *testing.T, fd int) int {
	t.Helper()
	a, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(a) })
	return a
}

func connect(t *testing.T, fd int, to string) {
	t.Helper()
	if err := unix.Connect(fd, sockaddr(netip.MustParseAddrPort(to))); err != nil {
		t.Fatalf("connect %s: %v", to, err)
	}
}

// build creates the sockets of w; call it inside the namespace.
func (w *world) build(t *testing.T) {
	w.listener = newSock(t, unix.AF_INET, unix.SOCK_STREAM, "127.0.0.1:7001",
		setInts([3]int{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1}, [3]int{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1}))
	if err := unix.Listen(w.listener, 16); err != nil {
		t.Fatal(err)
	}
	w.client = newSock(t, unix.AF_INET, unix.SOCK_STREAM, "", setInts([3]int{unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1}))
	connect(t, w.client, "127.0.0.1:7001")
	w.accepted = accept(t, w.listener)

	// TIME_WAIT: the side that closes first keeps it.
	l2 := newSock(t, unix.AF_INET, unix.SOCK_STREAM, "127.0.0.1:7002", nil)
	unix.Listen(l2, 1)
	c2, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.twPort = 7003
	if err := unix.Bind(c2, sockaddr(netip.MustParseAddrPort("127.0.0.1:7003"))); err != nil {
		t.Fatal(err)
	}
	connect(t, c2, "127.0.0.1:7002")
	a2, _, err := unix.Accept4(l2, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(c2)
	time.Sleep(20 * time.Millisecond)
	unix.Close(a2)

	w.bound = newSock(t, unix.AF_INET, unix.SOCK_STREAM, "10.0.0.1:7004", func(fd int) error {
		if err := setInts([3]int{unix.SOL_IP, unix.IP_FREEBIND, 1})(fd); err != nil {
			return err
		}
		return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lo")
	})
	w.udpBound = newSock(t, unix.AF_INET, unix.SOCK_DGRAM, "10.0.0.1:7005", nil)
	w.udpConn = newSock(t, unix.AF_INET, unix.SOCK_DGRAM, "127.0.0.1:7006", nil)
	connect(t, w.udpConn, "10.0.0.1:7005")

	w.v6Listener = newSock(t, unix.AF_INET6, unix.SOCK_STREAM, "[fd00::1]:7007", nil)
	unix.Listen(w.v6Listener, 4)
	w.dualListener = newSock(t, unix.AF_INET6, unix.SOCK_STREAM, "[::]:7008", setInts([3]int{unix.SOL_IPV6, unix.IPV6_V6ONLY, 0}))
	unix.Listen(w.dualListener, 4)
	w.v4c = newSock(t, unix.AF_INET, unix.SOCK_STREAM, "", nil)
	connect(t, w.v4c, "127.0.0.1:7008")
	w.mappedAc = accept(t, w.dualListener)
}

func inode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func find(socks []Socket, pred func(s *Socket) bool) *Socket {
	for i := range socks {
		if pred(&socks[i]) {
			return &socks[i]
		}
	}
	return nil
}

func byInode(socks []Socket, ino uint64) *Socket {
	return find(socks, func(s *Socket) bool { return s.Inode == ino })
}

// ssLine is one socket as `ss -Htuane` prints it.
type ssLine struct {
	proto, state  string
	recvQ, sendQ  uint32
	local, peer   string
	uid           uint32
	inode, cookie uint64
}

func parseSS(t *testing.T, out string) []ssLine {
	t.Helper()
	var lines []ssLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		s := ssLine{proto: f[0], state: f[1], local: f[4], peer: f[5]}
		rq, _ := strconv.ParseUint(f[2], 10, 32)
		sq, _ := strconv.ParseUint(f[3], 10, 32)
		s.recvQ, s.sendQ = uint32(rq), uint32(sq)
		for _, kv := range f[6:] {
			k, v, _ := strings.Cut(kv, ":")
			switch k {
			case "uid":
				u, _ := strconv.ParseUint(v, 10, 32)
				s.uid = uint32(u)
			case "ino":
				s.inode, _ = strconv.ParseUint(v, 10, 64)
			case "sk":
				s.cookie, _ = strconv.ParseUint(v, 16, 64)
			}
		}
		lines = append(lines, s)
	}
	return lines
}

// ssAddr prints an address the way ss does ("*" for a dual-stack wildcard).
func ssAddr(ap netip.AddrPort, v6only Bool) string {
	port := "*"
	if ap.Port() != 0 {
		port = strconv.Itoa(int(ap.Port()))
	}
	a := ap.Addr()
	switch {
	case a.Is6() && a.IsUnspecified() && !(v6only.Known && v6only.Value):
		return "*:" + port
	case a.Is6():
		return "[" + a.String() + "]:" + port
	}
	return a.String() + ":" + port
}

func ssState(s *Socket) string {
	switch {
	case s.State == Established:
		return "ESTAB"
	case s.State == Close && s.Proto == inet.UDP:
		return "UNCONN"
	}
	return strings.ToUpper(s.State.String())
}

func snapshotIn(t *testing.T, ns *netnstest.NS, q Query) *Table {
	t.Helper()
	var tab *Table
	if err := ns.Do(func() error {
		var err error
		tab, err = Snapshot(context.Background(), q)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return tab
}

// worldWithChild builds the world in a new namespace and starts a child
// that inherits the listener, so that socket has two owners.
func worldWithChild(t *testing.T) (*netnstest.NS, *world, *exec.Cmd) {
	t.Helper()
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	w := new(world)
	if err := ns.Do(func() error { w.build(t); return nil }); err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "60")
	child.ExtraFiles = []*os.File{os.NewFile(uintptr(dupFD(t, w.listener)), "listener")}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	child.ExtraFiles[0].Close()
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	return ns, w, child
}

func TestSnapshotMatchesKernel(t *testing.T) {
	ns, w, child := worldWithChild(t)

	// Wait for the TIME_WAIT socket (the FIN exchange is asynchronous).
	var tab *Table
	for i := 0; ; i++ {
		tab = snapshotIn(t, ns, Query{Owners: true, Options: true})
		if find(tab.Sockets, func(s *Socket) bool { return s.State == TimeWait }) != nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tab.Source != "netlink" {
		t.Fatalf("source %q, notes %q", tab.Source, tab.Notes)
	}
	ssOut := ns.Run(t, "ss", "-Htuane")
	ss := parseSS(t, ssOut)

	// Every socket ss reports is in the table with the same fields, and
	// every socket of the table except bound-only ones (which ss 6.1 cannot
	// ask for) is in ss's answer.
	for _, l := range ss {
		s := find(tab.Sockets, func(s *Socket) bool { return s.Cookie == l.cookie })
		if s == nil {
			t.Errorf("ss lists %+v; missing from the table", l)
			continue
		}
		got := ssLine{proto: s.Proto.String(), state: ssState(s), recvQ: s.RecvQ, sendQ: s.SendQ,
			local: ssAddr(s.Local, s.V6Only), peer: ssAddr(s.Remote, s.V6Only), uid: s.UID, inode: s.Inode, cookie: s.Cookie}
		if got != l {
			t.Errorf("socket differs from ss:\n got %+v\nwant %+v", got, l)
		}
	}
	var bound int
	for _, s := range tab.Sockets {
		if s.State == BoundInactive {
			bound++
			continue
		}
		if !slices.ContainsFunc(ss, func(l ssLine) bool { return l.cookie == s.Cookie }) {
			t.Errorf("table has %v %v %v -> %v; ss does not", s.Proto, s.State, s.Local, s.Remote)
		}
	}
	if bound != 1 {
		t.Errorf("%d bound-only sockets, want 1", bound)
	}
	if t.Failed() {
		t.Logf("ss:\n%s", ssOut)
	}

	pid := os.Getpid()
	owner := func(fd int) []Owner { return []Owner{{PID: pid, Comm: readComm("/proc", pid), FD: fd}} }
	yes, no := Bool{Known: true, Value: true}, Bool{Known: true, Value: false}
	checks := []struct {
		name              string
		fd                int
		proto             inet.Proto
		state             State
		local, remote     string
		owners            []Owner
		reuseAddr, reuseP Bool
	}{
		{"listener", w.listener, inet.TCP, Listen, "127.0.0.1:7001", "0.0.0.0:0", nil, yes, yes},
		{"accepted", w.accepted, inet.TCP, Established, "127.0.0.1:7001", "", owner(w.accepted), yes, yes},
		{"client", w.client, inet.TCP, Established, "", "127.0.0.1:7001", owner(w.client), no, no},
		{"bound-only", w.bound, inet.TCP, BoundInactive, "10.0.0.1:7004", "0.0.0.0:0", owner(w.bound), no, no},
		{"udp bound", w.udpBound, inet.UDP, Close, "10.0.0.1:7005", "0.0.0.0:0", owner(w.udpBound), no, no},
		{"udp connected", w.udpConn, inet.UDP, Established, "127.0.0.1:7006", "10.0.0.1:7005", owner(w.udpConn), no, no},
		{"ipv6 listener", w.v6Listener, inet.TCP, Listen, "[fd00::1]:7007", "[::]:0", owner(w.v6Listener), no, no},
		{"dual-stack listener", w.dualListener, inet.TCP, Listen, "[::]:7008", "[::]:0", owner(w.dualListener), no, no},
		{"v4-mapped accepted", w.mappedAc, inet.TCP, Established, "[::ffff:127.0.0.1]:7008", "", owner(w.mappedAc), no, no},
	}
	for _, c := range checks {
		s := byInode(tab.Sockets, inode(t, c.fd))
		if s == nil {
			t.Errorf("%s: inode %d not in the table", c.name, inode(t, c.fd))
			continue
		}
		if s.Proto != c.proto || s.State != c.state {
			t.Errorf("%s: %v %v, want %v %v", c.name, s.Proto, s.State, c.proto, c.state)
		}
		if c.local != "" && s.Local != netip.MustParseAddrPort(c.local) {
			t.Errorf("%s: local %v, want %v", c.name, s.Local, c.local)
		}
		if c.remote != "" && s.Remote != netip.MustParseAddrPort(c.remote) {
			t.Errorf("%s: remote %v, want %v", c.name, s.Remote, c.remote)
		}
		if c.owners != nil && !slices.Equal(s.Owners, c.owners) {
			t.Errorf("%s: owners %+v, want %+v", c.name, s.Owners, c.owners)
		}
		if s.Options.ReuseAddr != c.reuseAddr || s.Options.ReusePort != c.reuseP {
			t.Errorf("%s: reuseaddr %+v reuseport %+v, want %+v %+v", c.name, s.Options.ReuseAddr, s.Options.ReusePort, c.reuseAddr, c.reuseP)
		}
	}

	// The listener is shared with the child: both are owners.
	l := byInode(tab.Sockets, inode(t, w.listener))
	want := []Owner{{PID: pid, Comm: readComm("/proc", pid), FD: w.listener}, {PID: child.Process.Pid, Comm: "sleep", FD: 3}}
	slices.SortFunc(want, func(a, b Owner) int { return a.PID - b.PID })
	if l != nil && !slices.Equal(l.Owners, want) {
		t.Errorf("shared listener owners %+v, want %+v", l.Owners, want)
	}

	// Options read from the live sockets match what was set.
	if s := byInode(tab.Sockets, inode(t, w.bound)); s != nil {
		if s.Options.Freebind != yes || s.Options.Device != (Text{Known: true, Value: "lo"}) || s.Dev != 1 {
			t.Errorf("bound-only: freebind %+v device %+v dev %d, want on, lo, 1", s.Options.Freebind, s.Options.Device, s.Dev)
		}
	}
	if s := byInode(tab.Sockets, inode(t, w.client)); s != nil && s.Options.BindAddressNoPort != yes {
		t.Errorf("client: bind_address_no_port %+v, want on", s.Options.BindAddressNoPort)
	}
	if s := byInode(tab.Sockets, inode(t, w.v6Listener)); s != nil && (s.V6Only != yes || s.Options.V6Only != yes) {
		t.Errorf("ipv6 listener: v6only %+v / %+v, want on (forced by a specific bind)", s.V6Only, s.Options.V6Only)
	}
	if s := byInode(tab.Sockets, inode(t, w.dualListener)); s != nil && (s.V6Only != no || s.Options.V6Only != no) {
		t.Errorf("dual-stack listener: v6only %+v / %+v, want off", s.V6Only, s.Options.V6Only)
	}
	if s := byInode(tab.Sockets, inode(t, w.listener)); s != nil && s.Options.V6Only.Known {
		t.Errorf("IPv4 listener: v6only %+v, want unknown", s.Options.V6Only)
	}

	// TIME_WAIT: time left from the kernel's timer, options unknown with
	// the reason, no owner.
	tw := find(tab.Sockets, func(s *Socket) bool { return s.State == TimeWait })
	if tw == nil {
		t.Fatal("no TIME_WAIT socket")
	}
	if tw.Local.Port() != w.twPort || tw.TimeLeft <= 50*time.Second || tw.TimeLeft > 60*time.Second {
		t.Errorf("TIME_WAIT %v time left %v, want port %d and 50-60 s", tw.Local, tw.TimeLeft, w.twPort)
	}
	if tw.Options.ReuseAddr.Known || !strings.Contains(tw.Options.ReuseAddr.Reason, "TIME_WAIT") || len(tw.Owners) != 0 {
		t.Errorf("TIME_WAIT options %+v owners %+v, want unknown because TIME_WAIT", tw.Options.ReuseAddr, tw.Owners)
	}
}

func dupFD(t *testing.T, fd int) int {
	t.Helper()
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBoundOnlyAbsentFromProcfs shows why netlink matters: a bound-only TCP
// socket is in the netlink table and not in /proc/net/tcp, and the procfs
// fallback reads the rest correctly.
func TestBoundOnlyAbsentFromProcfs(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	var w world
	if err := ns.Do(func() error { w.build(t); return nil }); err != nil {
		t.Fatal(err)
	}
	nl := snapshotIn(t, ns, Query{TCP: true})
	if byInode(nl.Sockets, inode(t, w.bound)) == nil {
		t.Fatal("bound-only socket missing from the netlink table")
	}
	procTCP := ns.Run(t, "cat", "/proc/net/tcp")
	procSocks, err := parseProcNet([]byte(procTCP), inet.TCP, inet.IPv4, binary.NativeEndian, nil)
	if err != nil {
		t.Fatal(err)
	}
	if byInode(procSocks, inode(t, w.bound)) != nil {
		t.Error("bound-only socket listed in /proc/net/tcp (this kernel shows it after all?)")
	}
	// The procfs reader sees the same sockets as netlink minus bound-only
	// ones, with the same fields (procfs has no cookie or device).
	var fromProc []Socket
	if err := ns.Do(func() error {
		var err error
		fromProc, err = readProcNet(Query{TCP: true, ProcRoot: "/proc"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range nl.Sockets {
		if s.Inode == 0 {
			continue // TIME_WAIT sockets: matched by address below
		}
		p := byInode(fromProc, s.Inode)
		switch {
		case s.State == BoundInactive && p != nil:
			t.Errorf("procfs lists bound-only %v", s.Local)
		case s.State != BoundInactive && p == nil:
			t.Errorf("procfs misses %v %v", s.State, s.Local)
		case p != nil && (p.Local != s.Local || p.Remote != s.Remote || p.State != s.State || p.UID != s.UID):
			t.Errorf("procfs %v %v->%v uid %d, netlink %v %v->%v uid %d", p.State, p.Local, p.Remote, p.UID, s.State, s.Local, s.Remote, s.UID)
		}
	}
}

// TestPortFilterInKernel checks the bytecode: the kernel's own answer to a
// filtered dump (no client-side filtering) is exactly the sockets with
// that port.
func TestPortFilterInKernel(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	var w world
	if err := ns.Do(func() error { w.build(t); return nil }); err != nil {
		t.Fatal(err)
	}
	all := snapshotIn(t, ns, Query{})
	for _, q := range []Query{
		{TCP: true, UDP: true, States: AllStates, LocalPort: 7001},
		{TCP: true, UDP: true, States: AllStates, RemotePort: 7001},
		{TCP: true, UDP: true, States: AllStates, LocalPort: 7006, RemotePort: 7005},
		{TCP: true, UDP: true, States: States(Listen), LocalPort: 7008},
		{TCP: true, UDP: true, States: AllStates, LocalPort: 7999},
	} {
		var got []Socket
		if err := ns.Do(func() error {
			var err error
			got, err = dumpNetlink(context.Background(), q)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var want []uint64
		for _, s := range all.Sockets {
			if (q.LocalPort == 0 || s.Local.Port() == q.LocalPort) && (q.RemotePort == 0 || s.Remote.Port() == q.RemotePort) && q.States.Has(s.State) {
				want = append(want, s.Cookie)
			}
		}
		var gotC []uint64
		for _, s := range got {
			gotC = append(gotC, s.Cookie)
		}
		slices.Sort(want)
		slices.Sort(gotC)
		if !slices.Equal(gotC, want) {
			t.Errorf("filter sport %d dport %d states %b: kernel returned %v, want %v", q.LocalPort, q.RemotePort, q.States, gotC, want)
		}
		if q.LocalPort == 7001 && len(want) != 2 {
			t.Errorf("port 7001: %d sockets, want the listener and the accepted one", len(want))
		}
	}
}

// TestOwnersOfLargeFDTable covers the split scan: a process with more
// descriptors than splitAbove has every socket found with the right fd.
func TestOwnersOfLargeFDTable(t *testing.T) {
	ns := netnstest.New(t)
	const n = splitAbove + 200
	fds := make(map[uint64]int, n)
	if err := ns.Do(func() error {
		for i := 0; i < n; i++ {
			fd := newSock(t, unix.AF_INET, unix.SOCK_DGRAM, "127.0.0.1:"+strconv.Itoa(10000+i), nil)
			fds[inode(t, fd)] = fd
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tab := snapshotIn(t, ns, Query{UDP: true, Owners: true})
	if len(tab.Sockets) != n {
		t.Fatalf("%d sockets, want %d", len(tab.Sockets), n)
	}
	pid := os.Getpid()
	for _, s := range tab.Sockets {
		if len(s.Owners) != 1 || s.Owners[0].PID != pid || s.Owners[0].FD != fds[s.Inode] {
			t.Fatalf("%v: owners %+v, want pid %d fd %d", s.Local, s.Owners, pid, fds[s.Inode])
		}
	}
}

// TestOptionsOfGoneProcess: an owner that exited gives unknown options
// with the reason, not a guess.
func TestOptionsOfGoneProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true command:", err)
	}
	s := Socket{Proto: inet.TCP, Family: inet.IPv4, State: Listen, Inode: 1, Owners: []Owner{{PID: cmd.Process.Pid, FD: 3}}}
	readSocketOptions(&s, map[int]pidfdResult{}, "no owner")
	if s.Options.ReusePort.Known || !strings.Contains(s.Options.ReusePort.Reason, "process gone") {
		t.Errorf("reuseport %+v, want unknown: process gone", s.Options.ReusePort)
	}
}

// TestReadProcNetFixture reads a procfs root that is a plain directory.
func TestReadProcNetFixture(t *testing.T) {
	if bigEndian {
		t.Skip("the fixture was written by a little-endian kernel")
	}
	root := t.TempDir()
	if err := os.MkdirAll(root+"/net", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"/net/tcp", []byte(procNetTCP), 0o644); err != nil {
		t.Fatal(err)
	}
	socks, err := readProcNet(Query{TCP: true, UDP: true, ProcRoot: root})
	if err != nil || len(socks) != 2 || socks[0].Local != netip.MustParseAddrPort("127.0.0.1:8080") {
		t.Errorf("got %+v, %v; want the 2 sockets of the fixture (missing tcp6, udp files are no sockets)", socks, err)
	}
}

// TestOneWalkMatchesPerFamily: the TCP dump of both families in one walk
// (TCPDIAG_GETSOCK) lists exactly the sockets, with the same fields, that
// one SOCK_DIAG_BY_FAMILY dump per family lists.
func TestOneWalkMatchesPerFamily(t *testing.T) {
	ns, _, _ := worldWithChild(t)
	q := Query{TCP: true, States: AllStates}
	one := snapshotIn(t, ns, q)
	if noTCPDiagGetSock.Load() {
		t.Fatal("the kernel refused the one-walk dump (TCPDIAG_GETSOCK)")
	}
	noTCPDiagGetSock.Store(true)
	defer noTCPDiagGetSock.Store(false)
	per := snapshotIn(t, ns, q)
	if len(one.Sockets) != len(per.Sockets) || len(one.Sockets) == 0 {
		t.Fatalf("one walk: %d sockets, per family: %d", len(one.Sockets), len(per.Sockets))
	}
	fams := map[inet.Family]int{}
	for i := range per.Sockets {
		p := &per.Sockets[i]
		fams[p.Family]++
		o := find(one.Sockets, func(s *Socket) bool { return s.Cookie == p.Cookie })
		if o == nil {
			t.Errorf("per family lists %v %v %v; the one walk does not", p.Family, p.State, p.Local)
			continue
		}
		if o.Local != p.Local || o.Remote != p.Remote || o.State != p.State || o.Inode != p.Inode || o.V6Only != p.V6Only || o.Options != p.Options {
			t.Errorf("one walk %+v\nper family %+v", *o, *p)
		}
	}
	if fams[inet.IPv4] == 0 || fams[inet.IPv6] == 0 {
		t.Errorf("families %v: want both", fams)
	}
}

// TestSnapshotRows: the rows of a query are the rows of Snapshot's
// sockets, in the same order, for every state, port, family and
// expression filter (the kernel filters both).
func TestSnapshotRows(t *testing.T) {
	ns, _, _ := worldWithChild(t)
	expr, err := ParseFilter([]string{"sport", "=", ":7001", "or", "dst", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []Query{
		{},
		{TCP: true, States: AllStates},
		{TCP: true, States: States(Listen, BoundInactive)},
		{UDP: true},
		{TCP: true, Family: inet.IPv6},
		{TCP: true, UDP: true, LocalPort: 7001},
		{TCP: true, Filter: expr},
	} {
		// Twice: the table must not change between the two reads (the
		// world's TIME_WAIT socket may expire; retry once).
		for try := 0; ; try++ {
			want := snapshotIn(t, ns, q)
			var got *RowTable
			if err := ns.Do(func() error {
				var err error
				got, err = SnapshotRows(context.Background(), q)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			rows := make([]Row, len(want.Sockets))
			for i := range want.Sockets {
				rows[i] = RowOf(&want.Sockets[i])
			}
			if slices.Equal(rows, got.Rows) && got.Source == want.Source {
				if len(rows) == 0 && q.LocalPort != 0 {
					t.Errorf("%+v: no socket: the world has some on 7001", q)
				}
				break
			}
			if try == 2 {
				t.Errorf("%+v: rows (%s) %+v\nwant (%s) %+v", q, got.Source, got.Rows, want.Source, rows)
				break
			}
		}
	}
	if _, err := SnapshotRows(context.Background(), Query{Namespaces: []netns.Namespace{{Name: "x"}}}); err == nil {
		t.Error("rows of namespaces: no error")
	}
}

// TestDumpOverSeveralBatches: a dump longer than several receive batches
// (recvBatch, two datagrams each) lists every socket once, through both
// decoders.
func TestDumpOverSeveralBatches(t *testing.T) {
	ns := netnstest.New(t)
	const n = 6000 // about 600 KiB of inet_diag messages
	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	var got []Socket
	var rows *RowTable
	err := ns.Do(func() error {
		for i := range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 30000 + i}); err != nil {
				return err
			}
			if err := unix.Listen(fd, 1); err != nil {
				return err
			}
		}
		var err error
		if got, err = dumpNetlink(context.Background(), Query{TCP: true, States: States(Listen)}); err != nil {
			return err
		}
		rows, err = SnapshotRows(context.Background(), Query{TCP: true, States: States(Listen)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n*100 < 2*recvBatch {
		t.Fatalf("%d listeners do not span several %d-byte batches", n, recvBatch)
	}
	seen := map[uint16]bool{}
	for _, s := range got {
		seen[s.Local.Port()] = true
	}
	if len(got) != n || len(seen) != n || len(rows.Rows) != n {
		t.Errorf("dump of %d listeners: %d sockets (%d ports), %d rows", n, len(got), len(seen), len(rows.Rows))
	}
}
