package lab

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/reexec"
	"github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/sockopt"
	"github.com/tuple-net/tuple/socktab"
)

// HelperCommand is the name of the helper the runner re-executes the
// running binary as (internal/reexec); it is argv[1] of every helper.
const HelperCommand = "__lab-helper"

func init() { reexec.Register(HelperCommand, helperMain) }

// helperSock is one socket a helper holds.
type helperSock struct {
	fd    int
	proto Proto
	// stop ends a UDP server's discard loop; nil for other sockets.
	stop io.Closer
	// server: a TCP server, whose connections the runner has accepted
	// (request accept) as each connect completes.
	server bool
}

type helper struct {
	socks map[string]*helperSock
	// children are the servers' accepted connections, each closed by its
	// own goroutine when the peer closes; closeAll closes the rest.
	children map[io.Closer]bool
	mu       sync.Mutex // guards children
}

// helperMain runs a helper process. args are its flags: --uid N and, for
// helpers that join an existing namespace, --netns-fd FD. The control
// socket is descriptor 3. It returns the process's exit code.
func helperMain(args []string) int {
	fs := flag.NewFlagSet(HelperCommand, flag.ContinueOnError)
	uid := fs.Uint("uid", 0, "uid to run as")
	nsfd := fs.Int("netns-fd", -1, "network namespace to join")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Sockets belong to the namespace of the thread that creates them, and
	// setns changes only the calling thread: keep all work on this one.
	runtime.LockOSThread()
	if err := enterHelper(uint32(*uid), *nsfd); err != nil {
		fmt.Fprintln(os.Stderr, "tuple lab helper:", err)
		return 1
	}
	ctrl, err := net.FileConn(os.NewFile(3, "control"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tuple lab helper: control socket:", err)
		return 1
	}
	defer ctrl.Close()
	uc, ok := ctrl.(*net.UnixConn)
	if !ok {
		fmt.Fprintln(os.Stderr, "tuple lab helper: descriptor 3 is not a unix socket")
		return 1
	}
	h := &helper{socks: map[string]*helperSock{}, children: map[io.Closer]bool{}}
	defer h.closeAll()
	buf := make([]byte, maxPacket)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return 0 // the runner is gone or done
		}
		var req request
		var rep reply
		give := -1
		fds, ferr := parseRights(oob[:oobn])
		if err := json.Unmarshal(buf[:n], &req); err != nil || ferr != nil {
			rep.Fail = fmt.Sprintf("bad request: %v", errors.Join(err, ferr))
			closeFDs(fds)
		} else {
			rep, give = h.handle(req, fds)
		}
		out, _ := json.Marshal(rep)
		var rights []byte
		if give >= 0 {
			rights = unix.UnixRights(give)
		}
		_, _, err = uc.WriteMsgUnix(out, rights, nil)
		if give >= 0 {
			unix.Close(give)
		}
		if err != nil {
			return 0
		}
	}
}

// enterHelper joins the namespace and drops to uid. Dropping privileges
// clears the parent-death signal (commit_creds), so it is set again and the
// parent checked (reexec.StayTied), or the helper could outlive an
// interrupted runner.
func enterHelper(uid uint32, nsfd int) error {
	if nsfd >= 0 {
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			return os.NewSyscallError("setns", err)
		}
		unix.Close(nsfd)
	}
	if uid != 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return os.NewSyscallError("setgroups", err)
		}
		if err := syscall.Setgid(int(uid)); err != nil {
			return os.NewSyscallError("setgid", err)
		}
		if err := syscall.Setuid(int(uid)); err != nil {
			return os.NewSyscallError("setuid", err)
		}
	}
	return reexec.StayTied()
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, err
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (h *helper) closeAll() {
	for name, s := range h.socks {
		h.drop(name, s)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.children {
		c.Close()
	}
}

func (h *helper) drop(name string, s *helperSock) {
	if s.stop != nil {
		s.stop.Close()
	}
	unix.Close(s.fd)
	delete(h.socks, name)
}

// handle runs one request. It returns the reply and a descriptor to send
// with it (give), or -1.
func (h *helper) handle(req request, fds []int) (reply, int) {
	if req.Op != "take" {
		closeFDs(fds)
	}
	if rep, ok := hostRequest(req); ok {
		return rep, -1
	}
	switch req.Op {
	case "socket", "source", "take":
		return h.newSockRequest(req, fds), -1
	}
	s, ok := h.socks[req.Sock]
	if !ok {
		return failReply(req.Op, syscall.EBADF), -1
	}
	return h.sockRequest(s, req)
}

// failReply is the reply to a failed step: its errno and where, or the
// error's text when it has no errno.
func failReply(where string, err error) reply {
	var rep reply
	var errno syscall.Errno
	if errors.As(err, &errno) {
		rep.Errno, rep.Where = int(errno), where
	} else {
		rep.Fail = fmt.Sprintf("%s: %v", where, err)
	}
	return rep
}

// hostRequest runs a request on the helper's namespace rather than on a
// socket: setup, topology, reading NAT and the host, sysctl. ok is false
// for any other request.
func hostRequest(req request) (rep reply, ok bool) {
	var err error
	switch req.Op {
	case "setup":
		err = setupNamespace(req.Addrs)
	case "topo":
		err = configureHost(req.Topo)
	case "topo-wait":
		via := ""
		if req.Topo != nil {
			via = req.Topo.Via
		}
		err = waitTopology(via)
	case "nat":
		rep.NAT, err = readNAT()
	case "host":
		rep.Sysctls = readSysctls()
		if req.All {
			rep.Addrs, err = hostAddrs()
		} else {
			rep.Addrs, err = loopbackAddrs()
		}
	case "sysctl":
		if err := writeSysctl(req.Key, req.Value); err != nil {
			return failReply("sysctl", err), true
		}
		return rep, true
	default:
		return rep, false
	}
	if err != nil {
		rep.Fail = err.Error()
	}
	return rep, true
}

// newSockRequest makes a socket the helper holds (socket; take, a
// descriptor another helper passed), or asks the route for the source
// address towards req.Addr (source).
func (h *helper) newSockRequest(req request, fds []int) reply {
	var rep reply
	switch req.Op {
	case "socket":
		if old, ok := h.socks[req.Sock]; ok { // a name reused after close
			h.drop(req.Sock, old)
		}
		fd, err := newSocket(req.Proto, req.Opts)
		if err != nil {
			return failReply("socket", err)
		}
		h.socks[req.Sock] = &helperSock{fd: fd, proto: req.Proto}
		rep.Sock = readSockState(fd, req.Proto)
	case "source":
		src, err := routeSource(req.Proto, req.Addr)
		if err != nil {
			return failReply("source", err)
		}
		rep.Sock = &sockState{Local: src}
	case "take":
		if len(fds) != 1 {
			closeFDs(fds)
			rep.Fail = fmt.Sprintf("take %s: got %d descriptors", req.Sock, len(fds))
			return rep
		}
		h.socks[req.Sock] = &helperSock{fd: fds[0], proto: req.Proto}
		rep.Sock = readSockState(fds[0], req.Proto)
	}
	return rep
}

// sockRequest runs an operation on a socket the helper holds. It returns
// the reply with the socket's state after it, and the descriptor to send
// (give) or -1.
func (h *helper) sockRequest(s *helperSock, req request) (reply, int) {
	var rep reply
	wait := time.Duration(req.Wait) * time.Millisecond
	var err error
	switch req.Op {
	case "bind":
		err = bindTo(s.fd, req.Addr)
	case "listen":
		err = unix.Listen(s.fd, 128)
	case "connect":
		err = connectTo(s.fd, req.Addr, wait)
	case "serve":
		err = h.serve(s)
	case "accept":
		name, child, aerr := h.accept(s, req.Addr, wait)
		if aerr != nil {
			rep.Fail = aerr.Error()
			return rep, -1
		}
		rep.Where, rep.Sock = name, child
		return rep, -1
	case "state":
		if werr := waitTCPState(s.fd, req.State, wait); werr != nil {
			rep.Fail = werr.Error()
			return rep, -1
		}
	case "give":
		delete(h.socks, req.Sock) // the runner passes it on; this copy closes after sending
		if s.stop != nil {
			s.stop.Close()
		}
		return rep, s.fd
	case "close":
		closed, tw, cerr := closeAndWatch(s, req.Expect, wait)
		rep.TWSec, rep.TWEarliestSec, rep.TWLatestSec = tw.sec, tw.earliest, tw.latest
		if cerr != nil {
			rep.Fail = fmt.Sprintf("close %s: %v", req.Sock, cerr)
		}
		rep.Closed = closed
		s.fd = -1
		delete(h.socks, req.Sock)
		if s.stop != nil {
			s.stop.Close()
		}
		return rep, -1
	default:
		rep.Fail = "unknown request " + req.Op
		return rep, -1
	}
	if err != nil {
		rep = failReply(req.Op, err)
	}
	rep.Sock = readSockState(s.fd, s.proto)
	return rep, -1
}

func newSocket(proto Proto, o Options) (int, error) {
	family, typ := unix.AF_INET, unix.SOCK_STREAM
	if proto.IsIPv6() {
		family = unix.AF_INET6
	}
	if !proto.IsTCP() {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	so := sockopt.Options{
		ReuseAddr: o.ReuseAddr, ReusePort: o.ReusePort, BindAddressNoPort: o.BindNoPort,
		PortRange: o.PortRange, Freebind: o.Freebind, Device: o.Dev,
	}
	if o.V6Only {
		so.V6Only = sockopt.V6OnlyOn
	}
	if err := so.Apply(uintptr(fd), proto.IsIPv6()); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// routeSource asks the kernel which local address a connection to peer
// would get, by connecting a UDP socket of proto's family (which sends
// nothing): the same route lookup TCP's connect() does.
func routeSource(proto Proto, peer string) (string, error) {
	sa, err := parseSockaddr(peer)
	if err != nil {
		return "", err
	}
	family := unix.AF_INET
	if proto.IsIPv6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); err != nil {
		return "", os.NewSyscallError("connect", err)
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		return "", os.NewSyscallError("getsockname", err)
	}
	ap, err := netip.ParseAddrPort(addrString(local))
	if err != nil {
		return "", err
	}
	return ap.Addr().String(), nil
}

func parseSockaddr(s string) (unix.Sockaddr, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return sockaddr.From(ap), nil
}

func bindTo(fd int, addr string) error {
	sa, err := parseSockaddr(addr)
	if err != nil {
		return err
	}
	return os.NewSyscallError("bind", unix.Bind(fd, sa))
}

// connectTo is a blocking connect, as programs do it, bounded by wait
// through SO_SNDTIMEO (a timeout leaves EINPROGRESS, as the kernel says).
// Blocking matters: after a refused blocking connect the socket may
// connect again, after a refused non-blocking one the next connect says
// ECONNABORTED.
func connectTo(fd int, addr string, wait time.Duration) (err error) {
	sa, err := parseSockaddr(addr)
	if err != nil {
		return err
	}
	tv := unix.NsecToTimeval(wait.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	defer func() { // later sends on the socket must not time out
		if rerr := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{}); rerr != nil && err == nil {
			err = os.NewSyscallError("setsockopt", rerr)
		}
	}()
	err = unix.Connect(fd, sa)
	if err != unix.EINTR {
		return os.NewSyscallError("connect", err)
	}
	// A signal interrupted the wait; the handshake goes on: wait for it.
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	deadline := time.Now().Add(wait)
	for {
		n, err := unix.Poll(pfd, int(time.Until(deadline).Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		if n == 0 {
			return os.NewSyscallError("connect", unix.EINPROGRESS)
		}
		break
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if soerr != 0 {
		return os.NewSyscallError("connect", syscall.Errno(soerr))
	}
	return nil
}

// serve makes a listening TCP socket a server, whose connections the
// runner accepts one by one as each connect completes (accept), or starts
// discarding what a UDP socket gets. Go's poller works on a duplicate of
// the UDP descriptor, so closing it ends the loop cleanly.
func (h *helper) serve(s *helperSock) error {
	if s.proto.IsTCP() {
		s.server = true
		return nil
	}
	dup, err := unix.Dup(s.fd)
	if err != nil {
		return os.NewSyscallError("dup", err)
	}
	f := os.NewFile(uintptr(dup), "server")
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return err
	}
	s.stop = pc
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return nil
}

// accept takes the connection from peer off the accept queue of server l
// or of another server of this helper on l's port (a reuseport group hands
// a connection to any member), waiting at most wait for the handshake's
// last ACK to create it. Connections from other peers met on the way are
// accepted too, as a server would. It returns the server that accepted and
// the child's state. Each child is read until its peer closes, then closed.
func (h *helper) accept(l *helperSock, peer string, wait time.Duration) (string, *sockState, error) {
	// No peer: the next connection, whoever it is from (a NAT router
	// rewrote its source).
	var want netip.AddrPort
	if peer != "" {
		var err error
		if want, err = netip.ParseAddrPort(peer); err != nil {
			return "", nil, err
		}
	}
	lport := localPort(l.fd)
	var names []string
	var pfds []unix.PollFd
	for name, s := range h.socks {
		if s.server && localPort(s.fd) == lport {
			names = append(names, name)
			pfds = append(pfds, unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN})
		}
	}
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return "", nil, fmt.Errorf("no connection from %s reached the accept queue of a server on port %d within %v", want, lport, wait)
		}
		n, err := unix.Poll(pfds, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", nil, os.NewSyscallError("poll", err)
		}
		for i := 0; n > 0 && i < len(pfds); i++ {
			if pfds[i].Revents&unix.POLLIN == 0 {
				continue
			}
			cfd, sa, err := unix.Accept4(int(pfds[i].Fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			if err == unix.EAGAIN {
				continue
			}
			if err != nil {
				return "", nil, os.NewSyscallError("accept", err)
			}
			st := readSockState(cfd, l.proto)
			if err := h.keep(cfd); err != nil {
				return "", nil, err
			}
			got, _ := netip.ParseAddrPort(addrString(sa))
			if !want.IsValid() || unmapPort(got) == unmapPort(want) {
				return names[i], st, nil
			}
		}
	}
}

// keep reads an accepted connection until its peer closes, then closes it.
func (h *helper) keep(fd int) error {
	f := os.NewFile(uintptr(fd), "child")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.children[c] = true
	h.mu.Unlock()
	go func() {
		_, _ = io.Copy(io.Discard, c) // until the child closes its end; how it ended does not matter
		h.mu.Lock()
		delete(h.children, c)
		h.mu.Unlock()
		c.Close()
	}()
	return nil
}

func localPort(fd int) uint16 {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	ap, _ := netip.ParseAddrPort(addrString(sa))
	return ap.Port()
}

// closeAndWatch closes a socket. For a connected TCP socket it then waits
// (at most wait) until its four-tuple is in the state the runner says the
// close implies: TIME_WAIT when the peer closes in turn (a server's
// connection, or the socket itself), FIN_WAIT2 when the peer never reads
// (a connection no process accepted), gone when it closed first. A state
// not reached in time is an error naming the state last seen, never a
// silent answer. It returns the state reached ("" for gone or unwatched).
//
// For a TIME_WAIT it also returns the entry's second on the monotonic
// clock (twDating) and the kernel's coarse clock's second before the
// close (coarseSec), the earliest the kernel can have stamped the entry
// with: the stamp is the peer's last segment, which comes after the close;
// and, when the entry's bounds lie in two seconds, the later one, the
// latest it can have been stamped with.
func closeAndWatch(s *helperSock, expect string, wait time.Duration) (closed string, tw twSeconds, err error) {
	st := readSockState(s.fd, s.proto)
	if !s.proto.IsTCP() || st.Remote == "" || expect == "" {
		unix.Close(s.fd)
		return "", twSeconds{}, nil
	}
	local, err1 := netip.ParseAddrPort(st.Local)
	remote, err2 := netip.ParseAddrPort(st.Remote)
	if err1 != nil || err2 != nil {
		unix.Close(s.fd)
		return "", twSeconds{}, fmt.Errorf("bad socket addresses %q, %q", st.Local, st.Remote)
	}
	earliest := coarseSec()
	deadline := time.Now().Add(wait)
	var entry twDating
	if expect == "TIME_WAIT" && st.TCPState == tcpEstablished {
		// Half-close first and wait for the peer's FIN on the descriptor:
		// the FIN that moves the socket to TIME_WAIT also wakes poll.
		// That FIN (the peer's last timestamp) and the entry into
		// TIME_WAIT come after the shutdown and before the state is seen.
		before := monoNanos()
		if err := unix.Shutdown(s.fd, unix.SHUT_WR); err != nil {
			unix.Close(s.fd)
			return "", twSeconds{}, os.NewSyscallError("shutdown", err)
		}
		err := waitPeerFIN(s.fd, deadline)
		if err == nil {
			err = waitTCPState(s.fd, tcpClose, time.Until(deadline))
		}
		entry.within(before, monoNanos())
		if err != nil {
			seen := "?"
			if info, ierr := unix.GetsockoptTCPInfo(s.fd, unix.SOL_TCP, unix.TCP_INFO); ierr == nil {
				seen = tcpStateNames[int(info.State)]
			}
			unix.Close(s.fd)
			return "", twSeconds{}, fmt.Errorf("%s -> %s did not reach TIME_WAIT within %v (last seen: %s): %w", local, remote, wait, seen, err)
		}
	}
	unix.Close(s.fd)
	// The socket table, filtered by port in the kernel, shows what became
	// of the four-tuple once no descriptor can tell.
	q := socktab.Query{TCP: true, LocalPort: local.Port(), RemotePort: remote.Port()}
	last, lastErr := "(not read)", error(nil)
	looks := 0
	err = pollUntil(deadline, func() bool {
		before := monoNanos()
		t, err := socktab.Snapshot(context.Background(), q)
		if err != nil {
			lastErr = err
			return false
		}
		after := monoNanos()
		last = ""
		for _, e := range t.Sockets {
			if e.Local == local && e.Remote == remote {
				last = tcpStateNames[int(e.State)]
				if last == "TIME_WAIT" && e.TimeLeft > 0 {
					entry.timer(before, after, e.TimeLeft)
				}
			}
		}
		if last == "TIME_WAIT" && expect == "TIME_WAIT" && entry.straddles() && looks < 8 {
			looks++ // another look narrows the entry's second
			return false
		}
		return last == expect || expect == "gone" && last == ""
	}, func() error {
		seen := last
		if seen == "" {
			seen = "gone"
		}
		msg := fmt.Sprintf("%s -> %s did not reach %s within %v (last seen: %s)", local, remote, expect, wait, seen)
		if lastErr != nil {
			msg += fmt.Sprintf("; socket table: %v", lastErr)
		}
		return errors.New(msg)
	})
	return last, twSeconds{sec: entry.second(), earliest: earliest, latest: entry.latest()}, err
}

// twSeconds dates a TIME_WAIT entry for the runner (reply's TWSec,
// TWEarliestSec and TWLatestSec).
type twSeconds struct{ sec, earliest, latest int64 }

// twDating dates a socket's entry into TIME_WAIT (and its peer's last
// timestamp, which comes with it) on the monotonic clock, for the rules of
// kernels before 6.13 that compare whole seconds
// (rules.Socket.TWSecondTicked): each observation bounds the entry, and
// the bounds meet. A single reading taken after the socket table answered
// dated it late by the table's latency, tens of milliseconds in a loaded
// TCG guest, enough to put it in the next second now and then.
type twDating struct {
	lo, hi int64 // nanoseconds; hi == 0: nothing known
}

// jiffyMargin covers the jiffy the timer was armed and read at (4 ms at
// Debian's HZ=250) and the millisecond the time left is given in.
const jiffyMargin = int64(12 * time.Millisecond)

// within bounds the entry between two readings of the clock.
func (d *twDating) within(lo, hi int64) {
	if lo <= 0 || hi <= 0 {
		return
	}
	if d.hi == 0 {
		d.lo, d.hi = lo, hi
		return
	}
	d.lo, d.hi = max(d.lo, lo), min(d.hi, hi)
}

// timer bounds the entry by the TIME_WAIT timer, armed for
// TCP_TIMEWAIT_LEN (60 s) on entry and read as left between the clock
// readings before and after.
func (d *twDating) timer(before, after int64, left time.Duration) {
	if before <= 0 || after <= 0 {
		return
	}
	armed := int64(left) - int64(60*time.Second)
	d.within(before+armed-jiffyMargin, after+armed+jiffyMargin)
}

// straddles reports whether the entry is known and its bounds lie in two
// seconds.
func (d *twDating) straddles() bool {
	return d.hi != 0 && d.lo/int64(time.Second) != d.hi/int64(time.Second)
}

// second is the monotonic clock's second of the entry: its bounds' when
// they agree, else the middle's (0 when nothing is known).
func (d *twDating) second() int64 {
	if d.hi == 0 {
		return 0
	}
	if d.lo > d.hi { // bounds that do not meet: the timer reading is off
		return d.hi / int64(time.Second)
	}
	return (d.lo + (d.hi-d.lo)/2) / int64(time.Second)
}

// latest is the second of the entry's upper bound when its bounds meet
// and lie in two seconds, so that the kernel may have stamped it a second
// after second's (0 otherwise).
func (d *twDating) latest() int64 {
	if d.hi == 0 || d.lo > d.hi || !d.straddles() {
		return 0
	}
	return d.hi / int64(time.Second)
}

// pollUntil checks cond until it holds or deadline passes, backing off
// from 100µs to 5ms between checks; it returns failed() at the deadline.
// It waits for a kernel state no event reports, and never stands in for
// one that does.
func pollUntil(deadline time.Time, cond func() bool, failed func() error) error {
	pause := 100 * time.Microsecond
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return failed()
		}
		time.Sleep(pause)
		pause = min(2*pause, 5*time.Millisecond)
	}
}

// waitPeerFIN waits on fd for the peer's FIN (end of input).
func waitPeerFIN(fd int, deadline time.Time) error {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return errors.New("the peer did not close its side")
		}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		if n > 0 {
			return nil
		}
	}
}

// waitTCPState waits until fd's TCP state (TCP_INFO) is state.
func waitTCPState(fd, state int, wait time.Duration) error {
	last := -1
	return pollUntil(time.Now().Add(wait), func() bool {
		info, err := unix.GetsockoptTCPInfo(fd, unix.SOL_TCP, unix.TCP_INFO)
		if err != nil {
			return false
		}
		last = int(info.State)
		return last == state
	}, func() error {
		return fmt.Errorf("the socket did not reach %s within %v (last seen: %s)", tcpStateNames[state], wait, tcpStateNames[last])
	})
}

// readSockState asks the kernel about fd: addresses, TCP state, options.
func readSockState(fd int, proto Proto) *sockState {
	st := &sockState{}
	if sa, err := unix.Getsockname(fd); err == nil {
		st.Local = addrString(sa)
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		st.Remote = addrString(sa)
	}
	if proto.IsTCP() {
		if info, err := unix.GetsockoptTCPInfo(fd, unix.SOL_TCP, unix.TCP_INFO); err == nil {
			st.TCPState = int(info.State)
		}
	}
	opts := sockopt.Read(uintptr(fd), proto.IsIPv6())
	st.ReuseAddr = opts[sockopt.ReuseAddr].On
	st.ReusePort = opts[sockopt.ReusePort].On
	st.V6Only = opts[sockopt.V6Only].On
	st.NoPort = opts[sockopt.BindAddressNoPort].On
	st.Freebind = opts[sockopt.Freebind].On
	if r := uint32(opts[sockopt.LocalPortRange].Int); r != 0 {
		st.RangeLo, st.RangeHi = uint16(r), uint16(r>>16)
	}
	if dev, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX); err == nil {
		st.Dev = dev
	}
	// The kernel sets sk_uid from the socket inode's owner, the creator's
	// fsuid; fstat reads it back.
	var stat unix.Stat_t
	if unix.Fstat(fd, &stat) == nil {
		st.UID = stat.Uid
	}
	return st
}

func addrString(sa unix.Sockaddr) string {
	if ap := sockaddr.AddrPort(sa); ap.IsValid() {
		return ap.String()
	}
	return ""
}

// hostSysctls are the namespace settings the rules model needs.
var hostSysctls = []string{
	"net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
	"net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_nonlocal_bind",
	"net.ipv6.ip_nonlocal_bind", "net.ipv6.bindv6only", "net.ipv4.ip_autobind_reuse",
	"net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay", "net.ipv4.tcp_timestamps",
	"net.ipv4.udp_hash_entries",
}

func sysctlPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

func readSysctls() map[string]string {
	out := map[string]string{}
	for _, k := range hostSysctls {
		if b, err := os.ReadFile(sysctlPath(k)); err == nil {
			out[k] = strings.TrimSpace(string(b))
		}
	}
	return out
}

func writeSysctl(key, value string) error {
	if !sysctlRE().MatchString(key) { // the parser checked; this guards the protocol
		return fmt.Errorf("sysctl %q: only net.* keys", key)
	}
	f, err := os.OpenFile(sysctlPath(key), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
