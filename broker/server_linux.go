package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/internal/unixsock"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
	"github.com/tuple-net/tuple/socktab"
)

// ListenUnix creates the broker's socket file at path with the mode and
// owner sf asks for. A stale file left by a broker that died is replaced; a
// live broker's is not, nor is anything at path that is not a socket.
func ListenUnix(path string, sf SocketFile) (*net.UnixListener, error) {
	ln, err := unixsock.Listen("unixpacket", path)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen unixpacket %s: another broker is serving it", path)
	}
	if err != nil {
		return nil, err
	}
	if err := ApplySocketFile(path, sf); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// SocketFileIDs are the uid and gid the policy's socket file is to have,
// -1 for either it leaves as created; an owner or group this host does not
// know is an error.
func SocketFileIDs(sf SocketFile) (uid, gid int, err error) {
	uid, gid = -1, -1
	if sf.Owner != "" {
		if uid, err = lookupID(sf.Owner, true); err != nil {
			return -1, -1, err
		}
	}
	if sf.Group != "" {
		if gid, err = lookupID(sf.Group, false); err != nil {
			return -1, -1, err
		}
	}
	return uid, gid, nil
}

// ApplySocketFile sets the socket file's owner, group and mode from the
// policy (on start and on reload).
func ApplySocketFile(path string, sf SocketFile) error {
	uid, gid, err := SocketFileIDs(sf)
	if err != nil {
		return err
	}
	if uid != -1 || gid != -1 {
		if err := os.Lchown(path, uid, gid); err != nil {
			return err
		}
	}
	mode := sf.Mode
	if mode == 0 {
		mode = DefaultSocketMode
	}
	return os.Chmod(path, mode)
}

// Serve accepts clients on ln until ctx ends, then closes ln and waits for
// the connections it is serving.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go s.sweepLoop(ctx, done)
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var active sync.WaitGroup
	defer active.Wait()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors and the like: wait for clients to
			// leave rather than spin.
			s.cfg.Audit.Error("accept", "decision", "error", "reason", err.Error())
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		full := s.conns >= s.cfg.MaxConns
		if !full {
			s.conns++
		}
		s.mu.Unlock()
		if full {
			s.cfg.Audit.Warn("connection", "decision", "deny", "reason", fmt.Sprintf("busy: %d connections open", s.cfg.MaxConns))
			c.Close()
			continue
		}
		active.Add(1)
		go func() {
			defer active.Done()
			defer func() {
				s.mu.Lock()
				s.conns--
				s.mu.Unlock()
			}()
			stop := context.AfterFunc(connCtx, func() { c.Close() })
			defer stop()
			s.serveConn(connCtx, c)
		}()
	}
}

func (s *Server) sweepLoop(ctx context.Context, done chan struct{}) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
			s.sweep(ctx, nil)
		}
	}
}

// maxStrikes is how many bad messages a connection may send before the
// broker hangs up.
const maxStrikes = 3

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	defer s.contain(c, "connection handler")
	peer, err := s.readPeer(c)
	if err != nil {
		s.cfg.Audit.Error("connection", "decision", "error", "reason", "peer credentials: "+err.Error())
		return
	}
	s.mu.Lock()
	over := s.connsUID[peer.UID] >= s.cfg.MaxConnsPerUID
	if !over {
		s.connsUID[peer.UID]++
	}
	s.mu.Unlock()
	if over {
		s.deny(c, peer, nil, fmt.Sprintf("too many connections: uid %d has %d open", peer.UID, s.cfg.MaxConnsPerUID), false)
		return
	}
	defer func() {
		s.mu.Lock()
		if s.connsUID[peer.UID]--; s.connsUID[peer.UID] <= 0 {
			delete(s.connsUID, peer.UID)
		}
		s.mu.Unlock()
	}()

	buf := make([]byte, MaxRequest)
	oob := make([]byte, unix.CmsgSpace(8*4))
	strikes := 0
	for strikes < maxStrikes {
		if err := c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout)); err != nil {
			return // closed
		}
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		forged := closeRights(oob[:oobn])
		if err != nil || (n == 0 && oobn == 0) {
			return // gone, idle or closed
		}
		switch {
		case flags&unix.MSG_TRUNC != 0:
			s.deny(c, peer, nil, fmt.Sprintf("bad request: longer than %d bytes", MaxRequest), false)
			return
		case forged || flags&unix.MSG_CTRUNC != 0:
			s.deny(c, peer, nil, "bad request: carried ancillary data (descriptors are only sent by the broker)", false)
			strikes++
			continue
		}
		req, err := ParseRequest(buf[:n])
		if err != nil {
			s.deny(c, peer, nil, "bad request: "+err.Error(), false)
			strikes++
			continue
		}
		switch req.Op {
		case OpList:
			s.list(ctx, c, peer)
		case OpSocket:
			s.grant(ctx, c, peer, req)
		}
	}
	s.cfg.Audit.Warn("connection", "decision", "deny", slog.Group("peer", "pid", peer.PID, "uid", peer.UID, "gid", peer.GID),
		"reason", fmt.Sprintf("closed after %d bad requests", maxStrikes))
}

// closeRights closes every descriptor a client sent; it reports whether
// there was any ancillary data at all.
func closeRights(oob []byte) bool {
	if len(oob) == 0 {
		return false
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return true
	}
	for _, m := range msgs {
		if fds, err := unix.ParseUnixRights(&m); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
	return true
}

// readPeer asks the kernel who is on the other end.
func (s *Server) readPeer(c *net.UnixConn) (Peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var peer Peer
	var cerr error
	pidfd := -1
	wantCgroup := s.policyUsesCgroups()
	err = rc.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			cerr = os.NewSyscallError("getsockopt SO_PEERCRED", err)
			return
		}
		peer = Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
		peer.Groups, cerr = peerGroups(int(fd))
		if wantCgroup {
			if n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
				pidfd = n
			}
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return Peer{}, err
	}
	if pidfd >= 0 {
		// The pidfd pins the process: read its cgroup, then make sure it
		// is still alive, so a recycled pid cannot lend its cgroup.
		b, rerr := os.ReadFile(fmt.Sprintf("%s/%d/cgroup", s.cfg.ProcRoot, peer.PID))
		alive := unix.PidfdSendSignal(pidfd, 0, nil, 0) == nil
		unix.Close(pidfd)
		if rerr == nil && alive {
			peer.Cgroup = ParseCgroup(b)
		}
	}
	return peer, nil
}

func (s *Server) policyUsesCgroups() bool {
	p := s.Policy()
	for i := range p.Grants {
		if len(p.Grants[i].Cgroups) > 0 {
			return true
		}
	}
	return false
}

// peerGroups reads SO_PEERGROUPS: the peer's supplementary groups when it
// connected.
func peerGroups(fd int) ([]uint32, error) {
	n := 64
	for range 3 {
		buf := make([]uint32, n)
		size := uint32(len(buf) * 4)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch e {
		case 0:
			return buf[:size/4], nil
		case unix.ERANGE:
			n = int(size/4) + 1
			continue
		default:
			return nil, os.NewSyscallError("getsockopt SO_PEERGROUPS", e)
		}
	}
	return nil, errors.New("getsockopt SO_PEERGROUPS: group list keeps growing")
}

// deny answers a refused request and records it.
func (s *Server) deny(c *net.UnixConn, peer Peer, r *Request, reason string, quota bool) {
	s.mu.Lock()
	st := s.statsLocked(peer.UID)
	st.Denied++
	if quota {
		st.QuotaDenied++
	}
	s.mu.Unlock()
	s.audit(slog.LevelWarn, peer, r, "deny", reason)
	s.answer(c, peer, r, Response{Error: reason})
}

func (s *Server) audit(level slog.Level, peer Peer, r *Request, decision, reason string, attrs ...any) {
	req := slog.String("request", "invalid")
	if r != nil {
		req = slog.Group("request", "op", r.Op, "proto", r.Proto.String(), "address", r.Address.String(),
			"port", r.Port, "listen", r.Listen, "options", r.Options, "group", r.Group)
	}
	args := append([]any{slog.Group("peer", "pid", peer.PID, "uid", peer.UID, "gid", peer.GID), req,
		"decision", decision, "reason", reason}, attrs...)
	s.cfg.Audit.Log(context.Background(), level, "request", args...)
}

// reply sends one response, with fd attached when fd >= 0.
func (s *Server) reply(c *net.UnixConn, resp Response, fd int) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	// A client that stops reading must not hold the broker up.
	if err := c.SetWriteDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// answer sends a response without a descriptor. A client gone by then never
// saw the decision, so the failure goes to the audit log beside it.
func (s *Server) answer(c *net.UnixConn, peer Peer, r *Request, resp Response) {
	if err := s.reply(c, resp, -1); err != nil {
		s.audit(slog.LevelWarn, peer, r, "unanswered", "reply failed: "+err.Error())
	}
}

func (s *Server) list(ctx context.Context, c *net.UnixConn, peer Peer) {
	all := s.Live(ctx)
	mine := all[:0]
	seeAll := peer.UID == 0 || peer.UID == uint32(os.Geteuid())
	for _, g := range all {
		if seeAll || g.UID == peer.UID {
			mine = append(mine, g)
		}
	}
	// The answer must fit one message; the oldest grants come first.
	resp := Response{OK: true, Grants: mine}
	for {
		b, _ := json.Marshal(resp)
		if len(b) <= maxResponse || len(resp.Grants) == 0 {
			break
		}
		resp.Grants = resp.Grants[:len(resp.Grants)/2]
	}
	s.audit(slog.LevelInfo, peer, &Request{Op: OpList}, "list", fmt.Sprintf("%d live grants shown", len(resp.Grants)))
	s.answer(c, peer, &Request{Op: OpList}, resp)
}

// grant decides a socket request and, when allowed, makes the socket and
// hands it over.
func (s *Server) grant(ctx context.Context, c *net.UnixConn, peer Peer, r *Request) {
	var skip map[int]bool
	var full *Grant // the last grant that allowed any port but had none free
	var fullErr error
	for {
		d, e := s.decideAndReserve(peer, r, skip)
		if !d.Allowed && d.Quota {
			// Sockets may have been closed since the last sweep: check
			// with the kernel before refusing.
			s.sweepForQuota(ctx)
			d, e = s.decideAndReserve(peer, r, skip)
		}
		if !d.Allowed && !d.Quota && full != nil {
			// The policy allowed it; the ports are what ran out (a
			// quota reached under another grant says more).
			s.fail(c, peer, r, nil, "allowed by "+full.String()+", but no port of it is free: "+errText(fullErr))
			return
		}
		if !d.Allowed {
			s.deny(c, peer, r, d.Reason, d.Quota)
			return
		}
		fd, local, inode, err := openSocket(r, d.Grant, peer.UID)
		if err != nil && r.Port == 0 && errors.Is(err, syscall.EADDRINUSE) {
			// Any port was asked for and this grant has none free:
			// try the next grant that allows the request.
			s.mu.Lock()
			s.dropLocked(e)
			s.mu.Unlock()
			if skip == nil {
				skip = map[int]bool{}
			}
			skip[d.Grant.Index] = true
			full, fullErr = d.Grant, err
			continue
		}
		if err != nil {
			s.fail(c, peer, r, e, "allowed by "+d.Grant.String()+", but "+errText(err))
			return
		}
		s.handOver(c, peer, r, d, e, fd, local, inode)
		return
	}
}

// handOver sends the socket and records the grant.
func (s *Server) handOver(c *net.UnixConn, peer Peer, r *Request, d Decision, e *liveEntry, fd int, local netip.AddrPort, inode uint64) {
	defer unix.Close(fd)
	resp := Response{OK: true, ID: e.ID, Local: local, Grant: d.Grant.Index, Group: d.Grant.Group}
	// Record first, so a sweep running during the hand-over sees the inode.
	s.mu.Lock()
	e.Local, e.Inode, e.Since, e.pending = local, inode, time.Now(), false
	s.mu.Unlock()
	if err := s.reply(c, resp, fd); err != nil {
		s.mu.Lock()
		s.dropLocked(e)
		s.mu.Unlock()
		s.fail(c, peer, r, nil, "allowed by "+d.Grant.String()+", but the hand-over failed: "+err.Error())
		return
	}
	s.mu.Lock()
	s.statsLocked(peer.UID).Granted++
	s.mu.Unlock()
	s.audit(slog.LevelInfo, peer, r, "grant", d.Reason, "id", e.ID, "local", local.String(), "inode", inode)
}

// decideAndReserve applies the policy and, when it allows, reserves the
// socket in the quota counts in the same critical section.
func (s *Server) decideAndReserve(peer Peer, r *Request, skip map[int]bool) (Decision, *liveEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.policy.DecideExcept(peer, r, usage{s}, skip)
	if !d.Allowed {
		return d, nil
	}
	return d, s.reserve(peer, r, d.Grant)
}

// errText is err with its errno's name, as the rest of tuple words one
// ("bind: address already in use (EADDRINUSE)").
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return err.Error() + " (" + rules.ErrnoName(errno) + ")"
	}
	return err.Error()
}

// fail answers an allowed request that could not be served.
func (s *Server) fail(c *net.UnixConn, peer Peer, r *Request, e *liveEntry, reason string) {
	s.mu.Lock()
	if e != nil {
		s.dropLocked(e)
	}
	s.statsLocked(peer.UID).Failed++
	s.mu.Unlock()
	s.audit(slog.LevelError, peer, r, "error", reason)
	s.answer(c, peer, r, Response{Error: reason})
}

// openSocket makes the socket a request asks for under grant g. A socket
// in a reuseport group is created with the broker's own uid, so members
// handed to different uids share the group; any other socket is created
// with the grantee's uid (setfsuid), so its SO_REUSEPORT shares only with
// the grantee's own sockets, as if the grantee had made it.
func openSocket(r *Request, g *Grant, grantee uint32) (fd int, local netip.AddrPort, inode uint64, err error) {
	family := unix.AF_INET
	if r.Address.Is6() {
		family = unix.AF_INET6
	}
	typ := unix.SOCK_STREAM
	if r.Proto == inet.UDP {
		typ = unix.SOCK_DGRAM
	}
	owner := -1 // the broker's own
	if g.Group == "" {
		owner = int(grantee)
	}
	fd, err = socketAs(family, typ|unix.SOCK_CLOEXEC, owner)
	if err != nil {
		return -1, local, 0, err
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
			fd = -1
		}
	}()
	o := sockopt.Options{
		ReusePort: r.opts.ReusePort || g.Group != "",
		ReuseAddr: r.opts.ReuseAddr || r.Listen, // as Go's net.Listen does
		Device:    g.Device,
	}
	if family == unix.AF_INET6 {
		o.V6Only = sockopt.V6OnlyOff // dual stack on "::", as Go's net.Listen does
		if r.opts.V6Only {
			o.V6Only = sockopt.V6OnlyOn
		}
	}
	if err = o.Apply(uintptr(fd), family == unix.AF_INET6); err != nil {
		return -1, local, 0, err
	}
	if err = bindInGrant(fd, r, g); err != nil {
		return -1, local, 0, err
	}
	if r.Listen {
		backlog := r.Backlog
		if backlog == 0 {
			backlog = maxBacklog
		}
		if err = unix.Listen(fd, backlog); err != nil {
			return -1, local, 0, os.NewSyscallError("listen", err)
		}
	}
	var st unix.Stat_t
	if err = unix.Fstat(fd, &st); err != nil {
		return -1, local, 0, os.NewSyscallError("fstat", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return -1, local, 0, os.NewSyscallError("getsockname", err)
	}
	ap := sockaddr.AddrPort(sa)
	return fd, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), st.Ino, nil
}

// socketAs calls socket() with the file-system uid set to owner (-1: the
// broker's own) on a thread of its own; the kernel takes a socket's owner,
// which SO_REUSEPORT compares, from the creator's fsuid.
func socketAs(family, typ, owner int) (int, error) {
	if owner < 0 || owner == os.Geteuid() {
		fd, err := unix.Socket(family, typ, 0)
		return fd, os.NewSyscallError("socket", err)
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		prev, _ := unix.SetfsuidRetUid(owner)
		if now, _ := unix.SetfsuidRetUid(-1); now != owner {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("cannot create a socket owned by uid %d (setfsuid needs CAP_SETUID)", owner)}
			return
		}
		fd, err := unix.Socket(family, typ, 0)
		_, _ = unix.SetfsuidRetUid(prev) // it reports the old fsuid, never an error: read back below
		if now, _ := unix.SetfsuidRetUid(-1); now == prev {
			// Only a thread whose fsuid is restored goes back to
			// the runtime; otherwise it dies with this goroutine.
			runtime.UnlockOSThread()
		}
		ch <- result{fd, os.NewSyscallError("socket", err)}
	}()
	res := <-ch
	return res.fd, res.err
}

// bindInGrant binds the requested port, or with port 0 the first free port
// of the grant's range from a random start.
func bindInGrant(fd int, r *Request, g *Grant) error {
	if r.Port != 0 {
		return bind(fd, netip.AddrPortFrom(r.Address, r.Port))
	}
	n := int(g.Ports.Hi) - int(g.Ports.Lo) + 1
	start := rand.IntN(n)
	for i := range n {
		port := g.Ports.Lo + uint16((start+i)%n)
		err := bind(fd, netip.AddrPortFrom(r.Address, port))
		if !errors.Is(err, syscall.EADDRINUSE) {
			return err
		}
	}
	return fmt.Errorf("bind: every port of %s %s %s is in use: %w", r.Proto, r.Address, g.PortsText(), syscall.EADDRINUSE)
}

func bind(fd int, ap netip.AddrPort) error {
	if err := unix.Bind(fd, sockaddr.From(ap)); err != nil {
		return fmt.Errorf("bind %s: %w", ap, os.NewSyscallError("bind", err))
	}
	return nil
}

// heldInodes asks the kernel (sock_diag) which of the grants' sockets still
// exist: a socket's inode disappears from the table when the last
// descriptor of it is closed (a closed connection lingers only as an
// orphan or TIME_WAIT, without an inode).
func heldInodes(ctx context.Context, gs []LiveGrant) (map[uint64]bool, error) {
	type pp struct {
		proto  inet.Proto
		port   uint16
		listen bool
	}
	want := map[pp]bool{}
	for _, g := range gs {
		want[pp{g.Proto, g.Local.Port(), g.Listen}] = true
	}
	var queries []socktab.Query
	if len(want) <= 8 {
		for k := range want {
			q := socktab.Query{TCP: k.proto == inet.TCP, UDP: k.proto == inet.UDP, LocalPort: k.port}
			if k.listen {
				// A listener stays a listener: asking for that state
				// spares the kernel the walk of every connection on
				// the host (the established hash is shared by all
				// namespaces).
				q.States = socktab.States(socktab.Listen)
			}
			queries = append(queries, q)
		}
	} else {
		queries = []socktab.Query{{}}
	}
	held := map[uint64]bool{}
	for _, q := range queries {
		t, err := socktab.Snapshot(ctx, q)
		if err != nil {
			return nil, err
		}
		if t.Source != "netlink" {
			return nil, fmt.Errorf("socket table from %s, not sock_diag", t.Source)
		}
		for _, sk := range t.Sockets {
			if sk.Inode != 0 {
				held[sk.Inode] = true
			}
		}
	}
	return held, nil
}
