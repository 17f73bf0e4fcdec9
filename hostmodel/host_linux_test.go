package hostmodel

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/rules"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestReadHostInNamespace checks the local addresses and sysctls against a
// namespace the test configures.
func TestReadHostInNamespace(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40100")
	ns.Sysctl(t, "net.ipv4.ip_local_reserved_ports", "40001,40010-40012")
	ns.Sysctl(t, "net.ipv6.bindv6only", "1")
	var (
		host  rules.Host
		notes []string
	)
	err := ns.Do(func() (err error) {
		host, notes, err = ReadHost("")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.0/8", "10.0.0.1/32", "::1/128", "fd00::1/128"} {
		if !slices.Contains(host.Local, netip.MustParsePrefix(want)) {
			t.Errorf("local prefixes %v lack %s", host.Local, want)
		}
	}
	// 10.0.0.1/32 was added, not its subnet: a neighbour is not local.
	if slices.ContainsFunc(host.Local, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr("10.0.0.2")) }) {
		t.Errorf("local prefixes %v include the neighbour 10.0.0.2", host.Local)
	}
	if host.EphemeralRange.Lo != 40000 || host.EphemeralRange.Hi != 40100 || len(host.ReservedPorts) != 2 || !host.BindV6Only {
		t.Errorf("sysctls not read from the namespace: %+v", host)
	}
	t.Logf("notes: %q", notes)
}

func FuzzParseAddrs6(f *testing.F) {
	if b, err := syscall.NetlinkRIB(syscall.RTM_GETADDR, syscall.AF_INET6); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAddrs6(b)
		if err != nil {
			return
		}
		for _, p := range a.local {
			if !p.Addr().Is6() || p.Bits() != 128 {
				t.Fatalf("bad prefix %v", p)
			}
		}
		for _, s := range a.scoped {
			if !slices.Contains(a.local, netip.PrefixFrom(s.Addr, 128)) {
				t.Fatalf("scoped address %v is not among the local ones %v", s.Addr, a.local)
			}
		}
	})
}

// TestTentativeAddressNotLocal: an IPv6 address still in duplicate address
// detection cannot be bound, and is not reported local.
func TestTentativeAddressNotLocal(t *testing.T) {
	ns := netnstest.New(t)
	ns.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ns.Sysctl(t, "net.ipv6.conf.v0.dad_transmits", "10")
	ns.Sysctl(t, "net.ipv6.conf.v0.accept_dad", "1")
	ns.IP(t, "link", "set", "v1", "up")
	ns.IP(t, "link", "set", "v0", "up")
	ns.IP(t, "addr", "add", "fd00::5/128", "dev", "v0")
	var local []netip.Prefix
	var bindErr error
	if err := ns.Do(func() (err error) {
		local, _, err = localAddrs()
		fd, serr := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if serr != nil {
			return serr
		}
		defer syscall.Close(fd)
		bindErr = syscall.Bind(fd, &syscall.SockaddrInet6{Addr: netip.MustParseAddr("fd00::5").As16()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if bindErr == nil {
		t.Skip("fd00::5 left duplicate address detection before the test looked; nothing to compare")
	}
	if slices.Contains(local, netip.MustParsePrefix("fd00::5/128")) {
		t.Errorf("tentative fd00::5 reported local, but bind gives %v", bindErr)
	}
}

func FuzzParseLocalRoutes(f *testing.F) {
	if b, err := syscall.NetlinkRIB(syscall.RTM_GETROUTE, syscall.AF_UNSPEC); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := parseLocalRoutes(b)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() {
				t.Fatalf("invalid prefix %v", p)
			}
		}
	})
}

// rtmsgFrame frames one netlink message of typ with flags and payload.
func rtmsgFrame(typ, flags uint16, payload []byte) []byte {
	n := syscall.NLMSG_HDRLEN + len(payload)
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint32(b, uint32(n))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	copy(b[syscall.NLMSG_HDRLEN:], payload)
	return b
}

// TestDumpErrorsNotSwallowed: a dump that failed part way (an errno in
// NLMSG_DONE) or that the kernel flagged inconsistent (NLM_F_DUMP_INTR) is
// an error, not a short list of local addresses.
func TestDumpErrorsNotSwallowed(t *testing.T) {
	local := make([]byte, 12+8)
	local[0], local[1], local[7] = syscall.AF_INET, 8, syscall.RTN_LOCAL
	binary.NativeEndian.PutUint16(local[12:], 8)
	binary.NativeEndian.PutUint16(local[14:], syscall.RTA_DST)
	copy(local[16:], []byte{127, 0, 0, 0})
	done := func(errno int32) []byte {
		p := make([]byte, 4)
		binary.NativeEndian.PutUint32(p, uint32(errno))
		return rtmsgFrame(syscall.NLMSG_DONE, 0x2, p)
	}
	ok := append(rtmsgFrame(syscall.RTM_NEWROUTE, 0x2, local), done(0)...)
	if ps, err := parseLocalRoutes(ok); err != nil || len(ps) != 1 || ps[0] != netip.MustParsePrefix("127.0.0.0/8") {
		t.Fatalf("well-formed dump: %v, %v", ps, err)
	}
	failed := append(rtmsgFrame(syscall.RTM_NEWROUTE, 0x2, local), done(-int32(syscall.ENOBUFS))...)
	if _, err := parseLocalRoutes(failed); !errors.Is(err, syscall.ENOBUFS) {
		t.Errorf("NLMSG_DONE carrying ENOBUFS: err %v, want ENOBUFS", err)
	}
	intr := append(rtmsgFrame(syscall.RTM_NEWROUTE, 0x2|0x10, local), done(0)...)
	if _, err := parseLocalRoutes(intr); !errors.Is(err, errDumpInterrupted) {
		t.Errorf("NLM_F_DUMP_INTR route dump: err %v, want errDumpInterrupted", err)
	}
	if _, err := parseAddrs6(rtmsgFrame(syscall.NLMSG_DONE, 0x2|0x10, make([]byte, 4))); !errors.Is(err, errDumpInterrupted) {
		t.Errorf("NLM_F_DUMP_INTR address dump: err %v, want errDumpInterrupted", err)
	}
}

// TestScopedAddressesInNamespace: ReadHost lists the addresses of link and
// host scope with their devices (rules.Host.Scoped), and no global one.
func TestScopedAddressesInNamespace(t *testing.T) {
	ns := netnstest.New(t, "fd00::1/128")
	ns.LinkLocalOn(t, "d0", "d1", "fe80::1/64")
	var host rules.Host
	var d0 int
	if err := ns.Do(func() (err error) {
		ifi, err := net.InterfaceByName("d0")
		if err != nil {
			return err
		}
		d0 = ifi.Index
		host, _, err = ReadHost("")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []rules.ScopedAddr{{Addr: netip.MustParseAddr("::1"), Dev: rules.LoopbackIndex}, {Addr: netip.MustParseAddr("fe80::1"), Dev: d0}} {
		if !slices.Contains(host.Scoped, want) {
			t.Errorf("scoped addresses %v lack %v", host.Scoped, want)
		}
	}
	if slices.ContainsFunc(host.Scoped, func(s rules.ScopedAddr) bool { return s.Addr == netip.MustParseAddr("fd00::1") }) {
		t.Errorf("scoped addresses %v list the global fd00::1", host.Scoped)
	}
}

// TestParseRoute: a route message gives the route's type and the source
// the kernel picked; a source of the other family is an error.
func TestParseRoute(t *testing.T) {
	route := make([]byte, 12+8)
	route[0], route[7] = syscall.AF_INET, syscall.RTN_UNICAST
	binary.NativeEndian.PutUint16(route[12:], 8)
	binary.NativeEndian.PutUint16(route[14:], syscall.RTA_PREFSRC)
	copy(route[16:], []byte{10, 0, 0, 1})
	r, err := parseRoute(route)
	if err != nil || r.typ != syscall.RTN_UNICAST || r.prefSrc != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("a route from 10.0.0.1: %+v, %v", r, err)
	}
	route[0] = syscall.AF_INET6 // a 4-byte source for IPv6
	if _, err := parseRoute(route); err == nil {
		t.Error("an IPv6 route with a 4-byte source: no error")
	}
}

// TestRouteGetErrno: a lookup the kernel refuses (a prohibit rule for
// TCP to one port) gives its errno, and the source it was made from; the
// same lookup for UDP passes and names the source the kernel picked.
func TestRouteGetErrno(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/24")
	ns.IP(t, "route", "add", "default", "via", "10.0.0.254")
	ns.IP(t, "rule", "add", "ipproto", "6", "dport", "8444", "prohibit")
	peer := netip.MustParseAddrPort("10.9.9.9:8444")
	if err := ns.Do(func() error {
		c, err := dialRoute()
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = routeGet(c, peer, netip.AddrPort{}, syscall.IPPROTO_TCP, routeSocket{})
		var from *lookupFrom
		if !errors.Is(err, syscall.EACCES) || !errors.As(err, &from) {
			t.Errorf("TCP lookup under a prohibit rule: %v, want EACCES from a lookupFrom", err)
		}
		if src, err := routeGet(c, peer, netip.AddrPort{}, syscall.IPPROTO_UDP, routeSocket{}); err != nil || src != netip.MustParseAddr("10.0.0.1") {
			t.Errorf("UDP lookup: %v, %v; want source 10.0.0.1", src, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseRoute(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseRoute(b); err == nil && len(b) < rtmsgLen {
			t.Fatalf("%d bytes read as a route", len(b))
		}
	})
}
