package cli

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/internal/sockaddr"
)

// The differential test: generated situations are built for real in a
// namespace, `tuple why` predicts the new socket's operation from the live
// table (socktab -> hostmodel -> rules), then the kernel is asked. Every
// disagreement is reported with the situation, the prediction and the
// kernel's answer.
//
// TUPLE_DIFF_CASES sets the number of cases (default 120), TUPLE_DIFF_SEED
// the seed (default 1).

var (
	srv4 = netip.MustParseAddrPort("10.0.0.9:9000")
	srv6 = netip.MustParseAddrPort("[fd00::9]:9000")
)

// diffServer holds the listeners existing sockets connect to, and accepts
// their connections.
type diffServer struct {
	ln4, ln6 int
	children []int
}

func (s *diffServer) listener(dst netip.AddrPort) int {
	if dst.Addr().Unmap().Is4() {
		return s.ln4
	}
	return s.ln6
}

// accept takes every pending connection; it returns the child whose peer
// is peer, if one came (or -1).
func (s *diffServer) accept(ln int, peer netip.AddrPort) int {
	found := -1
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		nfd, sa, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err == unix.EAGAIN {
			if !peer.IsValid() || found >= 0 {
				return found
			}
			// Wait for the next connection on the listener itself.
			pfd := []unix.PollFd{{Fd: int32(ln), Events: unix.POLLIN}}
			unix.Poll(pfd, int(time.Until(deadline).Milliseconds())+1)
			continue
		}
		if err != nil {
			return found
		}
		var p netip.AddrPort
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			p = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			p = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
		}
		if peer.IsValid() && p == netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()) {
			found = nfd
			continue
		}
		s.children = append(s.children, nfd)
	}
	return found
}

func (s *diffServer) drain() {
	s.accept(s.ln4, netip.AddrPort{})
	s.accept(s.ln6, netip.AddrPort{})
	for _, fd := range s.children {
		unix.Close(fd)
	}
	s.children = s.children[:0]
}

// existing is one socket of a generated situation.
type existing struct {
	realSock
	timeWait bool // connect, then close first: leaves TIME_WAIT
}

func (e existing) String() string {
	if e.timeWait {
		return e.realSock.String() + " then close (TIME_WAIT)"
	}
	return e.realSock.String()
}

// gen makes random situations.
type gen struct {
	r     *rand.Rand
	base  uint16 // this case's first port
	ephLo uint16 // the namespace's small ephemeral range, 0 when default
	ephHi uint16
}

func (g *gen) pick(n int) int        { return g.r.IntN(n) }
func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

var (
	v4Addrs = []string{"127.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "0.0.0.0", "0.0.0.0", "10.0.0.77"}
	v6Addrs = []string{"::1", "fd00::1", "fd00::1", "::", "::", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:0.0.0.0", "fd00::77"}
)

func (g *gen) addr(family int) netip.Addr {
	if family == 4 {
		return netip.MustParseAddr(v4Addrs[g.pick(len(v4Addrs))])
	}
	return netip.MustParseAddr(v6Addrs[g.pick(len(v6Addrs))])
}

// port is 0 (the kernel picks) sometimes, a port of the small ephemeral
// range sometimes (so picking can run out), else one of the case's two.
func (g *gen) port() uint16 {
	switch {
	case g.chance(0.12):
		return 0
	case g.ephLo != 0 && g.chance(0.3):
		return g.ephLo + uint16(g.pick(int(g.ephHi-g.ephLo)+1))
	}
	return g.base + uint16(g.pick(2))
}

func (g *gen) family() int { return 4 + 2*g.pick(2) }

func (g *gen) uid() int {
	if g.chance(0.3) {
		return 65534
	}
	return 0
}

// server returns the listener address for a socket of family bound to a.
func server(family int, a netip.Addr) netip.AddrPort {
	if family == 4 {
		return srv4
	}
	if a.Is4In6() {
		return netip.AddrPortFrom(netip.AddrFrom16(srv4.Addr().As16()), srv4.Port())
	}
	return srv6
}

func (g *gen) options(r *realSock) {
	r.reuseAddr = g.chance(0.4)
	r.reusePort = g.chance(0.4)
	r.v6only = r.family == 6 && g.chance(0.25)
	r.uid = g.uid()
}

func (g *gen) existing(udp bool) existing {
	e := existing{realSock: realSock{udp: udp, family: g.family()}}
	g.options(&e.realSock)
	a := g.addr(e.family)
	e.bind = netip.AddrPortFrom(a, g.port())
	if udp {
		if g.chance(0.3) {
			e.connect = server(e.family, a)
		}
		return e
	}
	switch g.pick(6) {
	case 0: // bound only
	case 1, 2:
		e.listen = true
	case 3:
		e.connect = server(e.family, a)
	case 4: // connect() picks the port
		e.connect = server(e.family, a)
		e.bind = netip.AddrPort{}
	case 5:
		e.connect = server(e.family, a)
		e.timeWait = true
		if g.chance(0.5) {
			e.bind = netip.AddrPort{}
		}
	}
	return e
}

// crowd adds to a third of the UDP cases 7 to 11 sockets bound to base
// on addresses of their own (127.0.1.x, some as ::ffff:127.0.1.x), among
// olds at random places, so that the port's slot of the UDP hash holds
// more or fewer than ten sockets when the new one binds: past ten, bind()
// checks only its own address's chain and the wildcard's. It draws from
// r, not the case's generator, so that the other cases of a seed stay as
// they were.
func crowd(r *rand.Rand, base uint16, olds []existing) []existing {
	if r.Float64() >= 0.3 {
		return olds
	}
	for i := range 7 + r.IntN(5) {
		f := existing{realSock: realSock{udp: true, family: 4, reuseAddr: r.Float64() < 0.7, reusePort: r.Float64() < 0.3}}
		a := netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)})
		if r.Float64() < 0.25 {
			f.family, a = 6, netip.AddrFrom16(a.As16())
		}
		f.bind = netip.AddrPortFrom(a, base)
		olds = slices.Insert(olds, r.IntN(len(olds)+1), f)
	}
	return olds
}

func (g *gen) newSock(udp bool, olds []existing) realSock {
	n := realSock{udp: udp, family: g.family()}
	g.options(&n)
	a := g.addr(n.family)
	kind := g.pick(3) // bind, listen, connect
	if udp && kind == 1 {
		kind = 0
	}
	switch kind {
	case 0:
		n.bind = netip.AddrPortFrom(a, g.port())
	case 1:
		n.bind = netip.AddrPortFrom(a, g.port())
		n.listen = true
	case 2:
		n.connect = server(n.family, a)
		switch g.pick(4) {
		case 0: // no bind: connect() picks
		case 1:
			n.bind = netip.AddrPortFrom(a, g.port())
		case 2:
			n.bind = netip.AddrPortFrom(a, 0)
			n.bindNoPort = !udp && g.chance(0.7)
		case 3:
			// Reuse an existing socket's four-tuple when there is one.
			for _, o := range olds {
				if o.connect.IsValid() && o.bind.IsValid() && o.family == n.family {
					n.bind, n.connect = o.bind, o.connect
				}
			}
			if !n.bind.IsValid() {
				n.bind = netip.AddrPortFrom(a, g.port())
			}
		}
		if n.bind.IsValid() {
			n.connect = server(n.family, n.bind.Addr())
			for _, o := range olds {
				if o.bind == n.bind && o.connect.IsValid() {
					n.connect = o.connect
				}
			}
		}
		if n.connect.Addr().Is4In6() && n.v6only {
			n.v6only = false // a v6only socket cannot reach a v4 peer; keep the case about ports
		}
	}
	return n
}

func diffEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestWhyDifferential(t *testing.T) {
	netnstest.RequireRoot(t)
	cases := diffEnv("TUPLE_DIFF_CASES", 120)
	seed := uint64(diffEnv("TUPLE_DIFF_SEED", 1))
	const perNS = 30
	var agree, orderUnknown int
	var disagreements []string
	verdicts := map[string]int{}
	for batch := 0; batch*perNS < cases; batch++ {
		ns, settings, ephLo, ephHi := diffNamespace(t, rand.New(rand.NewPCG(seed, uint64(batch))))
		var srv diffServer
		ns.Do(func() error {
			srv.ln4 = mustListen(t, realSock{family: 4, bind: srv4, listen: true})
			srv.ln6 = mustListen(t, realSock{family: 6, v6only: true, bind: srv6, listen: true})
			return nil
		})
		for i := batch * perNS; i < min(cases, (batch+1)*perNS); i++ {
			g := &gen{r: rand.New(rand.NewPCG(seed, uint64(1000+i))), base: 20000 + uint16(3*i), ephLo: ephLo, ephHi: ephHi}
			udp := g.chance(0.3)
			olds := make([]existing, 1+g.pick(6))
			for k := range olds {
				olds[k] = g.existing(udp)
			}
			if udp {
				olds = crowd(rand.New(rand.NewPCG(seed, uint64(500000+i))), g.base, olds)
			}
			n := g.newSock(udp, olds)

			fds, built, timeWaits := buildExisting(ns, &srv, olds)
			// Bound in the order built: where their inodes grow in that
			// order too, why's guess at the order is right.
			inodesInBindOrder := slices.IsSortedFunc(fds, func(a, b int) int { return cmp.Compare(inodeOf(a), inodeOf(b)) })
			if len(timeWaits) > 0 {
				waitFor(t, "TIME_WAIT of "+strings.Join(timeWaits, ", "), func() bool { return inTimeWait(t, ns, timeWaits) })
			}
			code, j := whyIn(t, ns, n.whyArgs()...)
			var kernel, got string
			ns.Do(func() error {
				fd, err := n.create()
				if sa, gerr := unix.Getsockname(fd); err == nil && gerr == nil {
					got = " (local " + sockaddr.AddrPort(sa).String() + ")"
				}
				closeFD(fd)
				kernel = verdict(err)
				for _, fd := range fds {
					unix.Close(fd)
				}
				srv.drain()
				return nil
			})
			verdicts[fmt.Sprintf("%s %s %s", n.proto(), n.op(), kernel)]++
			if j.Verdict == kernel && (code == 0) == (kernel == "ok") {
				agree++
				continue
			}
			if j.Verdict != kernel && !inodesInBindOrder && unknowable(j.Assumptions, kernel) {
				// The verdict said it rests on an order no socket table
				// shows, guessed from inodes that are not in bind order
				// here, and named the kernel's answer as the other's.
				orderUnknown++
				t.Logf("case %d (seed %d): why said %s and that %s would follow the other order of its IPv4 and IPv6 UDP sockets, "+
					"whose inodes are not in bind order; the kernel said %s:\n    %s",
					i, seed, j.Verdict, kernel, kernel, strings.Join(built, "\n    "))
				continue
			}
			table := ns.Run(t, "ss", "-Htuan")
			disagreements = append(disagreements, fmt.Sprintf(
				"case %d (seed %d, %s):\n  existing:\n    %s\n  new: %v\n  tuple %s\n  why: %s (exit %d) at %s: %s\n  assumptions: %q\n  kernel: %s%s\n  table after the case (ss -tuan):\n    %s",
				i, seed, strings.Join(settings, " "), strings.Join(built, "\n    "), n, strings.Join(n.whyArgs(), " "),
				j.Verdict, code, j.FailedOp, j.Explanation, j.Assumptions, kernel, got,
				strings.ReplaceAll(strings.TrimSpace(table), "\n", "\n    ")))
		}
		ns.Do(func() error {
			srv.drain()
			unix.Close(srv.ln4)
			unix.Close(srv.ln6)
			return nil
		})
	}
	t.Logf("differential: %d cases, %d agree, %d disagree, %d rest on an order no table shows (seed %d)", cases, agree, len(disagreements), orderUnknown, seed)
	keys := slices.Sorted(maps.Keys(verdicts))
	for _, k := range keys {
		t.Logf("  %-32s %d", k, verdicts[k])
	}
	for _, d := range disagreements {
		t.Error(d)
	}
}

// diffNamespace makes a namespace for a batch of cases with the sysctls
// br picks: small ephemeral ranges in some, so connect() sharing and
// exhaustion are exercised, and the reuse sysctls. It returns the
// settings as text and the range set (zero: the default).
func diffNamespace(t *testing.T, br *rand.Rand) (ns *netnstest.NS, settings []string, ephLo, ephHi uint16) {
	ns = netnstest.New(t, "10.0.0.1/32", "10.0.0.2/32", "10.0.0.9/32", "fd00::1/128", "fd00::9/128")
	if br.IntN(2) == 0 {
		// An even number of ports: with an odd count the kernel's
		// searches skip the lowest or the highest port depending on
		// their random start, so no model can call a verdict that
		// rests on that port (TUPLE_DIFF_ODD=1 generates them anyway).
		lo := 40000 + br.IntN(100)*8
		n := 2 + 2*br.IntN(3)
		if os.Getenv("TUPLE_DIFF_ODD") == "1" {
			n = 2 + br.IntN(6)
		}
		ephLo, ephHi = uint16(lo), uint16(lo+n-1)
		v := fmt.Sprintf("%d %d", ephLo, ephHi)
		ns.Sysctl(t, "net.ipv4.ip_local_port_range", v)
		settings = append(settings, "ip_local_port_range="+v)
	}
	for _, s := range []string{"net.ipv4.ip_autobind_reuse", "net.ipv6.bindv6only"} {
		if br.IntN(3) == 0 {
			ns.Sysctl(t, s, "1")
			settings = append(settings, s+"=1")
		}
	}
	return ns, settings, ephLo, ephHi
}

// buildExisting makes a case's existing sockets in ns: those still open
// (fds), what was built (or not, and why), and the "LPORT RPORT" of the
// connections closed to TIME_WAIT.
func buildExisting(ns *netnstest.NS, srv *diffServer, olds []existing) (fds []int, built, timeWaits []string) {
	ns.Do(func() error {
		for _, o := range olds {
			fd, err := o.create()
			if err != nil {
				closeFD(fd)
				built = append(built, fmt.Sprintf("%v: not built (%v)", o, err))
				continue
			}
			built = append(built, o.String())
			if o.timeWait {
				local, _ := unix.Getsockname(fd)
				child := srv.accept(srv.listener(o.connect), sockaddr.AddrPort(local))
				if remote, err := unix.Getpeername(fd); err == nil && child >= 0 {
					timeWaits = append(timeWaits, fmt.Sprintf("%d %d", sockaddr.AddrPort(local).Port(), sockaddr.AddrPort(remote).Port()))
				}
				unix.Close(fd)
				closeFD(child)
				continue
			}
			fds = append(fds, fd)
		}
		return nil
	})
	return fds, built, timeWaits
}

func mustListen(t *testing.T, r realSock) int {
	fd, err := r.create()
	if err != nil {
		closeFD(fd)
		t.Fatalf("%v: %v", r, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	return fd
}

func (r realSock) proto() string {
	if r.udp {
		return "udp"
	}
	return "tcp"
}

// op names the operation: bind, listen, connect, or connect-from when the
// socket binds first.
func (r realSock) op() string {
	switch {
	case r.connect.IsValid() && r.bind.IsValid():
		return "connect-from"
	case r.connect.IsValid():
		return "connect"
	case r.listen:
		return "listen"
	}
	return "bind"
}

// inTimeWait reports whether the socket table of ns shows every
// "LPORT RPORT" pair in TIME_WAIT.
func inTimeWait(t *testing.T, ns *netnstest.NS, pairs []string) bool {
	seen := map[string]bool{}
	for _, line := range strings.Split(ns.Run(t, "ss", "-Htan", "state", "time-wait"), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		port := func(ap string) string { return ap[strings.LastIndexByte(ap, ':')+1:] }
		seen[port(f[2])+" "+port(f[3])] = true
	}
	for _, p := range pairs {
		if !seen[p] {
			return false
		}
	}
	return true
}

// unknowable reports whether why's assumptions say its verdict rests on
// which of a UDP port's IPv4 and IPv6 sockets bound last, which no socket
// table shows (hostmodel.UDPOrderUnknown), naming kernel as the verdict of
// one of the two orders. Only that is excused: the model's answer for
// either order is still its own.
func unknowable(assumptions []string, kernel string) bool {
	for _, a := range assumptions {
		if strings.HasPrefix(a, hostmodel.UDPOrderUnknown) &&
			(strings.Contains(a, ": "+kernel+" if the IPv4") || strings.Contains(a, ", "+kernel+" if the IPv6")) {
			return true
		}
	}
	return false
}

// inodeOf is the inode of fd's socket, 0 when fstat fails.
func inodeOf(fd int) uint64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Ino
}
