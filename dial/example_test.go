package dial_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/tuple-net/tuple/dial"
)

// A Dialer with a source address uses the Shared policy: the address is
// bound, the port is left to connect().
func ExampleDialer() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()

	d := &dial.Dialer{Source: netip.MustParseAddr("127.0.0.1")}
	conn, err := d.DialContext(context.Background(), "tcp4", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	fmt.Println("policy:", d.Policy.Kind(), "-> shared; from", local.Addr(), "port chosen:", local.Port() != 0)
	// Output: policy: default -> shared; from 127.0.0.1 port chosen: true
}

// Fixed uses one port for every destination and refuses a four-tuple that
// is already taken instead of quietly picking another port.
func ExampleFixed() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	port := freePort()

	d := &dial.Dialer{Source: netip.MustParseAddr("127.0.0.1"), Policy: dial.Fixed(port)}
	first, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer first.Close()
	fmt.Println("first uses the fixed port:", first.LocalAddr().(*net.TCPAddr).Port == int(port))

	_, err = d.Dial("tcp4", ln.Addr().String())
	fmt.Println("second on the same four-tuple fails with EADDRNOTAVAIL:", errors.Is(err, syscall.EADDRNOTAVAIL))
	// Output:
	// first uses the fixed port: true
	// second on the same four-tuple fails with EADDRNOTAVAIL: true
}

// Policies have a text form for flags and configuration.
func ExampleParsePolicy() {
	for _, s := range []string{"shared", "fixed:5000", "range:40000-40099", "fixed:0"} {
		p, err := dial.ParsePolicy(s)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(p.Kind(), p)
	}
	// Output:
	// shared shared
	// fixed fixed:5000
	// range range:40000-40099
	// error: policy "fixed:0": want fixed:PORT with PORT 1-65535
}

// A server opens a group of listeners on one port; the kernel spreads
// connections over them.
func ExampleListenGroup() {
	group, err := dial.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 4)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		for _, l := range group {
			l.Close()
		}
	}()
	same := true
	for _, l := range group {
		same = same && l.Addr().String() == group[0].Addr().String()
	}
	fmt.Println(len(group), "listeners on one port:", same)
	// Output: 4 listeners on one port: true
}

// freePort asks the kernel for a currently unused loopback port.
func freePort() uint16 {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}
