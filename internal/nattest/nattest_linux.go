package nattest

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// The topology's addresses: inside clients 192.0.2.2-.4 behind the router
// (192.0.2.1 inside, NATAddr on the outside link "r1"), and the server's
// two destinations, each listening on port 80.
var (
	NATAddr = netip.MustParseAddr("198.51.100.1")
	DestA   = netip.MustParseAddrPort("198.51.100.2:80")
	DestB   = netip.MustParseAddrPort("198.51.100.3:80")
)

// OutInterface is the router's interface towards the server.
const OutInterface = "r1"

// Topology is the three namespaces and the server's accepted connections.
type Topology struct {
	Client, Router, Server *netnstest.NS
	accepted               chan net.Conn
	mu                     sync.Mutex
	listeners              []net.Listener
	wg                     sync.WaitGroup
}

// New builds the topology; apply installs the router's NAT rules, given a
// descriptor of the router's namespace. Everything is removed at the
// test's end.
func New(t *testing.T, apply func(routerNS int) error) *Topology {
	t.Helper()
	netnstest.RequireRoot(t)
	tp := &Topology{Client: netnstest.New(t), Router: netnstest.New(t), Server: netnstest.New(t),
		accepted: make(chan net.Conn, 64)}
	tp.Client.IP(t, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", tp.Router.Name)
	tp.Router.IP(t, "link", "add", OutInterface, "type", "veth", "peer", "name", "s0", "netns", tp.Server.Name)
	for _, a := range []string{"192.0.2.2/24", "192.0.2.3/24", "192.0.2.4/24"} {
		tp.Client.IP(t, "addr", "add", a, "dev", "c0")
	}
	tp.Client.IP(t, "link", "set", "c0", "up")
	tp.Client.IP(t, "route", "add", "default", "via", "192.0.2.1")
	tp.Router.IP(t, "addr", "add", "192.0.2.1/24", "dev", "r0")
	tp.Router.IP(t, "addr", "add", NATAddr.String()+"/24", "dev", OutInterface)
	tp.Router.IP(t, "link", "set", "r0", "up")
	tp.Router.IP(t, "link", "set", OutInterface, "up")
	tp.Router.Sysctl(t, "net.ipv4.ip_forward", "1")
	tp.Server.IP(t, "addr", "add", DestA.Addr().String()+"/24", "dev", "s0")
	tp.Server.IP(t, "addr", "add", DestB.Addr().String()+"/24", "dev", "s0")
	tp.Server.IP(t, "link", "set", "s0", "up")

	fd, err := os.Open("/run/netns/" + tp.Router.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := apply(int(fd.Fd())); err != nil {
		t.Fatal(err)
	}
	for _, d := range []netip.AddrPort{DestA, DestB} {
		tp.Listen(t, d)
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

// Listen starts a server on d in the server namespace that hands every
// accepted connection to Outside.
func (tp *Topology) Listen(t *testing.T, d netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := tp.Server.Do(func() (err error) {
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

// Dial connects from the client namespace, from src (zero: the kernel
// picks), bounded by a timeout: a SYN the NAT drops shows as a timeout.
// The connection stays open until the test ends.
func (tp *Topology) Dial(t *testing.T, src, dest netip.AddrPort) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := tp.Client.Do(func() (err error) {
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

// Outside is the source the server saw for the next accepted connection.
func (tp *Topology) Outside(t *testing.T) netip.AddrPort {
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

// Open opens n connections to dest from kernel-picked source ports; each
// must arrive.
func (tp *Topology) Open(t *testing.T, dest netip.AddrPort, n int) {
	t.Helper()
	for i := range n {
		if _, err := tp.Dial(t, netip.AddrPort{}, dest); err != nil {
			t.Fatalf("connection %d to %s: %v", i+1, dest, err)
		}
		tp.Outside(t)
	}
}

// Further opens connections to dest until the kernel refuses one (the NAT
// drops it: a connect timeout) or limit is reached, and returns how many
// it allowed. Each allowed connection must reach the server from NATAddr
// with a port in lo-hi.
func (tp *Topology) Further(t *testing.T, dest netip.AddrPort, limit int, lo, hi uint16) int {
	t.Helper()
	n := 0
	for ; n < limit; n++ {
		_, err := tp.Dial(t, netip.AddrPort{}, dest)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("connection to %s failed other than by the NAT dropping it: %v", dest, err)
			}
			return n
		}
		got := tp.Outside(t)
		if got.Addr() != NATAddr || got.Port() < lo || got.Port() > hi {
			t.Fatalf("server saw %s, want %s with a port in %d-%d", got, NATAddr, lo, hi)
		}
	}
	return n
}
