package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// The test namespace: one source address and four destinations on lo.
var (
	src   = netip.MustParseAddr("10.0.0.1")
	dests = []string{"10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"}
)

const sinkPort = 8080

// newNS makes the namespace with a narrowed ephemeral range of 10 ports and a
// TCP listener on sinkPort for every address.
func newNS(t *testing.T) *netnstest.NS {
	t.Helper()
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.1.1/32", "10.0.1.2/32", "10.0.1.3/32", "10.0.1.4/32")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40009")
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", sinkPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ns
}

// dialAll dials per connections to each destination round-robin inside ns and
// returns the open connections and the first error. Connections are closed
// when t ends.
func dialAll(t *testing.T, ns *netnstest.NS, d *Dialer, network string, per int) ([]net.Conn, error) {
	t.Helper()
	return ns.DialN(t, per*len(dests), func(i int) (net.Conn, error) {
		return d.DialContext(context.Background(), network, fmt.Sprintf("%s:%d", dests[i%len(dests)], sinkPort))
	})
}

func localPorts(conns []net.Conn) map[int]int {
	ports := map[int]int{}
	for _, c := range conns {
		switch a := c.LocalAddr().(type) {
		case *net.TCPAddr:
			ports[a.Port]++
		case *net.UDPAddr:
			ports[a.Port]++
		}
	}
	return ports
}

// With a range of 10 ports and 4 destinations, kernel and shared hold 40
// connections at once (each port used once per destination); bind stops
// at 10 with EADDRINUSE because bind() reserves a port for every destination.
func TestPortBudgetPerPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		d       Dialer
		want    int
		wantErr error
	}{
		{"kernel", Dialer{Policy: Kernel}, 40, nil},
		{"shared", Dialer{Source: src, Policy: Shared}, 40, nil},
		{"default-with-source", Dialer{Source: src}, 40, nil},
		{"bind", Dialer{Source: src, Policy: Bind}, 10, syscall.EADDRINUSE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			conns, err := dialAll(t, ns, &tc.d, "tcp4", 10)
			if len(conns) != tc.want {
				t.Errorf("established %d connections, want %d (err %v)", len(conns), tc.want, err)
			}
			if tc.wantErr == nil && err != nil {
				t.Errorf("unexpected error: %v", err)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v, want one wrapping %v", err, tc.wantErr)
				}
				var op *net.OpError
				if !errors.As(err, &op) {
					t.Errorf("error %T is not a *net.OpError", err)
				}
				// One more attempt fails the same way: the budget is spent.
				if _, err2 := dialAll(t, ns, &tc.d, "tcp4", 1); !errors.Is(err2, tc.wantErr) {
					t.Errorf("next dial: %v, want %v", err2, tc.wantErr)
				}
			}
			ports := localPorts(conns)
			if len(ports) != 10 {
				t.Errorf("used %d distinct local ports, want the 10 of the range: %v", len(ports), ports)
			}
			for p, n := range ports {
				if p < 40000 || p > 40009 {
					t.Errorf("local port %d outside the namespace's range 40000-40009", p)
				}
				if want := tc.want / 10; n != want {
					t.Errorf("port %d used by %d connections, want %d", p, n, want)
				}
			}
			if tc.d.Source.IsValid() {
				for _, c := range conns {
					if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != src {
						t.Errorf("local address %s, want %s", got, src)
					}
				}
			}
			if tc.want == 40 {
				// Shared: the next connection to any destination finds no port.
				_, err := dialAll(t, ns, &tc.d, "tcp4", 1)
				if !errors.Is(err, syscall.EADDRNOTAVAIL) {
					t.Errorf("dial past the budget: %v, want EADDRNOTAVAIL", err)
				}
			}
		})
	}
}

// Fixed shares one port across destinations and refuses a taken four-tuple.
func TestFixedSharesPortAndRefusesTakenFourTuple(t *testing.T) {
	ns := newNS(t)
	d := &Dialer{Source: src, Policy: Fixed(5000)}
	conns, err := dialAll(t, ns, d, "tcp4", 1)
	if err != nil {
		t.Fatalf("fixed:5000 to 4 destinations: %v", err)
	}
	if ports := localPorts(conns); len(ports) != 1 || ports[5000] != 4 {
		t.Errorf("local ports %v, want 5000 for all 4 connections", ports)
	}
	_, err = dialAll(t, ns, d, "tcp4", 1) // 10.0.1.1 again: same four-tuple
	if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("second connection on the same four-tuple: %v, want EADDRNOTAVAIL", err)
	}
	if !strings.Contains(err.Error(), "four-tuple already in use") || !strings.Contains(err.Error(), "10.0.0.1:5000->10.0.1.1:8080") {
		t.Errorf("error does not name the taken four-tuple: %v", err)
	}
}

// Range(p, p) pins the port; it is still shared across destinations.
func TestRangePinsPort(t *testing.T) {
	ns := newNS(t)
	d := &Dialer{Source: src, Policy: Range(40005, 40005)}
	conns, err := dialAll(t, ns, d, "tcp4", 1)
	if err != nil {
		t.Fatalf("range:40005-40005 to 4 destinations: %v", err)
	}
	if ports := localPorts(conns); len(ports) != 1 || ports[40005] != 4 {
		t.Errorf("local ports %v, want 40005 for all 4 connections", ports)
	}
	if _, err := dialAll(t, ns, d, "tcp4", 1); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Errorf("fifth connection with a one-port range: %v, want EADDRNOTAVAIL", err)
	}
	// Without a source address the range applies to plain connect().
	d = &Dialer{Policy: Range(40003, 40003)}
	conns, err = dialAll(t, ns, d, "tcp4", 1)
	if err != nil {
		t.Fatalf("range without source: %v", err)
	}
	if ports := localPorts(conns); len(ports) != 1 || ports[40003] != 4 {
		t.Errorf("local ports %v, want 40003 for all 4 connections", ports)
	}
}

// UDP: two Fixed sockets connect to the same four-tuple without error (the
// kernel checks no four-tuple for UDP) and the newer one gets the datagrams.
func TestUDPFixedSameFourTuple(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.1.1/32")
	var peer net.PacketConn
	var older, newer net.Conn
	d := &Dialer{Source: src, Policy: Fixed(5000)}
	err := ns.Do(func() (err error) {
		if peer, err = net.ListenPacket("udp4", "10.0.1.1:9000"); err != nil {
			return err
		}
		if older, err = d.Dial("udp4", "10.0.1.1:9000"); err != nil {
			return err
		}
		newer, err = d.Dial("udp4", "10.0.1.1:9000")
		return err
	})
	for _, c := range []interface{ Close() error }{peer, older, newer} {
		if c != nil && c != (net.Conn)(nil) {
			defer c.Close()
		}
	}
	if err != nil {
		t.Fatalf("two fixed UDP sockets on one four-tuple: %v, want both to connect", err)
	}
	if older.LocalAddr().String() != "10.0.0.1:5000" || newer.LocalAddr().String() != "10.0.0.1:5000" {
		t.Fatalf("local addresses %s and %s, want 10.0.0.1:5000", older.LocalAddr(), newer.LocalAddr())
	}
	if _, err := peer.WriteTo([]byte("hi"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.0.0.1:5000"))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	newer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := newer.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Errorf("newer socket: read %q, %v; want the datagram", buf[:n], err)
	}
	older.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := older.Read(buf); err == nil {
		t.Errorf("older socket also read %q; want nothing", buf[:n])
	}
}

// UDP shares no port across destinations: connect() autobinds a port of its
// own for every socket, whatever the policy.
func TestUDPSharedTakesAPortPerSocket(t *testing.T) {
	ns := newNS(t)
	var peers []net.PacketConn
	defer func() {
		for _, p := range peers {
			p.Close()
		}
	}()
	if err := ns.Do(func() error {
		for _, a := range dests {
			p, err := net.ListenPacket("udp4", fmt.Sprintf("%s:%d", a, sinkPort))
			if err != nil {
				return err
			}
			peers = append(peers, p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []Dialer{{Source: src, Policy: Shared}, {Policy: Kernel}} {
		conns, err := dialAll(t, ns, &d, "udp4", 10)
		// connect() autobinds and reports exhaustion as EAGAIN.
		if len(conns) != 10 || !errors.Is(err, syscall.EAGAIN) {
			t.Errorf("UDP %s: %d sockets, err %v; want 10 then EAGAIN", d.Policy, len(conns), err)
		}
		for _, c := range conns {
			c.Close()
		}
	}
}

// ListenGroup's listeners share one port and all receive connections.
func TestListenGroupSpreadsConnections(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	var group []net.Listener
	if err := ns.Do(func() (err error) {
		group, err = ListenGroup(context.Background(), "tcp4", "10.0.0.1:0", 3)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range group {
			l.Close()
		}
	}()
	addr := group[0].Addr().String()
	for _, l := range group[1:] {
		if l.Addr().String() != addr {
			t.Fatalf("listener on %s, want %s like the first", l.Addr(), addr)
		}
	}
	const n = 60
	accepted := make(chan int, n)
	for i, l := range group {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
				accepted <- i
			}
		}()
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err := ns.Do(func() error {
		d := &Dialer{Policy: Kernel}
		for i := 0; i < n; i++ {
			c, err := d.Dial("tcp4", addr)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	per := map[int]int{}
	for i := 0; i < n; i++ {
		select {
		case l := <-accepted:
			per[l]++
		case <-time.After(5 * time.Second):
			t.Fatalf("accepted %d of %d connections", i, n)
		}
	}
	if len(per) < 2 {
		t.Errorf("all %d connections went to one listener (%v); want them spread", n, per)
	}
}

// Dialer.Control runs after the policy's options are set (it sees
// IP_BIND_ADDRESS_NO_PORT of policy shared) and before connect; its error
// ends the dial.
func TestDialerControlRunsAfterPolicy(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	noPort := -1
	d := &Dialer{Source: netip.MustParseAddr("127.0.0.1"), Policy: Shared,
		Control: func(network, address string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				noPort, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */)
			})
		}}
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if noPort != 1 {
		t.Errorf("Control saw IP_BIND_ADDRESS_NO_PORT = %d, want 1 (set by the policy first)", noPort)
	}
	refuse := errors.New("refused by Control")
	d.Control = func(string, string, syscall.RawConn) error { return refuse }
	if c, err := d.Dial("tcp4", ln.Addr().String()); !errors.Is(err, refuse) {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial with a failing Control: %v, want its error", err)
	}
}
