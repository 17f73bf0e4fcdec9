package sockfacts

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/guesttest"
	"github.com/tuple-net/tuple/internal/kversion"
	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/internal/testenv"
	"github.com/tuple-net/tuple/kernelvm"
)

// TestMain lets the test binary be a kernelvm guest's program
// (TestFactsInGuests boots it under other kernels).
func TestMain(m *testing.M) {
	kernelvm.Guest()
	if os.Getenv(guesttest.InGuest) == "1" {
		// A kernel the iterator does not load on has nothing to test:
		// say so, for TestFactsInGuests to check the kernel is one
		// the docs name as unsupported.
		if _, err := Read(inet.TCP); errors.Is(err, inet.ErrUnsupported) {
			fmt.Printf("sockfacts unsupported here: %v\n", err)
			os.Exit(0)
		}
	}
	leakcheck.Main(m)
}

// requireBTF skips t when the kernel has no BTF, which the iterator needs.
func requireBTF(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testenv.Missing(t, "needs kernel BTF (/sys/kernel/btf/vmlinux): "+err.Error())
	}
}

// knowsPortOrigin reports whether this kernel records which ports
// connect() picked (Linux 6.17+); older kernels report it unknown.
func knowsPortOrigin(t *testing.T) bool {
	t.Helper()
	l, err := kernelLayout()
	if err != nil {
		t.Fatal(err)
	}
	return !l.twConnectBind.absent
}

// sock creates a socket with options, binds it when addr is set.
func sock(t *testing.T, family, typ int, opts map[int]int, addr unix.Sockaddr) int {
	t.Helper()
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	for opt, v := range opts {
		level := unix.SOL_SOCKET
		if opt == unix.IPV6_V6ONLY {
			level = unix.IPPROTO_IPV6
		}
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			t.Fatal(err)
		}
	}
	if addr != nil {
		if err := unix.Bind(fd, addr); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

func TestReadAgainstKernel(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	lo := [4]byte{127, 0, 0, 1}
	var got []Sock
	err := ns.Do(func() error {
		// A listener with both reuse flags, a bound-only v6 socket with
		// v6only, a client bound to a fixed port, a client whose port
		// connect() picked, and the TIME_WAIT entry of an active close
		// (of substate FIN_WAIT2: the peer never closes).
		ln := sock(t, unix.AF_INET, unix.SOCK_STREAM, map[int]int{unix.SO_REUSEADDR: 1, unix.SO_REUSEPORT: 1}, &unix.SockaddrInet4{Addr: lo, Port: 7000})
		if err := unix.Listen(ln, 16); err != nil {
			return err
		}
		sock(t, unix.AF_INET6, unix.SOCK_STREAM, map[int]int{unix.IPV6_V6ONLY: 1}, &unix.SockaddrInet6{Port: 7001})
		fixed := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: lo, Port: 7002})
		if err := unix.Connect(fixed, &unix.SockaddrInet4{Addr: lo, Port: 7000}); err != nil {
			return err
		}
		auto := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, nil)
		if err := unix.Connect(auto, &unix.SockaddrInet4{Addr: lo, Port: 7000}); err != nil {
			return err
		}
		tw := sock(t, unix.AF_INET, unix.SOCK_STREAM, map[int]int{unix.SO_REUSEADDR: 1}, nil)
		if err := unix.Connect(tw, &unix.SockaddrInet4{Addr: lo, Port: 7000}); err != nil {
			return err
		}
		unix.Close(tw) // active close: an orphan, TIME_WAIT once its FIN is acked
		// The FIN exchange takes a moment, longer in a loaded guest (a
		// TCG guest beside other work once took more than 5 s).
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var err error
			if got, err = Read(inet.TCP); err != nil {
				return err
			}
			if slices.ContainsFunc(got, func(s Sock) bool { return s.TimeWait }) || time.Now().After(deadline) {
				return nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	find := func(local, remote string) Sock {
		t.Helper()
		for _, s := range got {
			if s.Local.String() == local && (remote == "" || s.Remote.String() == remote) {
				return s
			}
		}
		t.Fatalf("no socket %s -> %s in %+v", local, remote, got)
		return Sock{}
	}
	if l := find("127.0.0.1:7000", "0.0.0.0:0"); l.State != 10 || !l.ReuseAddr || !l.ReusePort || l.ConnectBind || !l.BindPortLock || l.TimeWait ||
		!l.BucketKnown || l.BucketConnectOnly {
		t.Errorf("listener: %+v", l)
	}
	// 6.1 takes inet_csk_update_fastreuse's first-owner branch (the
	// cache's "any address", 1); 6.12 and later link the bind2 bucket
	// first and cache the strict address (2).
	fastRP := int8(2)
	if !kversion.AtLeast(6, 12) {
		fastRP = 1
	}
	if l := find("127.0.0.1:7000", "0.0.0.0:0"); l.Bucket.FastReuse != 0 || l.Bucket.FastReusePort != fastRP || l.Bucket.FastUID != 0 ||
		l.Bucket.FastFamily != inet.IPv4 || l.Bucket.FastAddr != netip.MustParseAddr("127.0.0.1") {
		// A listener: fastreuse 0; its SO_REUSEPORT bind left the strict
		// cache with its uid and address.
		t.Errorf("listener's bind bucket: %+v", l.Bucket)
	}
	if f := find("127.0.0.1:7002", ""); f.ConnectBind || !f.BindPortLock || f.ReuseAddr || f.ReusePort || !f.BucketKnown || f.BucketConnectOnly {
		t.Errorf("client bound to a fixed port: %+v", f)
	}
	if c := find("127.0.0.1:7000", "127.0.0.1:7002"); c.ConnectBind || !c.ReuseAddr || !c.ReusePort {
		t.Errorf("accepted child (inherits the listener's flags): %+v", c)
	}
	// Where the kernel does not record the port's origin, every record
	// says so: known false, and no origin claimed.
	origin := knowsPortOrigin(t)
	for _, s := range got {
		if s.ConnectBindKnown != origin || (!origin && s.ConnectBind) {
			t.Errorf("port origin known %v, connect() %v; want known %v on this kernel: %+v", s.ConnectBindKnown, s.ConnectBind, origin, s)
		}
	}
	var auto, tw int
	for _, s := range got {
		switch {
		case s.TimeWait:
			tw++
			if s.ConnectBind != origin || !s.ReuseAddr || s.ReusePort || !s.Timestamps || s.State != 6 || !s.BucketKnown || !s.BucketConnectOnly || !s.FinWait2 {
				// Its peer, never accepted, never sends its FIN.
				t.Errorf("FIN_WAIT2 entry of a connect()-bound SO_REUSEADDR socket: %+v", s)
			}
		case s.Remote.Port() == 7000 && s.Local.Port() != 7002:
			auto++
			if s.ConnectBind != origin || s.BindPortLock || !s.BucketKnown || !s.BucketConnectOnly {
				t.Errorf("client whose port connect() picked: %+v", s)
			}
		}
	}
	if auto != 1 || tw != 1 {
		t.Errorf("want one connect()-bound client and one TIME_WAIT entry, got %d and %d", auto, tw)
	}
}

func TestReadUDP(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t)
	var got []Sock
	err := ns.Do(func() error {
		sock(t, unix.AF_INET6, unix.SOCK_DGRAM, map[int]int{unix.SO_REUSEPORT: 1, unix.IPV6_V6ONLY: 1}, &unix.SockaddrInet6{Port: 5353})
		sock(t, unix.AF_INET, unix.SOCK_DGRAM, map[int]int{unix.SO_REUSEADDR: 1}, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 5354})
		var err error
		got, err = Read(inet.UDP)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %+v, want two sockets", got)
	}
	for _, s := range got {
		switch s.Local.Port() {
		case 5353:
			if s.Family != inet.IPv6 || !s.ReusePort || s.ReuseAddr || !s.V6Only || !s.BindPortLock {
				t.Errorf("udp6 socket: %+v", s)
			}
		case 5354:
			if s.Family != inet.IPv4 || s.ReusePort || !s.ReuseAddr || s.V6Only {
				t.Errorf("udp4 socket: %+v", s)
			}
		default:
			t.Errorf("unexpected %+v", s)
		}
	}
}

func FuzzParseRecords(f *testing.F) {
	l, err := kernelLayout()
	if err != nil {
		f.Skip(err)
	}
	f.Add(make([]byte, recordLen), uint8(6))
	rec := make([]byte, recordLen)
	rec[recFamily], rec[recKind] = 10, kindTimeWait
	f.Add(rec, uint8(17))
	f.Fuzz(func(t *testing.T, b []byte, proto uint8) {
		socks, err := parseRecords(b, inet.Proto(proto), l, nil)
		if err == nil && len(socks) > len(b)/recordLen {
			t.Fatalf("%d records from %d bytes", len(socks), len(b))
		}
	})
}

// FuzzScanRecords: records read in chunks of any sizes (a read may cut a
// record) decode to what the whole stream decodes to, request sockets
// counted apart; a stream cut inside a record is an error.
func FuzzScanRecords(f *testing.F) {
	l, err := kernelLayout()
	if err != nil {
		f.Skip(err)
	}
	rec := make([]byte, 2*recordLen)
	rec[recFamily], rec[recKind] = 2, kindFull
	rec[recordLen+recFamily], rec[recordLen+recKind] = 10, kindTimeWait
	f.Add(rec, []byte{7, 200, 1}, uint8(6))
	f.Add(make([]byte, 3*recordLen+5), []byte{112}, uint8(6))
	f.Fuzz(func(t *testing.T, stream, cuts []byte, proto uint8) {
		want, werr := parseRecords(stream, inet.Proto(proto), l, nil)
		var got []Sock
		rest, k := stream, 0
		read := func(p []byte) (int, error) {
			if len(rest) == 0 {
				return 0, io.EOF
			}
			n := len(p)
			if len(cuts) > 0 {
				n = min(n, int(cuts[k%len(cuts)])+1)
				k++
			}
			n = copy(p, rest[:min(n, len(rest))])
			rest = rest[n:]
			return n, nil
		}
		requests, err := scanRecords(read, make([]byte, 0, 300), inet.Proto(proto), l, func(s *Sock) { got = append(got, *s) })
		if (err != nil) != (werr != nil) {
			t.Fatalf("scan error %v, whole stream's %v", err, werr)
		}
		if err != nil {
			return
		}
		if !slices.Equal(got, want) {
			t.Fatalf("scanned %d sockets, the whole stream has %d", len(got), len(want))
		}
		if len(got)+requests > len(stream)/recordLen {
			t.Fatalf("%d sockets and %d requests from %d records", len(got), requests, len(stream)/recordLen)
		}
	})
}

// TestReadServerTimeWait: the TIME_WAIT entry a Go server leaves when it
// closes an accepted connection first carries the listener's SO_REUSEADDR
// (Go sets it on listeners), as the kernel keeps it. The BPF helper that
// casts to a TIME_WAIT socket refuses such entries on 6.18, so the flags
// must come through without it.
func TestReadServerTimeWait(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t)
	var got []Sock
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:7100")
		if err != nil {
			return err
		}
		defer ln.Close()
		c, err := net.Dial("tcp4", "127.0.0.1:7100")
		if err != nil {
			return err
		}
		defer c.Close()
		a, err := ln.Accept()
		if err != nil {
			return err
		}
		defer a.Close()
		// As a netcat server does: it shuts down its side first, the
		// client closes, the server closes last.
		a.(*net.TCPConn).CloseWrite()
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("client read: %v, want EOF", err)
		}
		c.Close()
		if _, err := a.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("server read: %v, want EOF", err)
		}
		a.Close()
		time.Sleep(20 * time.Millisecond)
		got, err = Read(inet.TCP)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		if s.Local.Port() == 7100 && s.TimeWait {
			if !s.ReuseAddr || s.ReusePort || s.State != 6 || s.ConnectBindKnown != knowsPortOrigin(t) || s.ConnectBind || !s.Timestamps || s.FinWait2 {
				t.Errorf("server-side TIME_WAIT of a Go listener (SO_REUSEADDR): %+v", s)
			}
			return
		}
	}
	t.Fatalf("no server-side TIME_WAIT entry on port 7100 in %+v", got)
}

// TestReadFinWait2Entry: a client that closes first while the server never
// closes becomes an orphan in FIN_WAIT2, which the kernel turns into a
// TIME_WAIT entry of substate FIN_WAIT2 at once (tcp_fin_timeout at most
// 60 s): the record says so, as connect() never takes such an entry over.
func TestReadFinWait2Entry(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t)
	var got []Sock
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:7200")
		if err != nil {
			return err
		}
		defer ln.Close()
		c, err := net.Dial("tcp4", "127.0.0.1:7200")
		if err != nil {
			return err
		}
		a, err := ln.Accept()
		if err != nil {
			return err
		}
		defer a.Close() // only at the end: the server never sends its FIN
		// The client is closed once in FIN_WAIT2 (its FIN acknowledged):
		// tcp_close then makes it an entry at once. Closed in FIN_WAIT1,
		// the ACK may come in while close() holds the socket, and the
		// kernel then keeps the orphan until tcp_fin_timeout and resets
		// it, never an entry (tcp_rcv_state_process): the 6.12 guest
		// did so once in CI.
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		if _, err := a.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("server read: %v, want EOF", err)
		}
		if err := waitTCPState(c.(*net.TCPConn), 5); err != nil { // TCP_FIN_WAIT2
			return err
		}
		c.Close()
		// The entry's table is read a moment later, longer in a loaded
		// guest (as TestReadAgainstKernel waits).
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if got, err = Read(inet.TCP); err != nil {
				return err
			}
			if slices.ContainsFunc(got, func(s Sock) bool { return s.Remote.Port() == 7200 && s.TimeWait }) || time.Now().After(deadline) {
				return nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		if s.Remote.Port() == 7200 && s.TimeWait {
			if !s.FinWait2 || s.State != 6 {
				t.Errorf("the orphan's FIN_WAIT2 entry: %+v; want FinWait2 and state 6", s)
			}
			return
		}
	}
	t.Fatalf("no TIME_WAIT entry of the client to port 7200 in %+v", got)
}

// waitTCPState waits up to 10 s for c's socket to be in state (TCP_INFO's
// tcpi_state).
func waitTCPState(c *net.TCPConn, state uint8) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var now uint8
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var infoErr error
		if err := rc.Control(func(fd uintptr) {
			var info *unix.TCPInfo
			if info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO); infoErr == nil {
				now = info.State
			}
		}); err != nil {
			return err
		}
		if infoErr != nil {
			return infoErr
		}
		if now == state {
			return nil
		}
	}
	return fmt.Errorf("socket in TCP state %d after 10 s, want %d", now, state)
}

// Regression: without root the note blamed MEMLOCK; the cause is the
// privilege, and unprivileged_bpf_disabled when it is set.
func TestUnprivilegedCause(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "sys/kernel"), 0o755)
	for v, want := range map[string]string{
		"2": "unprivileged BPF is disabled (kernel.unprivileged_bpf_disabled=2)",
		"1": "unprivileged BPF is disabled (kernel.unprivileged_bpf_disabled=1)",
		"0": "needs CAP_BPF and CAP_PERFMON",
	} {
		os.WriteFile(filepath.Join(root, "sys/kernel/unprivileged_bpf_disabled"), []byte(v+"\n"), 0o644)
		got := unprivilegedCause(root)
		if !strings.Contains(got, want) || !strings.Contains(got, "not root") || strings.Contains(got, "MEMLOCK") {
			t.Errorf("unprivileged_bpf_disabled=%s: %q, want %q and not root", v, got, want)
		}
	}
}

// TestReadAsyncInNamespaceWithCookies: ReadAsync started on a thread inside
// a namespace reads that namespace's sockets (not the process's), and each
// record carries the cookie the kernel reports for the socket (SO_COOKIE),
// although nothing asked for one before the read: records and a table
// dumped at the same time meet by cookie.
func TestReadAsyncInNamespaceWithCookies(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t)
	var fd int
	var wait func() ([]Sock, error)
	if err := ns.Do(func() error {
		fd = sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 7400})
		if err := unix.Listen(fd, 1); err != nil {
			return err
		}
		if !kversion.AtLeast(5, 12) {
			// There the record's cookie is the one the kernel keeps,
			// made when first asked for: by the dump the records meet.
			if _, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err != nil {
				return err
			}
		}
		wait = ReadAsync(inet.TCP, nil)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := wait()
	if err != nil {
		t.Fatalf("ReadAsync: %v", err)
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Local.Port() != 7400 {
		t.Fatalf("records %+v, want the namespace's one listener on 7400", got)
	}
	if got[0].Cookie == 0 || got[0].Cookie != cookie {
		t.Errorf("record cookie %d, SO_COOKIE %d", got[0].Cookie, cookie)
	}
}

// TestReaderReadsAgain: one Reader (one loaded program) reads the
// namespace again after it changed, into the previous result's array, and
// each read sees the sockets of that moment.
func TestReaderReadsAgain(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t)
	if err := ns.Do(func() error {
		r, err := NewReader(inet.TCP)
		if err != nil {
			return err
		}
		defer r.Close()
		listen := func(port int) {
			fd := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port})
			if err := unix.Listen(fd, 1); err != nil {
				t.Fatal(err)
			}
		}
		ports := func(recs []Sock) []uint16 {
			var ps []uint16
			for _, s := range recs {
				ps = append(ps, s.Local.Port())
			}
			slices.Sort(ps)
			return ps
		}
		listen(7401)
		first, err := r.Read(nil)
		if err != nil {
			return err
		}
		if got := ports(first); !slices.Equal(got, []uint16{7401}) {
			t.Errorf("first read: ports %v, want [7401]", got)
		}
		listen(7402)
		second, err := r.Read(first)
		if err != nil {
			return err
		}
		if got := ports(second); !slices.Equal(got, []uint16{7401, 7402}) {
			t.Errorf("second read: ports %v, want [7401 7402]", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestReadPort: the program filtered by port writes the records of that
// port's sockets only, TCP and UDP alike, with inodes unless skipped.
func TestReadPort(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t)
	if err := ns.Do(func() error {
		for _, port := range []int{7411, 7412} {
			fd := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port})
			if err := unix.Listen(fd, 1); err != nil {
				return err
			}
			sock(t, unix.AF_INET, unix.SOCK_DGRAM, nil, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port})
		}
		for _, p := range []inet.Proto{inet.TCP, inet.UDP} {
			got, err := ReadPort(p, 7412)
			if err != nil {
				return err
			}
			if len(got) != 1 || got[0].Local.Port() != 7412 || got[0].Inode == 0 {
				t.Errorf("%v: records %+v, want the one socket on 7412, with its inode", p, got)
			}
			bare, err := ReadPort(p, 7412, SkipInode())
			if err != nil {
				return err
			}
			if len(got) == 1 && (len(bare) != 1 || bare[0].Inode != 0 || bare[0].Cookie != got[0].Cookie) {
				t.Errorf("%v: records with SkipInode %+v, want the same socket without its inode", p, bare)
			}
			all, err := Read(p)
			if err != nil {
				return err
			}
			if len(all) != 2 {
				t.Errorf("%v: unfiltered read: %d records, want 2", p, len(all))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestScanOwnerFacts: Scan's records carry what inet_diag reports of a
// socket's owner: the uid that created it (here a thread's fsuid 4321),
// the device it is bound to (SO_BINDTODEVICE lo: ifindex 1) and its inode
// (what fstat and /proc/PID/fd show), for a listener, its client and the
// accepted child alike; the buffer comes back for the next scan.
func TestScanOwnerFacts(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t)
	lo := [4]byte{127, 0, 0, 1}
	var got []Sock
	inodes := map[uint16]uint64{}
	var buf []byte
	err := ns.Do(func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := unix.Setfsuid(4321); err != nil {
			return err
		}
		ln := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, nil)
		if err := unix.Setfsuid(0); err != nil {
			return err
		}
		if err := unix.SetsockoptString(ln, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lo"); err != nil {
			return err
		}
		if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: lo, Port: 7500}); err != nil {
			return err
		}
		if err := unix.Listen(ln, 4); err != nil {
			return err
		}
		cl := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: lo, Port: 7501})
		if err := unix.Connect(cl, &unix.SockaddrInet4{Addr: lo, Port: 7500}); err != nil {
			return err
		}
		for _, fd := range []int{ln, cl} {
			port, ino, err := inodeOf(fd)
			if err != nil {
				return err
			}
			inodes[port] = ino
		}
		r, err := NewReader(inet.TCP)
		if err != nil {
			return err
		}
		defer r.Close()
		buf, err = r.Scan(make([]byte, 0, 8), func(s *Sock) { got = append(got, *s) })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if cap(buf) < scanBuffers*scanChunk {
		t.Errorf("Scan returned a buffer of %d bytes to reuse, want at least %d", cap(buf), scanBuffers*scanChunk)
	}
	var child bool
	for _, s := range got {
		switch {
		case s.Local.Port() == 7500 && s.State == 10:
			if s.UID != 4321 || s.Dev != 1 || s.Inode != inodes[7500] {
				t.Errorf("listener: uid %d dev %d inode %d, want 4321, 1, %d", s.UID, s.Dev, s.Inode, inodes[7500])
			}
		case s.Local.Port() == 7501:
			if s.UID != 0 || s.Dev != 0 || s.Inode != inodes[7501] {
				t.Errorf("client: uid %d dev %d inode %d, want 0, 0, %d", s.UID, s.Dev, s.Inode, inodes[7501])
			}
		case s.Local.Port() == 7500:
			// Not accepted: no file yet; it inherits the listener's
			// device and uid. The iterator's uid is sock_i_uid's, as
			// inet_diag's: kernels before sk_uid() (6.12 here) read
			// it from the socket's inode, and one without a socket
			// reads as root.
			child = true
			uid := uint32(4321)
			if !kversion.AtLeast(6, 13) {
				uid = 0
			}
			if s.UID != uid || s.Dev != 1 || s.Inode != 0 {
				t.Errorf("unaccepted child: uid %d dev %d inode %d, want %d, 1, 0", s.UID, s.Dev, s.Inode, uid)
			}
		}
	}
	if len(got) != 3 || !child {
		t.Errorf("records %+v, want the listener, the client and the child", got)
	}
}

// inodeOf is the local port and inode (fstat's) of the IPv4 socket fd.
func inodeOf(fd int) (uint16, uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, 0, err
	}
	return uint16(sa.(*unix.SockaddrInet4).Port), st.Ino, nil
}

// loadRecords runs the socket program over l once, loaded with bpf(2)
// (raw) or by cilium/ebpf, and decodes its records.
func loadRecords(raw bool, l *layout, proto inet.Proto, port uint16, o Option) ([]Sock, error) {
	it, err := linkVia(raw, proto, program(l, proto, port, o))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	b, err := readIter(it, nil)
	if err != nil {
		return nil, err
	}
	return parseRecords(b, proto, l, nil)
}

// TestInodeReads: the inode a record carries is the socket's own (what
// fstat of its descriptor says) for a listener, a client, an accepted
// child and a UDP socket, read beside the socket (socket_alloc) or
// through its file alike, with the program loaded with bpf(2) or by
// cilium/ebpf; SkipInode leaves every inode 0, InodesWithin those of the
// sockets outside its ports.
func TestInodeReads(t *testing.T) {
	requireBTF(t)
	l, err := kernelLayout()
	if err != nil {
		t.Fatal(err)
	}
	viaFile := *l
	viaFile.sockIno = 0
	ns := netnstest.New(t)
	lo := [4]byte{127, 0, 0, 1}
	want := map[netip.AddrPort]uint64{} // local endpoint (port 7602 UDP) -> fstat's inode
	reads := map[string]map[netip.AddrPort]uint64{}
	err = ns.Do(func() error {
		ln := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: lo, Port: 7600})
		if err := unix.Listen(ln, 4); err != nil {
			return err
		}
		cl := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: lo, Port: 7601})
		if err := unix.Connect(cl, &unix.SockaddrInet4{Addr: lo, Port: 7600}); err != nil {
			return err
		}
		child, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(child) })
		udp := sock(t, unix.AF_INET, unix.SOCK_DGRAM, nil, &unix.SockaddrInet4{Addr: lo, Port: 7602})
		above := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: lo, Port: 7603})
		if err := unix.Listen(above, 4); err != nil {
			return err
		}
		for _, fd := range []int{ln, cl, child, udp, above} {
			port, ino, err := inodeOf(fd)
			if err != nil {
				return err
			}
			if fd == child {
				port = 0 // the child shares the listener's port
			}
			want[netip.AddrPortFrom(netip.AddrFrom4(lo), port)] = ino
		}
		within := InodesWithin(inet.PortRange{Lo: 7601, Hi: 7602})
		for name, c := range map[string]struct {
			l *layout
			o Option
		}{"socket_alloc": {l, Option{}}, "file": {&viaFile, Option{}}, "skip": {l, SkipInode()},
			"window socket_alloc": {l, within}, "window file": {&viaFile, within}} {
			for _, raw := range []bool{true, false} {
				got := map[netip.AddrPort]uint64{}
				for _, proto := range []inet.Proto{inet.TCP, inet.UDP} {
					recs, err := loadRecords(raw, c.l, proto, 0, c.o)
					if err != nil {
						return err
					}
					for _, s := range recs {
						key := s.Local
						if s.Local.Port() == 7600 && s.Remote.Port() == 7601 {
							key = netip.AddrPortFrom(s.Local.Addr(), 0)
						}
						got[key] = s.Inode
					}
				}
				reads[fmt.Sprintf("%s (raw %v)", name, raw)] = got
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.sockIno == 0 {
		t.Log("kernel BTF has no socket_alloc: the default read goes through the file")
	}
	for name, got := range reads {
		for key, ino := range want {
			w := ino
			// The listener and its child (key port 0) hold port 7600,
			// below the window; the other listener 7603, above it.
			if strings.HasPrefix(name, "skip") || strings.HasPrefix(name, "window") && (key.Port() < 7601 || key.Port() > 7602) {
				w = 0
			}
			if got[key] != w {
				t.Errorf("%s: socket at %v: inode %d, want %d", name, key, got[key], w)
			}
		}
	}
}

// readerVia is newReader's Reader with its program loaded with bpf(2)
// (raw) or by cilium/ebpf, never the other.
func readerVia(raw bool, proto inet.Proto, port uint16, o Option) (*Reader, error) {
	l, err := kernelLayout()
	if raw {
		k, kerr := rawKernel()
		if kerr != nil {
			return nil, kerr
		}
		l, err = k.sock, k.sockErr
	}
	if err != nil {
		return nil, err
	}
	it, err := linkVia(raw, proto, program(l, proto, port, o))
	if err != nil {
		return nil, err
	}
	return &Reader{proto: proto, l: l, it: it}, nil
}

// linkVia loads insns over proto's iterator with bpf(2) (raw) or by
// cilium/ebpf.
func linkVia(raw bool, proto inet.Proto, insns asm.Instructions) (iterLink, error) {
	target, err := iterTarget(proto)
	if err != nil {
		return nil, err
	}
	if !raw {
		return loadIter("tuple_sk_"+target, target, insns)
	}
	k, err := rawKernel()
	if err != nil {
		return nil, err
	}
	lnk, err := rawIterLink("tuple_sk_"+target, insns, k.targets[target])
	if err != nil {
		return nil, err
	}
	return lnk, nil
}

// TestRawReaderMatchesLoader: a Reader whose program is loaded with bpf(2)
// from the raw BTF reads what one loaded by cilium/ebpf reads, record for
// record (listeners with reuse flags, IPv4 and IPv6, clients, accepted and
// unaccepted children, TIME_WAIT entries, UDP), with inodes or without,
// for every port or one; it reads again and closes cleanly.
func TestRawReaderMatchesLoader(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t)
	lo4, lo6 := [4]byte{127, 0, 0, 1}, netip.IPv6Loopback().As16()
	type read struct {
		proto inet.Proto
		port  uint16
		o     Option
	}
	got := map[read][2][]Sock{}
	err := ns.Do(func() error {
		ln := sock(t, unix.AF_INET, unix.SOCK_STREAM, map[int]int{unix.SO_REUSEADDR: 1}, &unix.SockaddrInet4{Addr: lo4, Port: 7700})
		ln6 := sock(t, unix.AF_INET6, unix.SOCK_STREAM, map[int]int{unix.SO_REUSEPORT: 1, unix.IPV6_V6ONLY: 1}, &unix.SockaddrInet6{Addr: lo6, Port: 7700})
		for _, fd := range []int{ln, ln6} {
			if err := unix.Listen(fd, 8); err != nil {
				return err
			}
		}
		for i := range 3 {
			cl := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, nil)
			if err := unix.Connect(cl, &unix.SockaddrInet4{Addr: lo4, Port: 7700}); err != nil {
				return err
			}
			if i == 2 {
				continue // left unaccepted
			}
			child, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
			if err != nil {
				return err
			}
			if i == 0 {
				unix.Close(cl) // the client closes first: TIME_WAIT
			}
			t.Cleanup(func() { unix.Close(child) })
		}
		cl6 := sock(t, unix.AF_INET6, unix.SOCK_STREAM, nil, nil)
		if err := unix.Connect(cl6, &unix.SockaddrInet6{Addr: lo6, Port: 7700}); err != nil {
			return err
		}
		sock(t, unix.AF_INET, unix.SOCK_DGRAM, nil, &unix.SockaddrInet4{Addr: lo4, Port: 7700})
		sock(t, unix.AF_INET6, unix.SOCK_DGRAM, nil, &unix.SockaddrInet6{Addr: lo6, Port: 7701})
		// The FIN exchange takes a moment, longer in a loaded guest:
		// both loaders must see the TIME_WAIT entry.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			recs, err := Read(inet.TCP)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(recs, func(s Sock) bool { return s.TimeWait }) {
				break
			}
		}
		for _, rd := range []read{{inet.TCP, 0, Option{}}, {inet.TCP, 0, SkipInode()}, {inet.TCP, 7700, Option{}}, {inet.UDP, 0, Option{}}, {inet.UDP, 7701, SkipInode()}} {
			var pair [2][]Sock
			for i, raw := range []bool{true, false} {
				r, err := readerVia(raw, rd.proto, rd.port, rd.o)
				if err != nil {
					return err
				}
				if _, err := r.Read(nil); err != nil { // read again below
					r.Close()
					return err
				}
				recs, err := r.Read(nil)
				if err := errors.Join(err, r.Close(), r.Close()); err != nil {
					return err
				}
				slices.SortFunc(recs, func(a, b Sock) int { return cmp.Compare(a.Cookie, b.Cookie) })
				pair[i] = recs
			}
			got[rd] = pair
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rd, pair := range got {
		raw, loader := pair[0], pair[1]
		if !slices.Equal(raw, loader) {
			t.Errorf("%+v: raw %+v\nloader %+v", rd, raw, loader)
		}
		var tw, inodes int
		for _, s := range raw {
			if s.TimeWait {
				tw++
			}
			if s.Inode != 0 {
				inodes++
			}
		}
		switch {
		case rd.proto == inet.TCP && rd.port == 0 && len(raw) != 2+3+3+2:
			t.Errorf("%+v: %d records, want 2 listeners, 3 IPv4 clients (one in TIME_WAIT), 3 children, an IPv6 client and its child", rd, len(raw))
		case rd.proto == inet.TCP && rd.port == 7700 && len(raw) != 2+3+1:
			t.Errorf("%+v: %d records, want 2 listeners, 3 IPv4 children, an IPv6 child", rd, len(raw))
		case rd.proto == inet.TCP && rd.port == 0 && tw != 1:
			t.Errorf("%+v: %d TIME_WAIT entries, want 1", rd, tw)
		case rd.proto == inet.UDP && rd.port == 0 && len(raw) != 2, rd.port == 7701 && len(raw) != 1:
			t.Errorf("%+v: %d records", rd, len(raw))
		case rd.o.skipInode && inodes != 0, !rd.o.skipInode && inodes == 0:
			t.Errorf("%+v: %d records with an inode", rd, inodes)
		}
	}
}

// TestAttachIterMissingField: a field the raw BTF lacks is the answer, an
// error wrapping inet.ErrUnsupported that names it, without decoding the
// BTF again through the loader (tens of milliseconds of every command); a
// raw load that fails otherwise falls back to the loader.
func TestAttachIterMissingField(t *testing.T) {
	requireBTF(t)
	loaded := false
	loader := func() (*layout, error) { loaded = true; return kernelLayout() }
	prog := func(l *layout) asm.Instructions { return program(l, inet.TCP, 0, SkipInode()) }
	_, _, err := attachIter("tuple_sk_tcp", "tcp",
		func(*rawBTF) (*layout, error) {
			return nil, errors.New("kernel BTF has no inet_timewait_sock.tw_connect_bind")
		},
		loader, prog)
	if !errors.Is(err, inet.ErrUnsupported) || !strings.Contains(err.Error(), "tw_connect_bind") || loaded {
		t.Errorf("missing field: error %v, loader ran %v; want ErrUnsupported naming the field, no loader", err, loaded)
	}
	// A program the kernel refuses (an out-of-bounds read of the context)
	// is tried again through the loader, which refuses it too.
	k, err := rawKernel()
	if err == nil {
		err = k.sockErr
	}
	if err != nil {
		t.Skipf("no raw socket layout on this kernel: %v", err)
	}
	bad := func(l *layout) asm.Instructions {
		return asm.Instructions{asm.LoadMem(asm.R0, asm.R1, 4096, asm.DWord), asm.Return()}
	}
	it, _, err := attachIter("tuple_sk_tcp", "tcp", func(k *rawBTF) (*layout, error) { return k.sock, k.sockErr }, loader, bad)
	if err == nil {
		it.Close()
	}
	if err == nil || !loaded {
		t.Errorf("refused program: error %v, loader ran %v; want an error after the loader tried", err, loaded)
	}
}

// parseRecords decodes a whole stream of the program's output at once,
// appending to out: the reference the chunked decoding (Scan) is fuzzed
// against.
func parseRecords(b []byte, proto inet.Proto, l *layout, out []Sock) ([]Sock, error) {
	if err := checkRecords(b); err != nil {
		return nil, err
	}
	out = slices.Grow(out, len(b)/recordLen)
	var s Sock
	for ; len(b) > 0; b = b[recordLen:] {
		if decodeRecord(b[:recordLen], proto, l, &s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func checkRecords(b []byte) error {
	if len(b)%recordLen != 0 {
		return fmt.Errorf("BPF socket iterator %w: %d bytes is not a multiple of %d", errRecord, len(b), recordLen)
	}
	return nil
}
