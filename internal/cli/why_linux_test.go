package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/sockopt"
)

// whyIn runs `tuple why ... --json` inside the namespace, through the
// command's real code path (live socket table, sysctls, addresses).
func whyIn(t *testing.T, ns *netnstest.NS, args ...string) (int, whyJSON) {
	t.Helper()
	var code int
	var out, errOut string
	ns.Do(func() error {
		code, out, errOut = run(t, "", args...)
		return nil
	})
	var j whyJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("tuple %s: exit %d, output is not JSON (%v): %s%s", strings.Join(args, " "), code, err, out, errOut)
	}
	return code, j
}

// kernelSays builds r for real in the namespace and returns the verdict;
// the socket stays open until the test ends when it succeeded.
func kernelSays(t *testing.T, ns *netnstest.NS, r realSock) string {
	t.Helper()
	var v string
	ns.Do(func() error {
		fd, err := r.create()
		v = verdict(err)
		if err != nil {
			closeFD(fd)
		} else {
			t.Cleanup(func() { closeFD(fd) })
		}
		return nil
	})
	return v
}

// mustCreate builds r in the namespace and fails the test if it fails.
func mustCreate(t *testing.T, ns *netnstest.NS, r realSock) int {
	t.Helper()
	var fd int
	var err error
	ns.Do(func() error { fd, err = r.create(); return nil })
	if err != nil {
		closeFD(fd)
		t.Fatalf("%v: %v", r, err)
	}
	t.Cleanup(func() { closeFD(fd) })
	return fd
}

// acceptPeer accepts from listener until the child whose peer is peer
// shows up; other children stay open until the test ends.
func acceptPeer(t *testing.T, listener int, peer netip.AddrPort) int {
	t.Helper()
	for range 64 {
		nfd, sa, err := unix.Accept4(listener, unix.SOCK_CLOEXEC)
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		if a, ok := sa.(*unix.SockaddrInet4); ok && netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)) == peer {
			return nfd
		}
		t.Cleanup(func() { closeFD(nfd) })
	}
	t.Fatalf("no accepted connection from %s", peer)
	return -1
}

// timeWait leaves a TIME_WAIT entry for client: the client closes first,
// then the accepted child.
func timeWait(t *testing.T, ns *netnstest.NS, client realSock, listener int) {
	t.Helper()
	var fd int
	var err error
	ns.Do(func() error { fd, err = client.create(); return nil })
	if err != nil {
		closeFD(fd)
		t.Fatalf("%v: %v", client, err)
	}
	child := acceptPeer(t, listener, client.bind)
	unix.Close(fd)
	unix.Close(child)
	waitForState(t, ns, "TIME-WAIT", client.bind.String())
}

// waitForState waits until ss shows a socket in state with local address addr.
func waitForState(t *testing.T, ns *netnstest.NS, state, addr string) {
	t.Helper()
	for range 100 {
		if strings.Contains(ns.Run(t, "ss", "-Htan", "state", strings.ToLower(state), "src", addr), addr) {
			return
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	t.Fatalf("no %s socket on %s", state, addr)
}

func hasFix(j whyJSON, changeSub, flags string) bool {
	for _, f := range j.Fixes {
		if strings.Contains(f.Change, changeSub) && (flags == "" || f.Flags == flags) {
			return true
		}
	}
	return false
}

// TestWhySeedCases explains the seed experiment's cases through `tuple
// why` reading the live table, and checks each verdict against the kernel.
func TestWhySeedCases(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32")
	ap := netip.MustParseAddrPort
	c := &seedCases{ns: ns, hostA: ap("10.0.0.2:80"), hostB: ap("10.0.0.3:80"), me: fmt.Sprintf("pid %d (", os.Getpid())}
	c.srvA = mustCreate(t, ns, realSock{family: 4, bind: c.hostA, listen: true})
	mustCreate(t, ns, realSock{family: 4, bind: c.hostB, listen: true})
	t.Run("nc double -p", c.doubleSourcePort)
	t.Run("reuseport on both", c.reusePortOnBoth)
	t.Run("reuseaddr on both", c.reuseAddrOnBoth)
	t.Run("same destination", c.sameDestination)
	t.Run("different uid", c.differentUID)
	t.Run("TIME_WAIT", c.timeWaitEntry)
	t.Run("listener on the port", c.listener)
}

// seedCases is TestWhySeedCases' namespace: listeners on hostA (srvA)
// and hostB; me is how the explanations name this process.
type seedCases struct {
	ns           *netnstest.NS
	hostA, hostB netip.AddrPort
	srvA         int
	me           string
}

// check runs tuple why for the second socket, compares the verdict with
// the kernel's, and returns the report.
func (c *seedCases) check(t *testing.T, name string, second realSock, wantVerdict string) whyJSON {
	t.Helper()
	code, j := whyIn(t, c.ns, second.whyArgs()...)
	if j.Verdict != wantVerdict || (code == 0) != (wantVerdict == "ok") {
		t.Errorf("%s: tuple why says %s (exit %d), want %s: %+v", name, j.Verdict, code, wantVerdict, j)
	}
	if k := kernelSays(t, c.ns, second); k != wantVerdict {
		t.Errorf("%s: the kernel says %s, want %s", name, k, wantVerdict)
	}
	return j
}

// doubleSourcePort two connects from one -p port to two hosts: EADDRINUSE at bind, the first nc's socket the blocker, and the reuse fixes.
func (c *seedCases) doubleSourcePort(t *testing.T) {
	ap := netip.MustParseAddrPort
	mustCreate(t, c.ns, realSock{family: 4, bind: ap("10.0.0.1:12345"), connect: c.hostA})
	j := c.check(t, "double -p", realSock{family: 4, bind: ap("10.0.0.1:12345"), connect: c.hostB}, "EADDRINUSE")
	if len(j.Blockers) != 1 || j.FailedOp != "bind" {
		t.Fatalf("want one blocker at bind: %+v", j)
	}
	b := j.Blockers[0]
	if b.Local != "10.0.0.1:12345" || b.Remote != "10.0.0.2:80" || b.State != "CONNECTED" ||
		len(b.Owners) != 1 || b.Owners[0].PID != os.Getpid() {
		t.Errorf("blocker is not the first nc's socket with its owner: %+v", b)
	}
	if !hasFix(j, "set SO_REUSEPORT on the new socket and on tcp 10.0.0.1:12345->10.0.0.2:80 ["+c.me, "--reuseport") ||
		!hasFix(j, "set SO_REUSEADDR on the new socket and on tcp 10.0.0.1:12345", "--reuseaddr") ||
		!hasFix(j, "let connect() pick", "") {
		t.Errorf("fixes: %+v", j.Fixes)
	}
}

// reusePortOnBoth SO_REUSEPORT on both sockets: ok.
func (c *seedCases) reusePortOnBoth(t *testing.T) {
	ap := netip.MustParseAddrPort
	mustCreate(t, c.ns, realSock{family: 4, reusePort: true, bind: ap("10.0.0.1:12346"), connect: c.hostA})
	c.check(t, "reuseport", realSock{family: 4, reusePort: true, bind: ap("10.0.0.1:12346"), connect: c.hostB}, "ok")
}

// reuseAddrOnBoth SO_REUSEADDR on both sockets: ok.
func (c *seedCases) reuseAddrOnBoth(t *testing.T) {
	ap := netip.MustParseAddrPort
	mustCreate(t, c.ns, realSock{family: 4, reuseAddr: true, bind: ap("10.0.0.1:12347"), connect: c.hostA})
	c.check(t, "reuseaddr", realSock{family: 4, reuseAddr: true, bind: ap("10.0.0.1:12347"), connect: c.hostB}, "ok")
}

// sameDestination the same four-tuple: EADDRNOTAVAIL at connect, and no reuse fix.
func (c *seedCases) sameDestination(t *testing.T) {
	ap := netip.MustParseAddrPort
	mustCreate(t, c.ns, realSock{family: 4, reusePort: true, bind: ap("10.0.0.1:12352"), connect: c.hostA})
	j := c.check(t, "same destination", realSock{family: 4, reusePort: true, bind: ap("10.0.0.1:12352"), connect: c.hostA}, "EADDRNOTAVAIL")
	if j.FailedOp != "connect" || len(j.Blockers) != 1 || j.Blockers[0].Local != "10.0.0.1:12352" || j.Blockers[0].Remote != "10.0.0.2:80" {
		t.Errorf("want the four-tuple's holder as blocker at connect: %+v", j)
	}
	if hasFix(j, "SO_REUSE", "") || !hasFix(j, "use port", "") {
		t.Errorf("sharing the port cannot help the same four-tuple; fixes: %+v", j.Fixes)
	}
}

// differentUID SO_REUSEPORT across uids: EADDRINUSE, with the fix to run as the owner's uid.
func (c *seedCases) differentUID(t *testing.T) {
	ap := netip.MustParseAddrPort
	mustCreate(t, c.ns, realSock{family: 4, reusePort: true, uid: 65534, bind: ap("10.0.0.1:12348"), connect: c.hostA})
	j := c.check(t, "different uid", realSock{family: 4, reusePort: true, bind: ap("10.0.0.1:12348"), connect: c.hostB}, "EADDRINUSE")
	if len(j.Blockers) != 1 || j.Blockers[0].UID != 65534 || !strings.Contains(j.Blockers[0].Reason, "uid") {
		t.Errorf("want the other uid's socket as blocker with a uid reason: %+v", j.Blockers)
	}
	if !hasFix(j, "run it as uid 65534", "--reuseport --uid 65534") {
		t.Errorf("fixes: %+v", j.Fixes)
	}
	c.check(t, "same uid", realSock{family: 4, reusePort: true, uid: 65534, bind: ap("10.0.0.1:12348"), connect: c.hostB}, "ok")
}

// timeWaitEntry a TIME_WAIT entry on the port: the wait fix; with SO_REUSEADDR the four-tuple is taken over only with timestamps.
func (c *seedCases) timeWaitEntry(t *testing.T) {
	ap := netip.MustParseAddrPort
	first := realSock{family: 4, bind: ap("10.0.0.1:12349"), connect: c.hostA}
	timeWait(t, c.ns, first, c.srvA)
	j := c.check(t, "time-wait", first, "EADDRINUSE")
	if len(j.Blockers) != 1 || j.Blockers[0].State != "TIME_WAIT" || len(j.Blockers[0].Owners) != 0 {
		t.Errorf("want the TIME_WAIT entry as blocker: %+v", j.Blockers)
	}
	var secs int
	for _, f := range j.Fixes {
		fmt.Sscanf(f.Change, "wait %d s until the TIME_WAIT entry expires", &secs)
	}
	if secs < 50 || secs > 60 {
		t.Errorf("want a fix waiting 50-60 s for the entry; fixes: %+v", j.Fixes)
	}
	// With SO_REUSEADDR on both, the bind passes and the connect takes
	// the TIME_WAIT four-tuple over (the peer used timestamps) ...
	second := realSock{family: 4, reuseAddr: true, bind: ap("10.0.0.1:12350"), connect: c.hostA}
	timeWait(t, c.ns, second, c.srvA)
	c.check(t, "time-wait reuse", second, "ok")
	// ... and without timestamps the connect fails on the four-tuple.
	c.ns.Sysctl(t, "net.ipv4.tcp_timestamps", "0")
	third := realSock{family: 4, reuseAddr: true, bind: ap("10.0.0.1:12351"), connect: c.hostA}
	timeWait(t, c.ns, third, c.srvA)
	c.ns.Sysctl(t, "net.ipv4.tcp_timestamps", "1")
	j = c.check(t, "time-wait no timestamps", third, "EADDRNOTAVAIL")
	if j.FailedOp != "connect" || !hasFix(j, "until the TIME_WAIT entry expires", "") {
		t.Errorf("want a connect failure with a wait fix: %+v", j)
	}
}

// listener a listener on the port: blocked unless both set SO_REUSEPORT.
func (c *seedCases) listener(t *testing.T) {
	ap := netip.MustParseAddrPort
	mustCreate(t, c.ns, realSock{family: 4, bind: ap("10.0.0.1:8080"), listen: true})
	j := c.check(t, "listener", realSock{family: 4, reuseAddr: true, bind: ap("10.0.0.1:8080"), listen: true}, "EADDRINUSE")
	if len(j.Blockers) != 1 || j.Blockers[0].State != "LISTEN" || !strings.Contains(j.Blockers[0].Reason, "SO_REUSEPORT") {
		t.Errorf("want the listener as blocker: %+v", j.Blockers)
	}
	if !hasFix(j, "set SO_REUSEPORT on the new socket and on tcp 10.0.0.1:8080 ["+c.me, "--reuseport") || !hasFix(j, "use port 8081", "10.0.0.1:8081") {
		t.Errorf("fixes: %+v", j.Fixes)
	}
	c.check(t, "wildcard vs listener", realSock{family: 4, bind: ap("0.0.0.0:8080"), listen: true}, "EADDRINUSE")
	mustCreate(t, c.ns, realSock{family: 4, reusePort: true, bind: ap("10.0.0.1:8090"), listen: true})
	c.check(t, "reuseport listeners", realSock{family: 4, reusePort: true, bind: ap("10.0.0.1:8090"), listen: true}, "ok")
}

// TestExplainNetFailure: the explanation `tuple connect` and `tuple listen`
// print after a failure names the blocker and its owner.
func TestExplainNetFailure(t *testing.T) {
	ns := netnstest.New(t)
	ap := netip.MustParseAddrPort
	mustCreate(t, ns, realSock{family: 4, bind: ap("127.0.0.1:7300"), listen: true})
	var got, other, withOpts *failureExplanation
	var gotErr, otherErr error
	ns.Do(func() error {
		err := &os.SyscallError{Syscall: "bind", Err: unix.EADDRINUSE}
		got, gotErr = explainNetFailure(context.Background(), newNetFailure("listen", "tcp", ap("127.0.0.1:7300"), netip.AddrPort{}, err))
		// The model predicts EADDRINUSE, not EACCES: no explanation, and why.
		other, otherErr = explainNetFailure(context.Background(), newNetFailure("listen", "tcp", ap("127.0.0.1:7300"), netip.AddrPort{}, &os.SyscallError{Syscall: "bind", Err: unix.EACCES}))
		// With SO_REUSEPORT on the new socket alone, the listener still
		// blocks it, and the explanation says the owner needs it too.
		f := newNetFailure("listen", "tcp", ap("127.0.0.1:7300"), netip.AddrPort{}, err)
		f.opts = sockopt.Options{ReuseAddr: true, ReusePort: true}
		withOpts, _ = explainNetFailure(context.Background(), f)
		return nil
	})
	if gotErr != nil || withOpts == nil {
		t.Fatalf("no explanation: %v", gotErr)
	}
	// In full (-v), then in the one line the hint gives without -v.
	golden(t, "explain-listen-in-use.txt", stable(got.full+"hint: "+got.brief+"\n"))
	if other != nil || otherErr == nil {
		t.Fatalf("explanation for an errno the model does not predict: %+v, %v", other, otherErr)
	}
	golden(t, "explain-listen-other-errno.txt", otherErr.Error()+"\n")
	// Judged with the new socket's SO_REUSEPORT: the owner needs it too.
	golden(t, "explain-listen-in-use-reuseport.txt", stable(withOpts.full+"hint: "+withOpts.brief+"\n"))
}

// What an unprivileged run says differently on each host: how many
// processes' descriptors it could not read, and why the kernel refuses it
// BPF (the sysctl, or a missing capability).
var (
	unreadProcs = regexp.MustCompile(`descriptors of \d+ processes`)
	bpfRefusal  = regexp.MustCompile(`the BPF socket iterator needs root \(.*\); options come from`)
)

// hostStable replaces what differs between hosts with placeholders.
func hostStable(s string) string {
	s = unreadProcs.ReplaceAllString(s, "descriptors of N processes")
	return bpfRefusal.ReplaceAllString(s, "the BPF socket iterator needs root (WHY); options come from")
}

// TestWhyUnprivileged runs tuple why as an unprivileged user: no BPF
// iterator and no access to root's descriptors, so the owner's options are
// unknown. The verdict must still match the kernel and say what it assumed.
func TestWhyUnprivileged(t *testing.T) {
	ns := netnstest.New(t)
	bin := tupleBinary(t)
	ap := netip.MustParseAddrPort
	mustCreate(t, ns, realSock{family: 4, reusePort: true, bind: ap("127.0.0.1:7400"), listen: true})
	cmd := ns.Command(context.Background(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "why", "listen", "127.0.0.1:7400", "--reuseport", "--json")
	out, _ := cmd.Output()
	var j whyJSON
	if err := json.Unmarshal(out, &j); err != nil {
		t.Fatalf("tuple why as uid 65534: %v: %s", err, out)
	}
	if k := kernelSays(t, ns, realSock{family: 4, reusePort: true, uid: 65534, bind: ap("127.0.0.1:7400"), listen: true}); k != j.Verdict || k != "EADDRINUSE" {
		t.Errorf("tuple why says %s, the kernel %s", j.Verdict, k)
	}
	// The assumption about the owner's SO_REUSEPORT, and the note that the
	// BPF iterator needs root.
	golden(t, "why-unprivileged-assumptions.txt", hostStable(strings.Join(j.Assumptions, "\n")+"\n--- notes\n"+strings.Join(j.Notes, "\n")+"\n"))
	// The text: the listener's options are unread, so the reason names the
	// uid rule as one possibility and asserts nothing it did not see.
	cmd = ns.Command(context.Background(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "why", "listen", "127.0.0.1:7400", "--reuseport")
	text, _ := cmd.Output()
	txt := string(text)
	// The whole text: claims about the listener's options stated as facts
	// would be false here (it has SO_REUSEPORT), so each stands under an
	// "if"; it ends with "run as root to tell".
	golden(t, "why-unprivileged.txt", hostStable(stable(txt)))
	if lines := strings.Count(txt, "\n"); lines > 40 {
		t.Errorf("why as uid 65534: %d lines", lines)
	}
}

// A namespace with no route to the peer: connect() fails with ENETUNREACH
// before any port rule, bound or not, TCP or UDP. why said "would succeed"
// and put the failed route lookup in a note.
func TestWhyConnectWithoutRoute(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	ap := netip.MustParseAddrPort
	for _, r := range []realSock{
		{family: 4, connect: ap("192.0.2.1:80")},
		{family: 4, udp: true, connect: ap("192.0.2.1:80")},
		{family: 4, bind: ap("10.0.0.1:0"), connect: ap("192.0.2.1:80")},
		{family: 6, connect: ap("[2001:db8::1]:80")},
	} {
		args := r.whyArgs()
		code, j := whyIn(t, ns, args...)
		k := kernelSays(t, ns, r)
		if j.Verdict != k || k != "ENETUNREACH" || code != 1 {
			t.Errorf("tuple %s: %s (exit %d), the kernel %s; want ENETUNREACH from both", strings.Join(args, " "), j.Verdict, code, k)
		}
	}
}

// A listener whose accept queue holds more than its backlog: the kernel
// drops the SYN of a new connect(), which waits (and ends with ETIMEDOUT
// unless the listener accepts). why said it would succeed.
func TestWhyConnectToFullAcceptQueue(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	var ln int
	dial := func() (int, error) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		t.Cleanup(func() { closeFD(fd) })
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{10, 0, 0, 1}, Port: 7000}); err != nil && err != unix.EINPROGRESS {
			return -1, err
		}
		return fd, nil
	}
	// established reports whether fd's connect() completed within d.
	established := func(fd int, d time.Duration) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, _ := unix.Poll(pfd, int(d.Milliseconds()))
		return n == 1
	}
	err := ns.Do(func() error {
		var err error
		if ln, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		t.Cleanup(func() { closeFD(ln) })
		if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{10, 0, 0, 1}, Port: 7000}); err != nil {
			return err
		}
		if err := unix.Listen(ln, 1); err != nil {
			return err
		}
		// Backlog 1: two connections fill the queue (full means more
		// waiting than the backlog).
		for range 2 {
			fd, err := dial()
			if err != nil {
				return err
			}
			if !established(fd, 5*time.Second) {
				return fmt.Errorf("connection %d to a listener with room was not established", fd)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, j := whyIn(t, ns, "why", "connect", "10.0.0.1:7000", "--json")
	if j.Verdict != "ETIMEDOUT" || code != 1 || len(j.Blockers) != 1 || j.Blockers[0].Local != "10.0.0.1:7000" {
		t.Errorf("tuple why connect to a full listener: %s (exit %d), blockers %+v; want ETIMEDOUT, the listener the blocker", j.Verdict, code, j.Blockers)
	}
	// The kernel: a third connect() is not established while the queue
	// stays full.
	ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Closed before the accept below: its SYN, sent again, must not
		// fill the queue again.
		defer closeFD(fd)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{10, 0, 0, 1}, Port: 7000}); err != unix.EINPROGRESS {
			t.Fatalf("connect: %v, want EINPROGRESS", err)
		}
		if established(fd, 1500*time.Millisecond) {
			t.Errorf("the kernel established a connection to a listener with a full accept queue")
		}
		return nil
	})
	// tuple connect -w times out, and its hint names the full queue (it
	// blamed a firewall).
	ns.Do(func() error {
		code, _, errOut := run(t, "", "connect", "-w", "1", "10.0.0.1", "7000")
		if code != 1 || !strings.Contains(errOut, "its accept queue is full: 2 connections wait, backlog 1") {
			t.Errorf("tuple connect -w 1 to a full listener: exit %d, stderr %q; want 1 and the full queue in the hint", code, errOut)
		}
		return nil
	})
	// Once the listener accepts, there is room again.
	ns.Do(func() error {
		nfd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err == nil {
			closeFD(nfd)
		}
		return err
	})
	if code, j := whyIn(t, ns, "why", "connect", "10.0.0.1:7000", "--json"); j.Verdict != "ok" || code != 0 {
		t.Errorf("tuple why connect after an accept: %s (exit %d), want ok", j.Verdict, code)
	}
}

// The TIME_WAIT entry of an orphan in FIN_WAIT2 (the peer never closed):
// tcp_twsk_unique never lets a searching connect() take it over, whatever
// tcp_tw_reuse says. ss shows it as FIN-WAIT-2; why took it for a
// connected socket here and for a reusable TIME_WAIT entry from the BPF
// record.
func TestWhyConnectBesideFinWait2Entry(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40001")
	ns.Sysctl(t, "net.ipv4.tcp_tw_reuse", "1")
	listenIn(t, ns, "10.0.0.1:80") // never accepts, never closes its children
	ns.Do(func() error {
		for range 2 { // both ports of the range
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{10, 0, 0, 1}, Port: 80}); err != nil {
				t.Fatal(err)
			}
			unix.Close(fd) // an orphan: FIN_WAIT2 once its FIN is acked
		}
		return nil
	})
	waitFor(t, "two FIN-WAIT-2 entries", func() bool {
		return strings.Count(ns.Run(t, "ss", "-Htan", "state", "fin-wait-2"), "\n") == 2
	})
	time.Sleep(1100 * time.Millisecond) // past any reuse delay or second tick
	code, j := whyIn(t, ns, "why", "connect", "10.0.0.1:80", "--json")
	k := kernelSays(t, ns, realSock{family: 4, connect: netip.MustParseAddrPort("10.0.0.1:80")})
	if j.Verdict != k || k != "EADDRNOTAVAIL" || code != 1 {
		t.Errorf("connect beside FIN_WAIT2 entries: tuple why %s (exit %d), the kernel %s; want EADDRNOTAVAIL from both", j.Verdict, code, k)
	}
}
