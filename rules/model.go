package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/prefault"
)

// Model is a World indexed by (protocol, port) for repeated predictions over
// large tables: NewModel sorts the sockets once, and each Predict then looks
// at the owners of the ports it needs without scanning the whole table. A
// Model is read-only after NewModel, so it is safe for concurrent use.
type Model struct {
	host  Host
	socks []Socket
	eps   []endpoint // each socket's normalised local address
	keys  []uint32   // sorted proto<<16|port of every port owner
	order []int32    // socket index for each key
	// buckets are World.Buckets; bucketAt[port] is 1 + the index of
	// port's bucket there, 0 for none: a table's buckets are a bucket per
	// port in use, tens of thousands, looked up for every port of every
	// search. A world of a few buckets (bucketsScanned or fewer) has no
	// index: they are scanned.
	buckets  []Bucket
	bucketAt []int32
	marked   map[uint16]bool // World.BindMarked, on kernels that keep the mark
	// udpSlots counts the UDP port owners per slot of the kernel's UDP
	// hash (Host.UDPHashSlots), when that is known and below a slot per
	// port: udpSlotCount.
	udpSlots []int32
	packed   []uint64 // Reindex's sort, kept for the next
	spare    []uint64 // the sort's second buffer, kept likewise
}

// NewModel indexes w. The model keeps w.Sockets and w.Buckets (it does not
// copy them); the caller must not change them while the model is in use.
func NewModel(w World) *Model {
	m := new(Model).Reindex(w)
	m.packed, m.spare = nil, nil // kept only by a model built again
	return m
}

// Reindex indexes w into m as NewModel does, reusing m's arrays where they
// have room, and returns m: for a caller that models a namespace again and
// again (an exporter's scrapes), so that a model allocates nothing of the
// table's size once the first is built. The previous world's model is
// gone: m must not be in use.
func (m *Model) Reindex(w World) *Model {
	n := len(w.Sockets)
	*m = Model{host: w.Host, socks: w.Sockets, eps: resize(m.eps, n),
		keys: m.keys[:0], order: m.order[:0], packed: m.packed[:0], spare: m.spare, buckets: w.Buckets, bucketAt: m.bucketAt[:0],
		udpSlots: m.udpSlots[:0]}
	// Port owners sorted by key<<32 | index: one flat sort, in which the
	// owners of one port keep World order (oldest first).
	packed := m.packed
	if cap(packed) < n {
		packed = prefault.Make[uint64](0, n+n/32+16)
	}
	for i := range w.Sockets {
		s := &w.Sockets[i]
		m.eps[i] = normalise(s.Family, s.Local.Addr(), s.V6Only)
		if ownsPort(*s) {
			packed = append(packed, uint64(key(s.Proto, s.Local.Port()))<<32|uint64(i))
		}
	}
	if !w.Host.Kernel.AtLeast(6, 18, 0) {
		for _, p := range w.BindMarked {
			if m.marked == nil {
				m.marked = map[uint16]bool{}
			}
			m.marked[p] = true
		}
	}
	if len(w.Buckets) > bucketsScanned {
		if cap(m.bucketAt) < 1<<16 {
			m.bucketAt = prefault.Make[int32](1<<16, 1<<16)
		}
		m.bucketAt = m.bucketAt[:1<<16]
		clear(m.bucketAt)
		for i, b := range w.Buckets {
			m.bucketAt[b.Port] = int32(i + 1) // a port given twice: the last
		}
	}
	packed, m.spare = sortPacked(packed, m.spare)
	m.packed = packed
	m.keys, m.order = resize(m.keys, len(packed)), resize(m.order, len(packed))
	for j, v := range packed {
		m.keys[j], m.order[j] = uint32(v>>32), int32(uint32(v))
	}
	if slots := w.Host.UDPHashSlots; slots > 0 && slots < 1<<16 {
		m.udpSlots = resize(m.udpSlots, slots)
		clear(m.udpSlots)
		lo, _ := slices.BinarySearch(m.keys, key(inet.UDP, 0))
		for _, k := range m.keys[lo:] {
			if k>>16 != uint32(inet.UDP) {
				break
			}
			m.udpSlots[w.Host.UDPSlot(uint16(k))]++
		}
	}
	return m
}

// sortPacked sorts packed, key<<32 | index values appended in index order,
// as slices.Sort would, and returns it with the buffer left spare (spare,
// or one made for it). A large table is sorted by a stable radix sort over
// the bytes in which its keys differ (a proto<<16|port key: two or three
// linear passes, where a comparison sort of a busy host's tens of
// thousands of sockets took milliseconds); the index order among equal
// keys is the input's.
func sortPacked(packed, spare []uint64) (sorted, left []uint64) {
	if len(packed) < 256 {
		slices.Sort(packed)
		return packed, spare
	}
	and, or := ^uint64(0), uint64(0)
	for _, v := range packed {
		and &= v
		or |= v
	}
	if cap(spare) < len(packed) {
		spare = prefault.Make[uint64](0, cap(packed))
	}
	src, dst := packed, spare[:len(packed)]
	for shift := 32; shift < 64; shift += 8 {
		if (and^or)>>shift&0xff == 0 {
			continue // every key has this byte: nothing to sort by
		}
		var at [256]int
		for _, v := range src {
			at[v>>shift&0xff]++
		}
		n := 0
		for b, c := range at {
			at[b], n = n, n+c
		}
		for _, v := range src {
			b := v >> shift & 0xff
			dst[at[b]] = v
			at[b]++
		}
		src, dst = dst, src
	}
	return src, dst[:0]
}

// resize returns s with length n, reusing its array when it has room; a
// new array has some room to spare, so that a world a little larger than
// the last does not allocate again.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return prefault.Make[T](n, n+n/32+16) // a table's worth of fresh pages, in one call
	}
	return s[:n]
}

// Predict returns what the kernel would do if the new socket s performed op
// in world w. It never panics and does not modify w. For many predictions
// over one world, use NewModel once and Model.Predict.
func Predict(w World, s Socket, op Op) Outcome {
	return NewModel(w).Predict(s, op)
}

// ownsPort reports whether s holds a port the rules compare against.
func ownsPort(s Socket) bool {
	return s.State != Unbound && s.Local.Port() != 0 && (s.Proto == inet.TCP || s.Proto == inet.UDP)
}

// local and remote are socket i's four-tuple ends as connect()'s search
// compares them: unmapped and without zone (converted where compared: a
// copy of every socket's would be a table's worth of memory to fill).
func (m *Model) local(i int) netip.Addr      { return m.socks[i].Local.Addr().Unmap().WithZone("") }
func (m *Model) remote(i int) netip.AddrPort { return unmapPort(m.socks[i].Remote) }

// bucketsScanned is the most buckets a model scans instead of indexing
// them by port (an index is 256 KiB to fill).
const bucketsScanned = 64

// bucket is World.Buckets' bucket of port, if it has one (the last one
// given for the port).
func (m *Model) bucket(port uint16) (Bucket, bool) {
	if len(m.bucketAt) == 0 {
		for i := len(m.buckets) - 1; i >= 0; i-- {
			if m.buckets[i].Port == port {
				return m.buckets[i], true
			}
		}
		return Bucket{}, false
	}
	if i := m.bucketAt[port]; i != 0 {
		return m.buckets[i-1], true
	}
	return Bucket{}, false
}

func key(p inet.Proto, port uint16) uint32 { return uint32(p)<<16 | uint32(port) }

// owners returns the indexes (into World.Sockets) of the sockets holding
// port for protocol p, oldest first. It does not allocate.
func (m *Model) owners(p inet.Proto, port uint16) []int32 {
	k := key(p, port)
	lo, _ := slices.BinarySearch(m.keys, k)
	hi := lo
	for hi < len(m.keys) && m.keys[hi] == k {
		hi++
	}
	return m.order[lo:hi]
}

// udpSlotCount is how many UDP sockets the kernel's primary UDP hash slot
// of port holds in this world: the port's own, and those of the ports
// equal to it modulo Host.UDPHashSlots (every port its own slot when that
// is unknown).
func (m *Model) udpSlotCount(port uint16) int {
	if len(m.udpSlots) == 0 {
		return len(m.owners(inet.UDP, port))
	}
	return int(m.udpSlots[m.host.UDPSlot(port)])
}

// cursor walks the owners of consecutive ports of one protocol.
type cursor struct {
	m *Model
	i int
}

// cursorAt starts a walk at port (protocol p).
func (m *Model) cursorAt(p inet.Proto, port uint16) cursor {
	i, _ := slices.BinarySearch(m.keys, key(p, port))
	return cursor{m: m, i: i}
}

// next returns the owners of port, which must not be below the previous
// call's port.
func (c *cursor) next(p inet.Proto, port uint16) []int32 {
	k := key(p, port)
	for c.i < len(c.m.keys) && c.m.keys[c.i] < k {
		c.i++
	}
	lo := c.i
	for c.i < len(c.m.keys) && c.m.keys[c.i] == k {
		c.i++
	}
	return c.m.order[lo:c.i]
}

// label names socket i for messages.
func (m *Model) label(i int) string {
	s := m.socks[i]
	if s.ID != "" {
		return s.ID
	}
	return "socket " + strconv.Itoa(i)
}

// describe is a socket in a few words: "tcp LISTEN 0.0.0.0:80".
func describe(s Socket) string {
	var b strings.Builder
	b.WriteString(s.Proto.String())
	b.WriteByte(' ')
	if s.State <= TimeWait {
		b.WriteString(s.State.String())
	}
	b.WriteByte(' ')
	b.WriteString(s.Local.String())
	if s.Remote.IsValid() && s.Remote.Port() != 0 {
		b.WriteString(" -> ")
		b.WriteString(s.Remote.String())
	}
	return b.String()
}

var factNames = []struct {
	f        Fact
	name     string
	on, off  string
	valueSet func(Socket) bool
}{
	{FactReuseAddr, "SO_REUSEADDR", "on", "off", func(s Socket) bool { return s.ReuseAddr }},
	{FactReusePort, "SO_REUSEPORT", "on", "off", func(s Socket) bool { return s.ReusePort }},
	{FactV6Only, "IPV6_V6ONLY", "on", "off", func(s Socket) bool { return s.V6Only }},
	{FactDev, "SO_BINDTODEVICE", "set", "unset", func(s Socket) bool { return s.Dev != 0 }},
	{FactPortOrigin, "the port's origin", "connect()", "bind()/listen()", func(s Socket) bool { return s.PortFromConnect }},
	{FactTimestamps, "peer TCP timestamps", "seen", "not seen", func(s Socket) bool { return s.TWTimestamps }},
}

// assumption words the use of an unobserved fact f of socket s.
func assumption(label string, s Socket, f Fact) string {
	for _, n := range factNames {
		if n.f != f {
			continue
		}
		v := n.off
		if n.valueSet(s) {
			v = n.on
		}
		msg := fmt.Sprintf("assumed %s %s on %s", n.name, v, label)
		if s.UnknownReason != "" {
			msg += " (unreadable: " + s.UnknownReason + ")"
		}
		return msg
	}
	return fmt.Sprintf("assumed fact %d on %s", f, label)
}

// scopedDevs lists the devices an address of link or host scope is on
// (Host.Scoped); none for another address, which any device takes.
func (h Host) scopedDevs(a netip.Addr) []int {
	a = a.WithZone("")
	var devs []int
	for _, s := range h.Scoped {
		if s.Addr == a {
			devs = append(devs, s.Dev)
		}
	}
	return devs
}

// ZoneDev is the device an address's zone names. The model takes zones as
// interface indexes ("fe80::1%2"): the commands turn names into indexes.
// 0 for no zone, or one that is not an index (a name: a scope the model
// counts as given, on a device it cannot compare).
func ZoneDev(a netip.Addr) int {
	n, err := strconv.Atoi(a.Zone())
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// NeedsScope is __ipv6_addr_needs_scope_id: a link-local address, unicast
// or multicast, or an interface-local multicast one means nothing without
// a device.
func NeedsScope(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && (a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast())
}

// IsLocal reports whether a is an address of this host (h.Local, the
// wildcards, IPv4 multicast and broadcast), as bind() sees it.
func (h Host) IsLocal(a netip.Addr) bool { return h.local(a) }

// local reports whether a is an address of this host as bind() sees
// it for the given family rules (v4 includes multicast and broadcast).
func (h Host) local(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if a.IsUnspecified() {
		return true
	}
	if a.Is4() && (a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return true
	}
	for _, p := range h.Local {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sourceFor is the local address a connect() to peer picks when the socket
// has none, or the zero Addr when the model cannot tell.
func (h Host) sourceFor(peer netip.Addr) netip.Addr {
	peer = peer.Unmap().WithZone("")
	for _, p := range h.Local {
		if p.IsSingleIP() && p.Addr() == peer {
			return peer
		}
	}
	if peer.Is4() && peer.IsLoopback() {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if peer.Is6() && h.local(peer) {
		return peer
	}
	return netip.Addr{}
}
