package hostmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
)

// localAddrs lists the addresses bind() accepts without
// ip_nonlocal_bind in the calling thread's network namespace, as the kernel
// judges them: for IPv4 the RTN_LOCAL routes (inet_addr_type, which makes
// all of loopback's 127.0.0.0/8 local), for IPv6 the interfaces' addresses
// that are not tentative (ipv6_chk_addr; the local route of a new IPv6
// address appears only after a moment, the address is usable at once). It
// dumps routes and addresses over rtnetlink with the standard library's
// NetlinkRIB; no higher-level call returns route types or address flags.
// A dump the kernel marks interrupted (addresses changed under it) is run
// once more before its error is returned. It also lists the IPv6
// addresses of link or host scope with their devices (rules.Host.Scoped).
func localAddrs() ([]netip.Prefix, []rules.ScopedAddr, error) {
	v4, err := dumpTwice(syscall.RTM_GETROUTE, syscall.AF_INET, "netlink route dump", parseLocalRoutes)
	if err != nil {
		return nil, nil, err
	}
	v6, err := dumpTwice(syscall.RTM_GETADDR, syscall.AF_INET6, "netlink address dump", parseAddrs6)
	if err != nil {
		return nil, nil, err
	}
	var out []netip.Prefix
	for _, p := range v4 {
		if p.Addr().Is4() {
			out = append(out, p)
		}
	}
	return append(out, v6.local...), v6.scoped, nil
}

// dumpTwice runs one rtnetlink dump and parses it, again when the kernel
// flagged it interrupted.
func dumpTwice[T any](typ, family int, what string, parse func([]byte) (T, error)) (T, error) {
	var out T
	var err error
	for range 2 {
		b, derr := syscall.NetlinkRIB(typ, family)
		if derr != nil {
			return out, os.NewSyscallError(what, derr)
		}
		if out, err = parse(b); !errors.Is(err, errDumpInterrupted) {
			break
		}
	}
	return out, err
}

// errDumpInterrupted is a dump flagged NLM_F_DUMP_INTR: the table changed
// while it was read, so entries may be missing.
var errDumpInterrupted = errors.New("dump interrupted (NLM_F_DUMP_INTR): the table changed while it was read")

// dumpErr is the error a dump message carries: the errno of an NLMSG_ERROR
// or of an NLMSG_DONE that ends a failed dump, or errDumpInterrupted.
func dumpErr(m *syscall.NetlinkMessage) error {
	const nlmFDumpIntr = 0x10
	if m.Header.Flags&nlmFDumpIntr != 0 {
		return errDumpInterrupted
	}
	if (m.Header.Type == syscall.NLMSG_ERROR || m.Header.Type == syscall.NLMSG_DONE) && len(m.Data) >= 4 {
		if e := int32(binary.NativeEndian.Uint32(m.Data)); e < 0 {
			return syscall.Errno(-e)
		}
	}
	return nil
}

// ifaddrmsg is struct ifaddrmsg: family, prefixlen, flags, scope (bytes),
// index (u32).
const (
	ifaddrmsgLen  = 8
	rtScopeLink   = 253 // RT_SCOPE_LINK: fe80::/10
	rtScopeHost   = 254 // RT_SCOPE_HOST: ::1
	ifaFlags      = 8   // IFA_FLAGS: the flags as a u32
	ifaFTentative = 0x40
	ifaFDadFailed = 0x08
)

// addrs6 is what an IPv6 address dump tells the model: the usable
// addresses (as /128 prefixes), and those of link or host scope with the
// device each is on.
type addrs6 struct {
	local  []netip.Prefix
	scoped []rules.ScopedAddr
}

// parseAddrs6 reads an RTM_NEWADDR dump, leaving out tentative addresses
// and those whose duplicate address detection failed.
func parseAddrs6(b []byte) (addrs6, error) {
	var out addrs6
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return out, fmt.Errorf("address dump: %w", err)
	}
	for i := range msgs {
		m := &msgs[i]
		if err := dumpErr(m); err != nil {
			return addrs6{}, fmt.Errorf("address dump: %w", err)
		}
		if m.Header.Type != syscall.RTM_NEWADDR {
			continue
		}
		if len(m.Data) < ifaddrmsgLen {
			return addrs6{}, fmt.Errorf("address dump: message of %d bytes, shorter than ifaddrmsg", len(m.Data))
		}
		if m.Data[0] != syscall.AF_INET6 {
			continue
		}
		flags, scope, dev := uint32(m.Data[2]), m.Data[3], int(binary.NativeEndian.Uint32(m.Data[4:8]))
		attrs, err := routeAttrs(m.Data[ifaddrmsgLen:])
		if err != nil {
			return addrs6{}, fmt.Errorf("address dump: %w", err)
		}
		var addr netip.Addr
		for _, a := range attrs {
			switch a.typ {
			case syscall.IFA_ADDRESS:
				if v, ok := netip.AddrFromSlice(a.value); ok && v.Is6() {
					addr = v
				}
			case ifaFlags:
				if len(a.value) == 4 {
					flags = binary.NativeEndian.Uint32(a.value)
				}
			}
		}
		if !addr.IsValid() || flags&(ifaFTentative|ifaFDadFailed) != 0 {
			continue
		}
		out.local = append(out.local, netip.PrefixFrom(addr, 128))
		if scope == rtScopeLink || scope == rtScopeHost {
			out.scoped = append(out.scoped, rules.ScopedAddr{Addr: addr, Dev: dev})
		}
	}
	return out, nil
}

// rtmsg is struct rtmsg: family, dst_len, src_len, tos, table, protocol,
// scope, type (bytes), flags (u32).
const rtmsgLen = 12

// parseLocalRoutes extracts the destinations of RTN_LOCAL routes from an
// RTM_NEWROUTE dump. Messages of other types are skipped; a truncated or
// malformed message is an error.
func parseLocalRoutes(b []byte) ([]netip.Prefix, error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, fmt.Errorf("route dump: %w", err)
	}
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
	for i := range msgs {
		m := &msgs[i]
		if err := dumpErr(m); err != nil {
			return nil, fmt.Errorf("route dump: %w", err)
		}
		if m.Header.Type != syscall.RTM_NEWROUTE {
			continue
		}
		if len(m.Data) < rtmsgLen {
			return nil, fmt.Errorf("route dump: message of %d bytes, shorter than rtmsg", len(m.Data))
		}
		family, dstLen, typ := m.Data[0], int(m.Data[1]), m.Data[7]
		if typ != syscall.RTN_LOCAL {
			continue
		}
		attrs, err := routeAttrs(m.Data[rtmsgLen:])
		if err != nil {
			return nil, fmt.Errorf("route dump: %w", err)
		}
		for _, a := range attrs {
			if a.typ != syscall.RTA_DST {
				continue
			}
			addr, ok := netip.AddrFromSlice(a.value)
			if !ok || (family == syscall.AF_INET) != addr.Is4() {
				return nil, fmt.Errorf("route dump: destination of %d bytes for family %d", len(a.value), family)
			}
			p, err := addr.Prefix(dstLen)
			if err != nil {
				return nil, fmt.Errorf("route dump: %w", err)
			}
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// routeAttr is one rtnetlink attribute: its type and its value.
type routeAttr struct {
	typ   uint16
	value []byte
}

// routeAttrs splits the attributes that follow a message's fixed header
// with mdlayher/netlink's decoder, which checks every length against the
// bytes present (syscall.ParseNetlinkRouteAttr trusts them and panics on a
// short attribute).
func routeAttrs(b []byte) ([]routeAttr, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	var out []routeAttr
	for ad.Next() {
		out = append(out, routeAttr{typ: ad.Type(), value: ad.Bytes()})
	}
	return out, ad.Err()
}

// sourceFor returns the local address the kernel's route lookup picks for
// a UDP connect() to peer from socket as bound to src (an invalid address:
// none; bound with IP_FREEBIND, so that an address not yet local is looked
// up as well): it connects a UDP socket, which sends nothing, and reads its
// address. The probe is as's socket: bound to its device, with its mark
// (SO_MARK, which takes CAP_NET_ADMIN), owned by its uid where the caller
// may make it so (socketAs). It has the connection's ports, so that policy
// routing by port (ip rule dport, sport) sees what the connect() would:
// peer's port, and src's when the UDP port is free (a port held by a UDP
// socket is looked up without). tcpSourceFor and udpSourceFor call it for
// a source the kernel does not take as local, which a lookup over
// rtnetlink refuses, and udpSourceFor for a plain UDP connect().
func sourceFor(peer, src netip.AddrPort, as routeSocket) (netip.Addr, error) {
	local, err := probeSource(peer, src, as)
	var se *os.SyscallError
	if src.Port() != 0 && errors.As(err, &se) && se.Syscall == bindProbeCall {
		// The UDP port is held, or privileged to the caller: looked
		// up without it.
		local, err = probeSource(peer, netip.AddrPortFrom(src.Addr(), 0), as)
	}
	return local, err
}

// socketAs creates a socket whose owner (sk_uid, which route lookups
// match ip rule uidrange against) is uid: the thread's filesystem uid is
// uid's while socket() runs, which only root may set (setfsuid leaves it
// otherwise, and the socket is the caller's).
func socketAs(uid uint32, family, typ int) (int, error) {
	if int(uid) == os.Geteuid() {
		return syscall.Socket(family, typ, 0)
	}
	runtime.LockOSThread() // setfsuid is the thread's
	defer runtime.UnlockOSThread()
	prev, err := unix.SetfsuidRetUid(int(uid))
	if err != nil {
		return syscall.Socket(family, typ, 0) // not permitted: the caller's
	}
	defer func() { _, _ = unix.SetfsuidRetUid(prev) }() // back to what it was: root may
	return syscall.Socket(family, typ, 0)
}

// bindProbeCall names the probe's bind in its errors.
const bindProbeCall = "bind (route lookup)"

// probeSource is one probe of sourceFor.
func probeSource(peerPort, src netip.AddrPort, as routeSocket) (netip.Addr, error) {
	peer, port := peerPort.Addr(), int(peerPort.Port())
	if port == 0 {
		port = 9 // discard: a port is needed, any will do
	}
	family := syscall.AF_INET
	if !peer.Unmap().Is4() {
		family = syscall.AF_INET6
	}
	fd, err := socketAs(as.uid, family, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC)
	if err != nil {
		return netip.Addr{}, os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	if as.dev != 0 {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, unix.SO_BINDTOIFINDEX, as.dev); err != nil {
			return netip.Addr{}, os.NewSyscallError("setsockopt SO_BINDTOIFINDEX", err)
		}
	}
	if err := (sockopt.Options{Mark: as.mark}).Apply(uintptr(fd), family == syscall.AF_INET6); err != nil {
		return netip.Addr{}, err // names SO_MARK
	}
	if err := bindProbe(fd, family, src); err != nil {
		return netip.Addr{}, err
	}
	var sa syscall.Sockaddr
	if family == syscall.AF_INET {
		sa = &syscall.SockaddrInet4{Addr: peer.Unmap().As4(), Port: port}
	} else {
		sa = &syscall.SockaddrInet6{Addr: peer.As16(), Port: port, ZoneId: uint32(rules.ZoneDev(peer))}
	}
	if err := syscall.Connect(fd, sa); err != nil {
		return netip.Addr{}, os.NewSyscallError("connect (route lookup)", err)
	}
	local, err := syscall.Getsockname(fd)
	if err != nil {
		return netip.Addr{}, os.NewSyscallError("getsockname", err)
	}
	switch a := local.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(a.Addr), nil
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(a.Addr), nil
	}
	return netip.Addr{}, fmt.Errorf("getsockname: unexpected address %T", local)
}

// bindProbe binds sourceFor's socket fd to src: to its address when that
// is a specific one of the socket's family (an IPv4 source for an IPv4
// peer), with IP_FREEBIND, and to its port, on the wildcard address when
// the address is not a specific one.
func bindProbe(fd, family int, src netip.AddrPort) error {
	addr, port := src.Addr().Unmap(), int(src.Port())
	specific := addr.IsValid() && !addr.IsUnspecified()
	if specific && addr.Is4() != (family == syscall.AF_INET) {
		specific = false // the other family's address: the socket cannot take it
	}
	if !specific && port == 0 {
		return nil
	}
	var sa syscall.Sockaddr
	if family == syscall.AF_INET {
		sa4 := &syscall.SockaddrInet4{Port: port}
		if specific {
			sa4.Addr = addr.As4()
			if err := syscall.SetsockoptInt(fd, syscall.SOL_IP, unix.IP_FREEBIND, 1); err != nil {
				return os.NewSyscallError("setsockopt IP_FREEBIND", err)
			}
		}
		sa = sa4
	} else {
		sa6 := &syscall.SockaddrInet6{Port: port}
		if specific {
			sa6.Addr, sa6.ZoneId = src.Addr().As16(), uint32(rules.ZoneDev(src.Addr()))
			if err := syscall.SetsockoptInt(fd, syscall.SOL_IPV6, unix.IPV6_FREEBIND, 1); err != nil {
				return os.NewSyscallError("setsockopt IPV6_FREEBIND", err)
			}
		}
		sa = sa6
	}
	return os.NewSyscallError(bindProbeCall, syscall.Bind(fd, sa))
}
