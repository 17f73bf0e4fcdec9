package nat

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/sockopt"
)

// topology is three namespaces: inside clients (192.0.2.2 and .3) behind a
// router that source-NATs to 198.51.100.1 on its outside link, and a server
// namespace with two destination addresses (198.51.100.2 and .3) listening
// on port 80.
type topology struct {
	client, router, server *netnstest.NS
	accepted               chan net.Conn // the server's accepted connections
	mu                     sync.Mutex
	listeners              []net.Listener
	wg                     sync.WaitGroup
}

// listen starts a server on d in the server namespace that hands every
// accepted connection to tp.accepted.
func (tp *topology) listen(t *testing.T, d netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := tp.server.Do(func() (err error) {
		ln, err = net.Listen("tcp4", d.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tp.mu.Lock()
	tp.listeners = append(tp.listeners, ln)
	tp.mu.Unlock()
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tp.accepted <- c
		}
	}()
}

var (
	natAddr = netip.MustParseAddr("198.51.100.1")
	destA   = netip.MustParseAddrPort("198.51.100.2:80")
	destB   = netip.MustParseAddrPort("198.51.100.3:80")
)

func newTopology(t *testing.T, rules ...Rule) *topology {
	t.Helper()
	tp := &topology{client: netnstest.New(t), router: netnstest.New(t), server: netnstest.New(t),
		accepted: make(chan net.Conn, 64)}
	tp.client.IP(t, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", tp.router.Name)
	tp.router.IP(t, "link", "add", "r1", "type", "veth", "peer", "name", "s0", "netns", tp.server.Name)
	tp.client.IP(t, "addr", "add", "192.0.2.2/24", "dev", "c0")
	tp.client.IP(t, "addr", "add", "192.0.2.3/24", "dev", "c0")
	tp.client.IP(t, "addr", "add", "192.0.2.4/24", "dev", "c0")
	tp.client.IP(t, "link", "set", "c0", "up")
	tp.client.IP(t, "route", "add", "default", "via", "192.0.2.1")
	tp.router.IP(t, "addr", "add", "192.0.2.1/24", "dev", "r0")
	tp.router.IP(t, "addr", "add", natAddr.String()+"/24", "dev", "r1")
	tp.router.IP(t, "link", "set", "r0", "up")
	tp.router.IP(t, "link", "set", "r1", "up")
	tp.router.Sysctl(t, "net.ipv4.ip_forward", "1")
	tp.server.IP(t, "addr", "add", destA.Addr().String()+"/24", "dev", "s0")
	tp.server.IP(t, "addr", "add", destB.Addr().String()+"/24", "dev", "s0")
	tp.server.IP(t, "link", "set", "s0", "up")

	fd, err := os.Open("/run/netns/" + tp.router.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := Apply(int(fd.Fd()), nftables.TableFamilyIPv4, rules); err != nil {
		t.Fatal(err)
	}

	for _, d := range []netip.AddrPort{destA, destB} {
		tp.listen(t, d)
	}
	t.Cleanup(func() {
		tp.mu.Lock()
		for _, ln := range tp.listeners {
			ln.Close()
		}
		tp.mu.Unlock()
		tp.wg.Wait()
		close(tp.accepted)
		for c := range tp.accepted {
			c.Close()
		}
	})
	return tp
}

// dial connects from the client namespace, from src (zero: the kernel
// picks), bounded by a timeout: a SYN the NAT drops shows as a timeout.
func (tp *topology) dial(t *testing.T, src, dest netip.AddrPort) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := tp.client.Do(func() (err error) {
		d := net.Dialer{Timeout: 1500 * time.Millisecond, KeepAlive: -1}
		if src.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(src)
		}
		c, err = d.Dial("tcp4", dest.String())
		return err
	})
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// outside is the source the server saw for the next accepted connection.
func (tp *topology) outside(t *testing.T) netip.AddrPort {
	t.Helper()
	select {
	case c := <-tp.accepted:
		defer c.Close()
		return c.RemoteAddr().(*net.TCPAddr).AddrPort()
	case <-time.After(5 * time.Second):
		t.Fatal("the server accepted nothing")
		return netip.AddrPort{}
	}
}

func (tp *topology) snapshot(t *testing.T) Snapshot {
	t.Helper()
	var s Snapshot
	if err := tp.router.Do(func() (err error) {
		s, err = Read(context.Background())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func budgetFor(t *testing.T, bs []Budget, dest netip.AddrPort) Budget {
	t.Helper()
	for _, b := range bs {
		if b.Destination == dest && b.NATAddress == natAddr && b.Proto == "tcp" {
			return b
		}
	}
	t.Fatalf("no budget for %s in %+v", dest, bs)
	return Budget{}
}

// The prediction is the kernel's: with a narrowed SNAT range and two
// destinations, the free count Budgets reports for each destination is the
// number of further connections the kernel allows, exactly.
func TestPredictedFreePortsMatchKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	rule := Rule{ToMin: natAddr, ToMax: natAddr, Ports: sockopt.PortRange{Lo: 40000, Hi: 40009}, OutInterface: "r1"}
	tp := newTopology(t, rule)
	open := func(dest netip.AddrPort, n int) {
		for i := range n {
			if _, err := tp.dial(t, netip.AddrPort{}, dest); err != nil {
				t.Fatalf("connection %d to %s: %v", i+1, dest, err)
			}
			tp.outside(t)
		}
	}
	open(destA, 7)
	open(destB, 3)

	before := tp.snapshot(t)
	if len(before.Rules) != 1 || before.Rules[0].Ports != rule.Ports {
		t.Fatalf("rules read back = %+v, want the one SNAT rule with ports %v", before.Rules, rule.Ports)
	}
	bs := before.Budgets()
	a, b := budgetFor(t, bs, destA), budgetFor(t, bs, destB)
	if a.Free != 3 || b.Free != 7 || !a.Exhaustive {
		t.Fatalf("predicted free: %s %d, %s %d (want 3 and 7, exhaustive)", destA, a.Free, destB, b.Free)
	}

	// Open connections until the kernel refuses; count them.
	further := func(dest netip.AddrPort, limit int) int {
		n := 0
		for ; n < limit; n++ {
			_, err := tp.dial(t, netip.AddrPort{}, dest)
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("connection to %s failed other than by the NAT dropping it: %v", dest, err)
				}
				return n
			}
			got := tp.outside(t)
			if got.Addr() != natAddr || got.Port() < rule.Ports.Lo || got.Port() > rule.Ports.Hi {
				t.Fatalf("server saw %s, want %s with a port in %d-%d", got, natAddr, rule.Ports.Lo, rule.Ports.Hi)
			}
		}
		return n
	}
	if n := further(destA, a.Free+2); n != a.Free {
		t.Errorf("kernel allowed %d further connections to %s, predicted %d", n, destA, a.Free)
	}
	if n := further(destB, b.Free+2); n != b.Free {
		t.Errorf("kernel allowed %d further connections to %s, predicted %d", n, destB, b.Free)
	}
	after := tp.snapshot(t)
	if after.Counters.InsertFailed <= before.Counters.InsertFailed {
		t.Errorf("conntrack insert_failed %d -> %d: the refused connections should count there",
			before.Counters.InsertFailed, after.Counters.InsertFailed)
	}
	for _, d := range []netip.AddrPort{destA, destB} {
		if got := budgetFor(t, after.Budgets(), d); got.Free != 0 {
			t.Errorf("%s: %d free after exhaustion, want 0", d, got.Free)
		}
	}
}

// The seed's "NAT trickery": behind a masquerading router two inside
// clients on the same source port keep it outside when their destinations
// differ; towards one destination the second is rewritten.
func TestMasqueradeKeepsSourcePortPerDestination(t *testing.T) {
	netnstest.RequireRoot(t)
	tp := newTopology(t, Rule{Masquerade: true, OutInterface: "r1"})
	c1 := netip.MustParseAddrPort("192.0.2.2:12345")
	c2 := netip.MustParseAddrPort("192.0.2.3:12345")

	if _, err := tp.dial(t, c1, destA); err != nil {
		t.Fatal(err)
	}
	if got := tp.outside(t); got != netip.AddrPortFrom(natAddr, 12345) {
		t.Errorf("first client seen as %s, want %s:12345", got, natAddr)
	}
	if _, err := tp.dial(t, c2, destB); err != nil {
		t.Fatal(err)
	}
	if got := tp.outside(t); got != netip.AddrPortFrom(natAddr, 12345) {
		t.Errorf("second client to another destination seen as %s, want the same port kept", got)
	}
	// A third client on port 12345 towards the first destination: the
	// outside four-tuple is taken, so the NAT picks another port.
	if _, err := tp.dial(t, netip.MustParseAddrPort("192.0.2.4:12345"), destA); err != nil {
		t.Fatal(err)
	}
	if got := tp.outside(t); got.Addr() != natAddr || got.Port() == 12345 {
		t.Errorf("third client to the first destination seen as %s, want %s with another port", got, natAddr)
	}
}

// A port range on the SNAT rule keeps a client's source port that is inside
// it (the kernel checks the original port first); fully-random makes the
// kernel search from a random offset every time, so the picks vary.
func TestSNATRangeKeepsInRangePortUnlessRandom(t *testing.T) {
	netnstest.RequireRoot(t)
	ports := sockopt.PortRange{Lo: 40000, Hi: 40009}
	for _, random := range []bool{false, true} {
		tp := newTopology(t, Rule{ToMin: natAddr, ToMax: natAddr, Ports: ports, OutInterface: "r1", FullyRandom: random})
		kept := 0
		for i := range 6 {
			// Six distinct destinations, so no outside tuple clashes:
			// every in-range port could be kept.
			dest := netip.AddrPortFrom(destA.Addr(), uint16(81+i))
			tp.listen(t, dest)
			src := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(40001+i))
			if _, err := tp.dial(t, src, dest); err != nil {
				t.Fatalf("random=%v dial %s -> %s: %v", random, src, dest, err)
			}
			if tp.outside(t).Port() == src.Port() {
				kept++
			}
		}
		if !random && kept != 6 {
			t.Errorf("without random the in-range source ports were kept %d times of 6, want every time", kept)
		}
		// The chance that six random picks from ten ports all hit the
		// source port is one in a million.
		if random && kept == 6 {
			t.Errorf("fully-random kept the source port all 6 times")
		}
		t.Logf("random=%v: source port kept %d of 6 times", random, kept)
	}
}
