package cli

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/sockopt"
)

// TestWhoSameWithoutIterator: who takes the options of every socket the
// BPF socket iterator reports from its records instead of each owner's
// descriptor; where the iterator cannot run (not root, no BTF) it reads
// them through the owners. Both ways must print the same, in every output
// form, for sockets with each option who shows.
func TestWhoSameWithoutIterator(t *testing.T) {
	ns := netnstest.New(t)
	ns.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	const port = 7311
	at := func(a string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(a), port) }
	err := ns.Do(func() error {
		for _, s := range []struct {
			proto  inet.Proto
			addr   netip.AddrPort
			o      sockopt.Options
			listen bool
		}{
			{inet.TCP, at("127.0.0.1"), sockopt.Options{ReuseAddr: true, ReusePort: true}, true},
			{inet.TCP, at("127.0.0.1"), sockopt.Options{ReuseAddr: true, ReusePort: true}, true},
			{inet.TCP, at("::"), sockopt.Options{V6Only: sockopt.V6OnlyOn, Freebind: true, Device: "v0"}, true},
			{inet.TCP, at("127.0.0.2"), sockopt.Options{BindAddressNoPort: true}, false},
			{inet.UDP, at("127.0.0.1"), sockopt.Options{BindAddressNoPort: true, Device: "lo"}, false},
			{inet.UDP, at("::1"), sockopt.Options{Freebind: true, ReuseAddr: true}, false},
		} {
			if _, err := netnstest.Socket(t, s.proto, s.addr, s.o, s.listen); err != nil {
				return err
			}
		}
		// An accepted connection: an owned socket in ESTABLISHED, without
		// keepalive (its timer would differ between runs).
		l, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.3:"+fmt.Sprint(port))
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		c, err := (&net.Dialer{KeepAlive: -1}).Dial("tcp", l.Addr().String())
		if err != nil {
			return err
		}
		t.Cleanup(func() { c.Close() })
		a, err := l.Accept()
		if err != nil {
			return err
		}
		t.Cleanup(func() { a.Close() })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	forms := [][]string{{"who", fmt.Sprint(port)}, {"who", fmt.Sprint(port), "--all"}, {"who", fmt.Sprint(port), "--json"}, {"who", "127.0.0.1:" + fmt.Sprint(port)}}
	withIter := map[string]string{}
	for _, args := range forms {
		code, out, errOut := runIn(t, ns, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		withIter[strings.Join(args, " ")] = out
	}
	// The options are in the output, read either way.
	for _, want := range []string{"options: reuseaddr reuseport\n", "options: v6only freebind dev=v0\n", "options: bind_address_no_port\n",
		"options: bind_address_no_port dev=lo\n", "options: reuseaddr v6only freebind\n"} {
		if !strings.Contains(withIter["who "+fmt.Sprint(port)], want) {
			t.Errorf("who %d lacks %q:\n%s", port, want, withIter["who "+fmt.Sprint(port)])
		}
	}
	real := kernelRecords
	t.Cleanup(func() { kernelRecords = real })
	kernelRecords = func(inet.Proto, uint16, ...sockfacts.Option) func() ([]sockfacts.Sock, error) {
		return func() ([]sockfacts.Sock, error) { return nil, inet.Unsupported("BPF socket iterator (test)") }
	}
	for _, args := range forms {
		code, out, errOut := runIn(t, ns, args...)
		if code != 0 {
			t.Fatalf("%v without the iterator: exit %d: %s", args, code, errOut)
		}
		if k := strings.Join(args, " "); out != withIter[k] {
			t.Errorf("%s with the iterator and without differ (-with +without):\n%s", k, cmp.Diff(strings.Split(withIter[k], "\n"), strings.Split(out, "\n")))
		}
	}
}
