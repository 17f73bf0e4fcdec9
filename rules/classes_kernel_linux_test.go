//go:build linux

package rules

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/sockaddr"
	"golang.org/x/sys/unix"
)

// The rule classes the model learnt from the lab's misses, each generated
// as its own random situation inside TestKernelDifferential's batches
// (classCase), plus the no-IPv6-source class in a namespace of its own
// (noSourceCases). Each situation is checked against the kernel like every
// other case; the counts per class are logged and required.
var classNames = []string{"connect-wildcard", "self-connect", "link-local", "listener-close", "timewait-device", "udp-dual-stack"}

// classStats counts one class's cases, kernel checks and disagreements.
type classStats struct{ cases, checks, bad int }

func (b *batch) classCase(base uint16) error {
	b.host.AllListeners, b.host.Isolated = true, true
	defer func() { b.host.AllListeners, b.host.Isolated = false, false }()
	cls := classNames[b.pick(len(classNames))]
	checks, bad := b.checks, b.bad
	b.logf("class %s", cls)
	var err error
	switch cls {
	case "connect-wildcard":
		err = b.classWildcard(base)
	case "self-connect":
		err = b.classSelfConnect(base)
	case "link-local":
		err = b.classLinkLocal(base)
	case "listener-close":
		err = b.classListenerClose(base)
	case "timewait-device":
		err = b.classTimeWaitDevice(base)
	case "udp-dual-stack":
		err = b.classUDPDualStack(base)
	}
	if b.classes == nil {
		b.classes = map[string]classStats{}
	}
	c := b.classes[cls]
	c.cases++
	c.checks += b.checks - checks
	c.bad += b.bad - bad
	b.classes[cls] = c
	return err
}

// pickAddr returns one of the addresses, parsed.
func (b *batch) pickAddr(addrs ...string) netip.Addr {
	return netip.MustParseAddr(addrs[b.pick(len(addrs))])
}

// connectWait is a blocking connect bounded by 2 s, so a refused
// connection shows as ECONNREFUSED. zone is the scope id for a link-local
// peer (0: none).
func connectWait(fd int, peer netip.AddrPort, zone uint32) error {
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return err
	}
	defer unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{})
	sa := sockaddr.From(peer)
	if s6, ok := sa.(*unix.SockaddrInet6); ok {
		s6.ZoneId = zone
	}
	return unix.Connect(fd, sa)
}

// classSocket makes a socket for a class case: the options, plus
// SO_BINDTODEVICE lo when dev is set.
func (b *batch) classSocket(p inet.Proto, fam inet.Family, o sockOpts, dev bool, id string) (int, Socket, error) {
	fd, err := b.newSocket(p, fam, o)
	if err != nil {
		return -1, Socket{}, err
	}
	s := modelSocket(p, fam, o)
	s.ID = id
	if dev {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lo"); err != nil {
			unix.Close(fd)
			return -1, Socket{}, err
		}
		s.Dev = LoopbackIndex
	}
	return fd, s, nil
}

// opStep checks op by s against the kernel's errno and, when it worked,
// returns the socket as the kernel shows it after.
func (b *batch) opStep(fd int, s Socket, op Op, kerr error) (Socket, bool) {
	out := b.check(s, op, kerr)
	if kerr != nil {
		return s, false
	}
	after := out.After
	after.Dev = s.Dev
	observe(fd, &after)
	return after, true
}

// listenerAt makes a listener (not checked: an ordinary bind and listen)
// at a and adds it to the case's world.
func (b *batch) listenerAt(fam inet.Family, a netip.AddrPort, o sockOpts, id string) (int, Socket, error) {
	fd, s, err := b.classSocket(inet.TCP, fam, o, false, id)
	if err != nil {
		return -1, s, err
	}
	if err := unix.Bind(fd, sockaddr.From(a)); err != nil {
		unix.Close(fd)
		return -1, s, nil // taken: the case goes on without it
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return -1, s, fmt.Errorf("listen %s: %w", a, err)
	}
	s.State = Listen
	s.Local = a
	observe(fd, &s)
	b.world = append(b.world, kSock{fd: fd, sock: s})
	b.logf("%s listens on %s", id, s.Local)
	return fd, s, nil
}

// classWildcard: connect() to 0.0.0.0, :: or ::ffff:0.0.0.0 reaches this
// host (the bound source address, or loopback), listener or not.
func (b *batch) classWildcard(base uint16) error {
	proto := inet.TCP
	if b.chance(0.25) {
		proto = inet.UDP
	}
	if proto == inet.TCP && b.chance(0.7) {
		lfam := inet.IPv4
		la := b.pickAddr("127.0.0.1", "10.9.0.1", "0.0.0.0")
		if b.chance(0.5) {
			lfam = inet.IPv6
			la = b.pickAddr("::1", "::", "fd00::1", "::ffff:127.0.0.1")
		}
		if _, _, err := b.listenerAt(lfam, netip.AddrPortFrom(la, base+4), sockOpts{v6only: b.pick(3)}, "wl"); err != nil {
			return err
		}
	}
	fam := inet.IPv4
	binds := []string{"127.0.0.1", "10.9.0.1", "0.0.0.0"}
	peer := netip.IPv4Unspecified()
	if b.chance(0.5) {
		fam = inet.IPv6
		binds = []string{"::1", "fd00::1", "::", "::ffff:127.0.0.1", "::ffff:10.9.0.1"}
		peer = b.pickAddr("::", "::", "::ffff:0.0.0.0")
	}
	// Port base+4 lies outside the case's range, so a connect() search
	// never picks the destination port itself (a self-connect by chance).
	return b.connectCase(proto, fam, sockOpts{reuseAddr: b.chance(0.5)}, binds, netip.AddrPortFrom(peer, base+4))
}

// connectCase checks a new socket's connect() to peer, after a bind to
// port 0 of one of binds half the time.
func (b *batch) connectCase(proto inet.Proto, fam inet.Family, o sockOpts, binds []string, peer netip.AddrPort) error {
	fd, s, err := b.classSocket(proto, fam, o, false, "new")
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if b.chance(0.5) {
		op := Op{Kind: OpBind, Addr: netip.AddrPortFrom(b.pickAddr(binds...), 0)}
		var ok bool
		b.startOp()
		if s, ok = b.opStep(fd, s, op, unix.Bind(fd, sockaddr.From(op.Addr))); !ok {
			return nil
		}
	}
	op := Op{Kind: OpConnect, Addr: peer}
	var kerr error
	b.startOp()
	if proto == inet.TCP {
		kerr = connectWait(fd, op.Addr, 0)
	} else {
		kerr = unix.Connect(fd, sockaddr.From(op.Addr))
	}
	b.check(s, op, kerr)
	return nil
}

// classSelfConnect: a TCP socket connecting to its own address and port
// (bound, or the port its search takes) needs no listener; its close
// leaves a TIME_WAIT entry whose two ends are one. A searching connect()
// takes the only port its own range allows or, half the time (always
// before IP_LOCAL_PORT_RANGE), the first port of a namespace range of one
// to three ports, which the walk's order puts first (connectPick); its
// destination is that port or the next.
func (b *batch) classSelfConnect(base uint16) error {
	fam := inet.IPv4
	if b.chance(0.5) {
		fam = inet.IPv6
	}
	o := sockOpts{reuseAddr: b.chance(0.5)}
	search := b.chance(0.3)
	dport := base
	if search && runningKernel.HasPortRangeOpt() && b.chance(0.5) {
		o.portRange = inet.PortRange{Lo: base, Hi: base}
	} else if search {
		k := uint16(b.pick(3))
		if err := b.setSysctl("net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", base, base+k)); err != nil {
			return err
		}
		b.host.EphemeralRange = inet.PortRange{Lo: base, Hi: base + k}
		dport += uint16(b.pick(2))
		b.logf("range %d-%d", base, base+k)
	}
	fd, s, err := b.classSocket(inet.TCP, fam, o, false, "self")
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(fd)
		}
	}()
	var dst netip.Addr
	if search {
		dst = netip.MustParseAddr("127.0.0.1")
		if fam == inet.IPv6 {
			dst = b.pickAddr("::1", "fd00::1", "::ffff:127.0.0.1")
		}
	} else {
		var a netip.Addr
		if fam == inet.IPv4 {
			a = b.pickAddr("127.0.0.1", "10.9.0.1", "0.0.0.0")
		} else {
			a = b.pickAddr("::1", "fd00::1", "::", "::ffff:127.0.0.1")
		}
		op := Op{Kind: OpBind, Addr: netip.AddrPortFrom(a, base)}
		var ok bool
		b.startOp()
		if s, ok = b.opStep(fd, s, op, unix.Bind(fd, sockaddr.From(op.Addr))); !ok {
			return nil
		}
		dst = a
		switch {
		case a.Is4() && a.IsUnspecified():
			dst = netip.MustParseAddr("127.0.0.1")
		case a.Is6() && a.IsUnspecified():
			dst = netip.MustParseAddr("::1")
		}
	}
	op := Op{Kind: OpConnect, Addr: netip.AddrPortFrom(dst, dport)}
	b.startOp()
	s, ok := b.opStep(fd, s, op, connectWait(fd, op.Addr, 0))
	if !ok {
		return nil
	}
	s.PortFromConnect = search
	if b.chance(0.5) {
		keep = true
		b.world = append(b.world, kSock{fd: fd, sock: s})
	} else {
		// Close: the socket's FIN reaches itself, then TIME_WAIT.
		before := monoNanos()
		if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		if err := waitClosed(fd); err != nil {
			return fmt.Errorf("self-connected socket: %w", err)
		}
		s.State = TimeWait
		s.TWTimestamps = b.sysctl["net/ipv4/tcp_timestamps"] == "1"
		b.twCreated(s.ID, before)
		b.world = append(b.world, kSock{fd: -1, sock: s})
	}
	// Another socket binds the port.
	nfd, n, err := b.classSocket(inet.TCP, fam, sockOpts{reuseAddr: b.chance(0.5)}, false, "new")
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	bop := Op{Kind: OpBind, Addr: s.Local}
	b.startOp()
	b.check(n, bop, unix.Bind(nfd, sockaddr.From(bop.Addr)))
	return nil
}

// classLinkLocal: connect() to a link-local IPv6 peer needs a scope or a
// device-bound socket.
func (b *batch) classLinkLocal(base uint16) error {
	proto := inet.TCP
	if b.chance(0.4) {
		proto = inet.UDP
	}
	if proto == inet.TCP && b.chance(0.5) {
		if _, _, err := b.listenerAt(inet.IPv6, netip.AddrPortFrom(netip.IPv6Unspecified(), base+4), sockOpts{v6only: b.pick(3)}, "ll"); err != nil {
			return err
		}
	}
	fd, s, err := b.classSocket(proto, inet.IPv6, sockOpts{}, b.chance(0.4), "new")
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	peer := netip.MustParseAddr("fe80::1")
	if proto == inet.UDP && b.chance(0.3) {
		peer = netip.MustParseAddr("ff02::1")
	}
	zone := uint32(0)
	op := Op{Kind: OpConnect, Addr: netip.AddrPortFrom(peer, base+4)} // outside the range: see classWildcard
	if b.chance(0.25) {
		zone = LoopbackIndex
		op.Addr = netip.AddrPortFrom(peer.WithZone("lo"), base+4)
	}
	var kerr error
	b.startOp()
	if proto == inet.TCP {
		kerr = connectWait(fd, op.Addr, zone)
	} else {
		sa := sockaddr.From(op.Addr).(*unix.SockaddrInet6)
		sa.ZoneId = zone
		kerr = unix.Connect(fd, sa)
	}
	b.check(s, op, kerr)
	return nil
}

// classListenerClose: a listener with connections it never accepted (and
// some it did) closes; the model's CloseListener says which clients are
// reset and what they keep, the kernel must agree, and later operations on
// the port and on the reset clients are checked.
func (b *batch) classListenerClose(base uint16) error {
	fam := inet.IPv4
	la := b.pickAddr("127.0.0.1", "10.9.0.1", "0.0.0.0")
	if b.chance(0.5) {
		fam = inet.IPv6
		la = b.pickAddr("::1", "::", "fd00::1")
	}
	lo := sockOpts{reuseAddr: b.chance(0.5), v6only: 2}
	lfd, l, err := b.listenerAt(fam, netip.AddrPortFrom(la, base), lo, "L")
	if err != nil || lfd < 0 {
		return err
	}
	dst := la
	switch {
	case la == netip.IPv4Unspecified():
		dst = netip.MustParseAddr("127.0.0.1")
	case la == netip.IPv6Unspecified():
		dst = b.pickAddr("::1", "fd00::1", "127.0.0.1")
	}
	clients, err := b.queueClients(l, netip.AddrPortFrom(dst, base))
	if err != nil {
		return err
	}
	if err := b.acceptSome(lfd, len(clients)); err != nil {
		return err
	}
	b.closeListener(lfd, l, clients)
	return b.afterListenerClose(fam, netip.AddrPortFrom(la, base), netip.AddrPortFrom(dst, base))
}

// queueClients connects one to three clients (bound to a port of their own
// or not) to listener l at dst, and adds each with the child the listener
// holds for it in its accept queue. It returns the clients' descriptors.
func (b *batch) queueClients(l Socket, dst netip.AddrPort) ([]int, error) {
	var clients []int
	for k := range 1 + b.pick(3) {
		cfam := inet.IPv4
		if dst.Addr().Is6() {
			cfam = inet.IPv6
		}
		id := fmt.Sprintf("cl%d", k)
		cfd, cs, err := b.classSocket(inet.TCP, cfam, sockOpts{}, false, id)
		if err != nil {
			return clients, err
		}
		if b.chance(0.5) {
			src := netip.AddrPortFrom(netip.IPv4Unspecified(), dst.Port()+5+uint16(k))
			if cfam == inet.IPv6 {
				src = netip.AddrPortFrom(netip.IPv6Unspecified(), src.Port())
			}
			if err := unix.Bind(cfd, sockaddr.From(src)); err != nil {
				unix.Close(cfd)
				return clients, fmt.Errorf("client bind %s: %w", src, err)
			}
		} else {
			cs.PortFromConnect = true
		}
		if err := connectWait(cfd, dst, 0); err != nil {
			// The case's range may have no port left (the listener holds
			// one): no such client then.
			unix.Close(cfd)
			b.logf("%s: connect %s: %v", id, dst, err)
			continue
		}
		cs.State = Connected
		observe(cfd, &cs)
		b.world = append(b.world, kSock{fd: cfd, sock: cs})
		clients = append(clients, cfd)
		child := Socket{ID: id + "-child", Proto: inet.TCP, Family: l.Family, State: Connected, ReuseAddr: l.ReuseAddr, AcceptQueue: "L"}
		child.Local, child.Remote = cs.Remote, cs.Local
		if l.Family == inet.IPv6 && child.Local.Addr().Is4() {
			child.Local = netip.AddrPortFrom(netip.AddrFrom16(child.Local.Addr().As16()), child.Local.Port())
			child.Remote = netip.AddrPortFrom(netip.AddrFrom16(child.Remote.Addr().As16()), child.Remote.Port())
		}
		b.world = append(b.world, kSock{fd: -1, sock: child})
		b.logf("%s %s -> %s", id, cs.Local, cs.Remote)
	}
	return clients, nil
}

// acceptSome accepts the first m of the n connections in the listener's
// queue (FIFO), m random, and gives each accepted child its descriptor.
func (b *batch) acceptSome(lfd, n int) error {
	for range b.pick(n + 1) {
		ch, _, err := b.acceptChild(lfd)
		if err != nil {
			return err
		}
		var got Socket
		observe(ch.fd, &got)
		matched := false
		for j := range b.world {
			k := &b.world[j]
			if k.sock.AcceptQueue == "L" && unmapPort(k.sock.Remote) == unmapPort(got.Remote) {
				k.fd, k.sock.AcceptQueue, matched = ch.fd, "", true
				b.logf("L accepted %s", got.Remote)
				break
			}
		}
		if !matched {
			unix.Close(ch.fd)
			return fmt.Errorf("accepted a connection from %s no client made", got.Remote)
		}
	}
	return nil
}

// closeListener closes listener l (descriptor lfd) and checks the model's
// CloseListener against the kernel: every client the model resets must
// reach CLOSE, every other must stay connected. The world then follows
// the model (reset clients, dropped children).
func (b *batch) closeListener(lfd int, l Socket, clients []int) {
	var rest []kSock
	for _, k := range b.world {
		if k.fd != lfd {
			rest = append(rest, k)
		}
	}
	b.world = rest
	unix.Close(lfd)
	w := b.worldNow()
	out := NewModel(w).CloseListener(l)
	reset := map[int]bool{}
	for k, i := range out.Reset {
		reset[i-1] = true // World.Sockets[0] is the batch's server
		b.world[i-1].sock = out.After[k]
	}
	dropped := map[int]bool{}
	for _, i := range out.Dropped {
		dropped[i-1] = true
	}
	for _, cfd := range clients {
		b.checks++
		ci := -1
		for j := range b.world {
			if b.world[j].fd == cfd {
				ci = j
			}
		}
		if ci < 0 {
			continue // not in the world: cannot happen, clients never leave it
		}
		err := waitState(cfd, 7, 2*time.Second)
		if !reset[ci] {
			info, ierr := unix.GetsockoptTCPInfo(cfd, unix.IPPROTO_TCP, unix.TCP_INFO)
			if ierr != nil || info.State != 1 {
				b.disagree(w, l, Op{}, Outcome{Rule: "close-listener", Why: out.Why}, fmt.Sprintf("client %s was not reset by the model but the kernel shows state %d", b.world[ci].sock.ID, info.State))
			}
			continue
		}
		if err != nil {
			b.disagree(w, l, Op{}, Outcome{Rule: "close-listener", Why: out.Why}, fmt.Sprintf("client %s: the model resets it, the kernel: %v", b.world[ci].sock.ID, err))
		}
	}
	kept := b.world[:0]
	for j, k := range b.world {
		if !dropped[j] {
			kept = append(kept, k)
		}
	}
	b.world = kept
}

// afterListenerClose checks one later operation: a bind of the listener's
// address, or a reset client connecting to dst or listening again.
func (b *batch) afterListenerClose(fam inet.Family, laddr, dst netip.AddrPort) error {
	if b.pick(3) == 0 {
		nfd, n, err := b.classSocket(inet.TCP, fam, sockOpts{reuseAddr: b.chance(0.5)}, false, "new")
		if err != nil {
			return err
		}
		defer unix.Close(nfd)
		op := Op{Kind: OpBind, Addr: laddr}
		b.startOp()
		b.check(n, op, unix.Bind(nfd, sockaddr.From(op.Addr)))
		return nil
	}
	for j, k := range b.world {
		if !k.sock.Reset || k.fd < 0 {
			continue
		}
		s := k.sock
		saved := b.world
		b.world = append(append([]kSock(nil), b.world[:j]...), b.world[j+1:]...)
		if b.chance(0.5) {
			op := Op{Kind: OpConnect, Addr: dst}
			b.startOp()
			b.check(s, op, connectWait(k.fd, op.Addr, 0))
		} else {
			b.startOp()
			b.check(s, listenOp, unix.Listen(k.fd, 4))
		}
		b.world = saved
		break
	}
	return nil
}

// waitState waits until fd's TCP state is state.
func waitState(fd int, state uint8, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		if info.State == state {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("state %d after %v, want %d", info.State, wait, state)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// classTimeWaitDevice: a TIME_WAIT entry left by a socket bound to lo (or
// to no device) against a new socket bound to lo or not, explicitly bound
// or searching, under the case's tcp_tw_reuse and timestamps.
func (b *batch) classTimeWaitDevice(base uint16) error {
	addr := b.pickAddr("10.9.0.1", "127.0.0.1")
	peer := netip.AddrPortFrom(addr, srvPort)
	search := b.chance(0.5)
	o := sockOpts{reuseAddr: true}
	if search {
		o = sockOpts{portRange: inet.PortRange{Lo: base, Hi: base}}
	}
	fd, s, err := b.classSocket(inet.TCP, inet.IPv4, o, b.chance(0.6), "tw")
	if err != nil {
		return err
	}
	// The first socket is set-up, not a check: when the case's reserved
	// port or range leaves it no port, the case ends here.
	if !search {
		if err := unix.Bind(fd, sockaddr.From(netip.AddrPortFrom(addr, base))); err != nil {
			unix.Close(fd)
			b.logf("tw bind: %v", err)
			return nil
		}
	}
	if err := connectWait(fd, peer, 0); err != nil {
		unix.Close(fd)
		b.logf("tw connect: %v", err)
		return nil
	}
	s.State = Connected
	s.PortFromConnect = search
	observe(fd, &s)
	child, _, err := b.acceptFrom(b.srv.fd, s.Local)
	if err != nil {
		unix.Close(fd)
		return err
	}
	before := monoNanos()
	unix.Shutdown(fd, unix.SHUT_WR)
	unix.Close(child.fd)
	err = waitClosed(fd)
	unix.Close(fd)
	if err != nil {
		return err
	}
	s.State = TimeWait
	s.TWTimestamps = b.sysctl["net/ipv4/tcp_timestamps"] == "1"
	b.twCreated(s.ID, before)
	b.world = append(b.world, kSock{fd: -1, sock: s})
	b.logf("tw %s -> %s dev %d", s.Local, s.Remote, s.Dev)
	// The new socket: same device or not, bound to the same port or
	// searching the one-port range.
	nsearch := b.chance(0.5)
	no := sockOpts{reuseAddr: true}
	if nsearch {
		no = sockOpts{portRange: inet.PortRange{Lo: base, Hi: base}}
	}
	nfd, n, err := b.classSocket(inet.TCP, inet.IPv4, no, b.chance(0.5), "new")
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	if !nsearch {
		op := Op{Kind: OpBind, Addr: netip.AddrPortFrom(addr, base)}
		var ok bool
		b.startOp()
		if n, ok = b.opStep(nfd, n, op, unix.Bind(nfd, sockaddr.From(op.Addr))); !ok {
			return nil
		}
	}
	op := Op{Kind: OpConnect, Addr: peer}
	b.startOp()
	kerr, established := connectFD(nfd, inet.TCP, peer)
	b.check(n, op, kerr)
	if kerr == nil && established {
		var got Socket
		observe(nfd, &got)
		if c, _, err := b.acceptFrom(b.srv.fd, got.Local); err == nil {
			unix.Close(c.fd)
		}
	}
	return nil
}

// classUDPDualStack: a dual-stack UDP socket bound to [::]:P connects over
// IPv6 (its IPv4 side becomes 127.0.0.6) or over IPv4; other sockets then
// bind P on IPv4 and IPv6 addresses.
func (b *batch) classUDPDualStack(base uint16) error {
	o := sockOpts{reuseAddr: b.chance(0.3), reusePort: b.chance(0.3), v6only: 2}
	if b.chance(0.2) {
		o.v6only = 1
	}
	fd, s, err := b.classSocket(inet.UDP, inet.IPv6, o, false, "dual")
	if err != nil {
		return err
	}
	op := Op{Kind: OpBind, Addr: netip.AddrPortFrom(netip.IPv6Unspecified(), base)}
	b.startOp()
	s, ok := b.opStep(fd, s, op, unix.Bind(fd, sockaddr.From(op.Addr)))
	if !ok {
		unix.Close(fd)
		return nil
	}
	peer := b.pickAddr("::1", "fd00::1", "fd00::2", "::ffff:127.0.0.1")
	cop := Op{Kind: OpConnect, Addr: netip.AddrPortFrom(peer, 9)}
	b.startOp()
	if s, ok = b.opStep(fd, s, cop, unix.Connect(fd, sockaddr.From(cop.Addr))); !ok {
		unix.Close(fd)
		return nil
	}
	b.world = append(b.world, kSock{fd: fd, sock: s})
	for range 1 + b.pick(2) {
		fam := inet.IPv4
		a := b.pickAddr("127.0.0.6", "127.0.0.1", "0.0.0.0", "10.9.0.1", "127.0.0.6")
		if b.chance(0.4) {
			fam = inet.IPv6
			a = b.pickAddr("::ffff:127.0.0.6", "::ffff:127.0.0.1", "::ffff:0.0.0.0", "::", "::1", "fd00::1")
		}
		nfd, n, err := b.classSocket(inet.UDP, fam, sockOpts{reuseAddr: b.chance(0.3), reusePort: b.chance(0.3), v6only: b.pick(3) * boolInt(fam == inet.IPv6)}, false, "new")
		if err != nil {
			return err
		}
		bop := Op{Kind: OpBind, Addr: netip.AddrPortFrom(a, base)}
		b.startOp()
		n, ok := b.opStep(nfd, n, bop, unix.Bind(nfd, sockaddr.From(bop.Addr)))
		if ok {
			b.world = append(b.world, kSock{fd: nfd, sock: n})
		} else {
			unix.Close(nfd)
		}
	}
	return nil
}

// noSourceCases runs connect()s in a namespace whose lo has IPv6 disabled:
// an AF_INET6 socket finds no source address for an IPv6 peer, while a
// v4-mapped peer goes over IPv4.
func (b *batch) noSourceCases(n int) (classStats, error) {
	var st classStats
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/lo/disable_ipv6", []byte("1"), 0); err != nil {
		return st, err
	}
	h := testHost()
	h.Kernel = runningKernel
	h.Local = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.9.0.1/32")}
	h.AllListeners, h.Isolated = true, true
	b.host = h
	for i := range n {
		b.caseNo = i
		port := uint16(firstBlock + i)
		checks, bad := b.checks, b.bad
		err := func() error {
			defer b.closeCase()
			if b.chance(0.5) {
				if _, _, err := b.listenerAt(inet.IPv4, netip.AddrPortFrom(b.pickAddr("127.0.0.1", "0.0.0.0"), port), sockOpts{}, "v4l"); err != nil {
					return err
				}
			}
			proto := inet.TCP
			if b.chance(0.4) {
				proto = inet.UDP
			}
			peer := netip.AddrPortFrom(b.pickAddr("::1", "fd00::1", "::ffff:127.0.0.1", "::"), port)
			return b.connectCase(proto, inet.IPv6, sockOpts{v6only: b.pick(3)}, []string{"::", "::ffff:127.0.0.1", "::ffff:0.0.0.0", "::1"}, peer)
		}()
		if err != nil {
			return st, fmt.Errorf("no-source case %d: %w", i, err)
		}
		st.cases++
		st.checks += b.checks - checks
		st.bad += b.bad - bad
	}
	return st, nil
}

// classSummary words the per-class counts.
func classSummary(m map[string]classStats) string {
	var parts []string
	for _, c := range append(append([]string(nil), classNames...), "no-ipv6-source") {
		s := m[c]
		parts = append(parts, fmt.Sprintf("%s: %d cases, %d checks, %d disagree", c, s.cases, s.checks, s.bad))
	}
	return strings.Join(parts, "; ")
}
