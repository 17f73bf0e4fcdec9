package rules

import (
	"net/netip"

	"github.com/tuple-net/tuple/inet"
)

// The kernel caches, per TCP port (struct inet_bind_bucket), the reuse
// options of the sockets that bound it (fastreuse, fastreuseport with the
// uid and address of the last SO_REUSEPORT binder), so a later bind can
// skip the conflict scan. The cache is updated only as sockets bind
// (inet_csk_update_fastreuse), so it lets binds through that the
// per-socket rules reject: after a reuseport socket of uid U bound
// 0.0.0.0, any reuseport socket of uid U whose IPv4 view of its address is
// covered (127.0.0.1, or an IPv6 socket on ::) skips the check, even when
// another owner (an accepted child of another uid) would conflict.
// The model rebuilds the cache by replaying the port's owners in World
// order (oldest first), as their binds would have updated it.

// kaddr is a socket's local address as the kernel stores it.
type kaddr struct {
	fam    inet.Family
	v4     netip.Addr // sk_rcv_saddr: the IPv4 view (127.0.0.6 for a non-mapped IPv6 address)
	v6     netip.Addr // sk_v6_rcv_saddr, AF_INET6 only
	v6only bool
}

var loopback4IPv6 = netip.AddrFrom4([4]byte{127, 0, 0, 6}) // LOOPBACK4_IPV6

func kaddrOf(fam inet.Family, a netip.Addr, v6only bool) kaddr {
	fam = familyOf(fam, a)
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
		if fam == inet.IPv6 {
			a = netip.IPv6Unspecified()
		}
	}
	a = a.WithZone("")
	if fam == inet.IPv4 {
		return kaddr{fam: inet.IPv4, v4: a.Unmap()}
	}
	k := kaddr{fam: inet.IPv6, v6: netip.AddrFrom16(a.As16()), v6only: v6only}
	switch {
	case a.Is4() || a.Is4In6():
		k.v4 = a.Unmap()
	case a.IsUnspecified():
		k.v4 = netip.IPv4Unspecified()
	default:
		k.v4 = loopback4IPv6
	}
	return k
}

type v6type uint8

const (
	v6Any v6type = iota
	v6Mapped
	v6Other
)

func typeOf(a netip.Addr) v6type {
	switch {
	case a.Is4In6():
		return v6Mapped
	case a.IsUnspecified():
		return v6Any
	}
	return v6Other
}

// ipv4Equal is the kernel's ipv4_rcv_saddr_equal.
func ipv4Equal(a1, a2 netip.Addr, sk2v6only, w1, w2 bool) bool {
	if sk2v6only {
		return false
	}
	if a1 == a2 {
		return true
	}
	return (w1 && a1.IsUnspecified()) || (w2 && a2.IsUnspecified())
}

// ipv6Equal is the kernel's ipv6_rcv_saddr_equal; sk2 without an IPv6
// address (AF_INET) counts as mapped.
func ipv6Equal(s1 kaddr, s2 kaddr, w1, w2 bool) bool {
	t1 := typeOf(s1.v6)
	t2 := v6Mapped
	if s2.fam == inet.IPv6 {
		t2 = typeOf(s2.v6)
	}
	if t1 == v6Mapped && t2 == v6Mapped {
		return ipv4Equal(s1.v4, s2.v4, s2.v6only, w1, w2)
	}
	if t1 == v6Any && t2 == v6Any {
		return true
	}
	if t2 == v6Any && w2 && !(s2.v6only && t1 == v6Mapped) {
		return true
	}
	if t1 == v6Any && w1 && !(s1.v6only && t2 == v6Mapped) {
		return true
	}
	return s2.fam == inet.IPv6 && s1.v6 == s2.v6
}

const (
	fastAny    = 1 // FASTREUSEPORT_ANY
	fastStrict = 2 // FASTREUSEPORT_STRICT
)

// bucket is the cached state of one port's inet_bind_bucket.
type bucket struct {
	owners        int
	fastreuse     int8
	fastreuseport int8
	fastuid       uint32
	fast          kaddr
}

// reuseportMatch is sk_reuseport_match.
func (b *bucket) reuseportMatch(s Socket, k kaddr) bool {
	if b.fastreuseport <= 0 || !s.ReusePort || s.InGroup || b.fastuid != s.UID {
		return false
	}
	if b.fastreuseport == fastAny {
		return true
	}
	if b.fast.fam == inet.IPv6 {
		return ipv6Equal(b.fast, k, true, false)
	}
	return ipv4Equal(b.fast.v4, k.v4, k.v6only, true, false)
}

// update is inet_csk_update_fastreuse for socket s binding (listen: s
// entering LISTEN) the port, past its "first owner" branch (first).
func (b *bucket) update(s Socket, k kaddr, listen bool) {
	if !s.ReuseAddr || listen {
		b.fastreuse = 0
	}
	if !s.ReusePort {
		b.fastreuseport = 0
	} else if !b.reuseportMatch(s, k) {
		b.fastreuseport, b.fastuid, b.fast = fastStrict, s.UID, k
	}
}

// first is inet_csk_update_fastreuse's branch for the port's first owner,
// s binding it (not listening): fastreuse is its SO_REUSEADDR, and with
// SO_REUSEPORT the cache is FASTREUSEPORT_ANY for its uid and address, so
// any later SO_REUSEPORT bind of that uid skips the conflict check,
// whoever joined the port since (an accepted child of another uid).
// Kernels before 6.8 take it (Kernel.firstOwnerSetsFastreuse); later ones
// never do.
func (b *bucket) first(s Socket, k kaddr) {
	b.fastreuse = 0
	if s.ReuseAddr {
		b.fastreuse = 1
	}
	b.fastreuseport = 0
	if s.ReusePort {
		b.fastreuseport, b.fastuid, b.fast = fastAny, s.UID, k
	}
}

// bucketFor replays the TCP owners of port, in World order, into the
// kernel's cached bucket state. Owners added without a cache update are
// counted only: connect()-bound sockets (__inet_hash_connect) and accepted
// children (__inet_inherit_port updates only for a tproxy port change),
// recognised as connected sockets sharing a listener's port, address and
// reuse flags.
func (m *Model) bucketFor(port uint16) bucket {
	owners := m.owners(inet.TCP, port)
	if x, ok := m.bucket(port); ok {
		return bucket{owners: len(owners), fastreuse: x.FastReuse, fastreuseport: x.FastReusePort,
			fastuid: x.FastUID, fast: kaddrOf(x.FastFamily, x.FastAddr, x.FastV6Only)}
	}
	// A port first taken by connect() starts "connect-only" (-1); by
	// bind(), with both caches 0 (inet_bind_bucket_create).
	b := bucket{}
	if len(owners) > 0 && m.socks[owners[0]].PortFromConnect {
		b.fastreuse, b.fastreuseport = -1, -1
	}
	for _, j := range owners {
		o := m.socks[j]
		if o.PortFromConnect || m.acceptedChild(int(j), owners) {
			b.owners++
			continue
		}
		a := o.Local.Addr()
		if o.BindAddr.IsValid() {
			a = o.BindAddr
		}
		k := kaddrOf(o.Family, a, o.V6Only)
		if b.owners == 0 && m.host.Kernel.firstOwnerSetsFastreuse() {
			b.first(o, k)
		} else {
			b.update(o, k, false)
		}
		b.owners++
		if o.State == Listen {
			b.update(o, k, true)
		}
	}
	return b
}

// acceptedChild reports whether owner i looks like a listener's accepted
// child: connected, port not from connect(), and a listener among owners
// holds an overlapping address with the same reuse options.
func (m *Model) acceptedChild(i int, owners []int32) bool {
	o := m.socks[i]
	if o.State != Connected && o.State != TimeWait {
		return false
	}
	for _, j := range owners {
		l := m.socks[j]
		if l.State == Listen && l.ReuseAddr == o.ReuseAddr && l.ReusePort == o.ReusePort && overlap(m.eps[i], m.eps[j]) {
			return true
		}
	}
	return false
}

// fastPath reports whether the cached bucket state lets an explicit bind
// (or listen) by s at address a skip the conflict check, and which cache.
func (m *Model) fastPath(s Socket, fam inet.Family, a netip.Addr, v6only bool, port uint16, listen bool) (bool, string) {
	b := m.bucketFor(port)
	if b.owners == 0 {
		return false, ""
	}
	if b.fastreuse > 0 && s.ReuseAddr && !listen {
		return true, "fastreuse"
	}
	if b.reuseportMatch(s, kaddrOf(fam, a, v6only)) {
		return true, "fastreuseport"
	}
	return false, ""
}
