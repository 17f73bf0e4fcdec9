package rules

import (
	"net/netip"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/inet"
)

// State is what a socket holds its port as.
type State uint8

const (
	Unbound   State = iota // created, no port yet (only the new socket)
	Bound                  // bound only: TCP CLOSE with a port (TCP_BOUND_INACTIVE), UDP unconnected
	Listen                 // TCP LISTEN
	Connected              // TCP SYN_SENT, ESTABLISHED, FIN_WAIT*, CLOSE_WAIT, ...; UDP connected
	TimeWait               // TCP TIME_WAIT
)

func (s State) String() string {
	return [...]string{"UNBOUND", "BOUND", "LISTEN", "CONNECTED", "TIME_WAIT"}[s]
}

// Fact names a fact about a socket that an observer may be unable to read.
type Fact uint16

const (
	FactReuseAddr  Fact = 1 << iota // SO_REUSEADDR
	FactReusePort                   // SO_REUSEPORT
	FactV6Only                      // IPV6_V6ONLY
	FactDev                         // SO_BINDTODEVICE
	FactPortOrigin                  // whether the port came from connect() or from bind()/listen()
	FactTimestamps                  // whether a TIME_WAIT entry saw peer timestamps
)

// Socket is one socket as the rules see it. Existing sockets come from the
// socket table (or a lab scenario); the new socket is described the same way,
// in state Unbound or Bound.
type Socket struct {
	ID     string // the caller's label, echoed in blockers ("inode 4711", "A")
	Proto  inet.Proto
	Family inet.Family
	Local  netip.AddrPort // local address and port; address may be unspecified (0.0.0.0, ::, ::ffff:0.0.0.0)
	Remote netip.AddrPort // peer, for Connected and TimeWait
	State  State

	V6Only    bool
	ReuseAddr bool
	ReusePort bool
	UID       uint32 // sk_uid: the creator's fsuid at socket() time
	Dev       int    // bound device ifindex (SO_BINDTODEVICE), 0 for none

	// PortFromConnect: the local port was picked by connect() (or UDP
	// autobind at send), not by bind()/listen(). Such ports can be shared
	// by later connect()s to other destinations.
	PortFromConnect bool
	// InGroup: already in a reuseport group before bind (a reuseport BPF
	// program attached), which makes the kernel refuse to join another.
	InGroup bool

	// Options of the new socket that only matter for its own operations.
	BindNoPort bool           // IP_BIND_ADDRESS_NO_PORT
	PortRange  inet.PortRange // IP_LOCAL_PORT_RANGE
	Mark       uint32         // SO_MARK: route lookups may match it (ip rule fwmark)
	Freebind   bool           // IP_FREEBIND / IP_TRANSPARENT
	// CanBindPrivileged: the socket's owner has CAP_NET_BIND_SERVICE.
	CanBindPrivileged bool

	// TIME_WAIT details: whether the peer used TCP timestamps
	// (ts_recent_stamp != 0) and how long ago the entry entered TIME_WAIT.
	TWTimestamps bool
	TWAge        time.Duration
	// TWSecondTicked: the monotonic clock's whole second has changed since
	// the entry's last peer timestamp, which is what kernels before 6.13
	// compare (an observer that cannot tell leaves it false; TWAge of a
	// second or more implies it).
	TWSecondTicked bool
	// TWFinWait2: the TIME_WAIT entry of an orphan that never got its
	// peer's FIN (tw_substate FIN_WAIT2; ss shows it as FIN-WAIT-2). A
	// connect() searching for a port never takes it over, whatever
	// tcp_tw_reuse says (tcp_twsk_unique); a bound socket may, as any.
	TWFinWait2 bool

	// Unknown marks facts above that were not observed; the value given is
	// an assumption and the model reports it when it matters.
	Unknown Fact
	// UnknownReason says why the Unknown facts could not be read
	// ("TIME_WAIT", "pidfd_getfd: EPERM"); it is quoted in assumptions.
	UnknownReason string

	// BindAddr is the address the socket passed to bind() when it differs
	// from Local (a socket bound to a wildcard that then connected shows
	// its source address). Zero when unknown or equal to Local. Only the
	// replay of the kernel's per-port reuse cache (fastreuse) uses it.
	BindAddr netip.Addr

	// V6OnlyDefault (new socket only): IPV6_V6ONLY was never set, so
	// Host.BindV6Only (net.ipv6.bindv6only) decides and V6Only is ignored.
	V6OnlyDefault bool

	// Waiting and Backlog are, for a listener when BacklogKnown, the
	// connections waiting in its accept queue (ss's Recv-Q) and the
	// backlog listen() gave it (Send-Q). While more than Backlog wait the
	// kernel drops every SYN for it (sk_acceptq_is_full): a connect()
	// waits.
	Waiting, Backlog uint32
	BacklogKnown     bool

	// AcceptQueue is, for a listener's child that no process has accepted
	// yet, the ID of the listener whose accept queue holds it; empty for
	// every other socket. Closing that listener resets the child
	// (Model.CloseListener).
	AcceptQueue string
	// Reset: a connected TCP socket whose connection was reset (its peer
	// was an unaccepted child of a listener that closed). The socket layer
	// still counts it connected: connect() fails with EISCONN and listen()
	// with EINVAL; it holds its port only if bind() gave it (State Bound).
	Reset bool
}

// ScopedAddr is an IPv6 address of link or host scope and the index of
// the device it is on (Host.Scoped).
type ScopedAddr struct {
	Addr netip.Addr
	Dev  int
}

// Host is what the model needs to know about the network namespace.
type Host struct {
	// Local lists prefixes whose addresses are local (RTN_LOCAL), e.g.
	// 127.0.0.0/8, ::1/128 and each assigned address as a /32 or /128.
	Local []netip.Prefix
	// Scoped lists the IPv6 addresses of link or host scope (fe80::/10,
	// ::1) with the device each is on. A socket with a device
	// (SO_BINDTODEVICE, or the scope of a link-local address) binds such
	// an address only where it is on that device (ipv6_chk_addr); other
	// addresses are taken on any device. Empty: not known, not checked.
	Scoped []ScopedAddr

	EphemeralRange        inet.PortRange   // net.ipv4.ip_local_port_range
	ReservedPorts         []inet.PortRange // net.ipv4.ip_local_reserved_ports
	UnprivilegedPortStart uint16           // net.ipv4.ip_unprivileged_port_start
	NonlocalBind4         bool             // net.ipv4.ip_nonlocal_bind
	NonlocalBind6         bool             // net.ipv6.ip_nonlocal_bind
	BindV6Only            bool             // net.ipv6.bindv6only: default IPV6_V6ONLY of new sockets
	AutobindReuse         bool             // net.ipv4.ip_autobind_reuse
	TCPTWReuse            int              // net.ipv4.tcp_tw_reuse: 0, 1, or 2 (loopback only)
	TWReuseDelay          time.Duration
	// UDPHashSlots is the number of slots of the namespace's UDP hash
	// table (net.ipv4.udp_hash_entries, 6.2 and later; the kernel's boot
	// log says it on every kernel): ports equal modulo it share a slot,
	// and a slot of more than ten sockets changes which ones bind()
	// checks. 0: unknown, taken as a slot per port.
	UDPHashSlots int
	// Kernel is the kernel whose rules apply; the zero value means the
	// newest the model follows (6.18).
	Kernel Kernel
	// AllListeners: World.Sockets lists every TCP listener of the
	// namespace, so a connect() to a local address none covers is refused
	// (ECONNREFUSED). Leave it false for a partial world.
	AllListeners bool
	// Isolated: lo is the namespace's only device (a lab namespace), so
	// Local lists every address, a family without one has no source
	// address for connect(), and no destination outside Local has a route.
	// Leave it false for a host with other devices or a partial Local.
	Isolated bool
}

// UDPCrowd is the most sockets a slot of the kernel's UDP hash holds while
// bind() still checks the whole slot (udp_lib_get_port); past it, only the
// chains of the new socket's address and of the wildcard (udpExplicit).
const UDPCrowd = 10

// UDPSlot numbers the slot of the kernel's UDP hash that port's sockets
// share in h's namespace: ports equal modulo Host.UDPHashSlots share one,
// each port has its own when that is unknown. (The kernel adds an offset
// of the namespace's to every port alike.)
func (h Host) UDPSlot(port uint16) int {
	if s := h.UDPHashSlots; s > 0 && s < 1<<16 {
		return int(port) % s
	}
	return int(port)
}

// DefaultHost is a Linux 6.18 namespace's defaults with loopback only.
func DefaultHost() Host {
	return Host{
		Local: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"),
			netip.MustParsePrefix("::1/128"),
		},
		EphemeralRange:        inet.PortRange{Lo: 32768, Hi: 60999},
		UnprivilegedPortStart: 1024,
		TCPTWReuse:            2,
		TWReuseDelay:          time.Second,
	}
}

// World is the state an operation is judged against.
type World struct {
	Host Host
	// Sockets are the existing sockets (not the new one); order does not
	// matter to the verdict, only to the order of Outcome.Blockers.
	Sockets []Socket
	// Buckets optionally gives TCP ports' bind buckets as the kernel holds
	// them, for callers that can read them exactly (a BPF iterator over
	// the bind hash). For those ports they replace the model's
	// reconstruction from the owners, which cannot see sockets that left.
	Buckets []Bucket
	// BindMarked lists TCP ports whose bind bucket an owner that got the
	// port through bind() or listen() marked while the bucket lived, the
	// port's owners having never all left since. Kernels before 6.18 keep
	// that mark until the bucket empties, so connect() keeps skipping the
	// port after the bind()-bound owner left; 6.18 clears it (commit
	// d57f4b874946, "tcp: Update bind bucket state on port release"). An
	// observer that watched the port's history (lab) fills it.
	BindMarked []uint16
}

// Bucket is one TCP port's struct inet_bind_bucket: the reuse cache that
// lets a bind skip the conflict scan, and whether connect() may share the
// port (both caches -1: only connect()-bound owners).
type Bucket struct {
	Port          uint16
	FastReuse     int8 // -1 connect()-only, 0, 1
	FastReusePort int8 // -1 connect()-only, 0 off, 1 FASTREUSEPORT_ANY, 2 FASTREUSEPORT_STRICT
	FastUID       uint32
	FastFamily    inet.Family
	FastAddr      netip.Addr // tb->fast_rcv_saddr, or fast_v6_rcv_saddr for AF_INET6
	FastV6Only    bool
}

// OpKind is the operation the new socket attempts.
type OpKind uint8

const (
	OpBind OpKind = iota + 1
	OpListen
	OpConnect
)

func (k OpKind) String() string {
	return [...]string{"", "bind", "listen", "connect"}[k]
}

// Op is one operation: bind(Addr), listen(), or connect(Addr).
type Op struct {
	Kind OpKind
	Addr netip.AddrPort // bind: the local address; connect: the peer; listen: unused
	// Source (connect only) is the local address the kernel's route lookup
	// picks for a socket not bound to a specific address. Zero: the model
	// uses the peer itself when it is local (127.0.0.1 for the rest of
	// 127.0.0.0/8) and otherwise compares four-tuples on the peer alone,
	// saying so in Outcome.Assumptions.
	Source netip.Addr
	// RouteErr (connect only) is how the kernel's route lookup for Addr,
	// from the socket's bound address if any, failed (ENETUNREACH for no
	// route, EHOSTUNREACH for an unreachable one, EACCES prohibit, EINVAL
	// blackhole), as the caller found it on the host; 0 when it succeeded
	// or was not looked up. connect() fails with it before any port rule.
	RouteErr syscall.Errno
	// RouteFrom is the source address and port the failing lookup was
	// made from, either invalid or 0 where it had none; when both are,
	// the socket's bound address and port (the explanation repeats the
	// lookup as an `ip route get`).
	RouteFrom netip.AddrPort
}

// Blocker is an existing socket that causes a failure.
type Blocker struct {
	Index  int    // index into World.Sockets
	Socket Socket // a copy, for convenience
	Reason string // why, in plain words
}

// Outcome is the model's prediction for one operation.
type Outcome struct {
	Err      syscall.Errno // 0 when the operation succeeds
	Rule     string        // short name of the rule that decided, e.g. "reuseport-uid"
	Why      string        // one sentence in plain words
	Blockers []Blocker

	// After is the new socket as the operation leaves it when it succeeds:
	// bound, listening or connected. For an autobind the port is set only
	// when exactly one port is usable: the kernel starts its search at a
	// random port (bind(0), UDP) or at a keyed hash of the four-tuple
	// (connect()), which no observer can predict; otherwise it is 0.
	After Socket
	// Candidates is the exact number of ports an autobind (bind(0),
	// listen() autobind, connect()) could take; -1 when the operation
	// picks none. For connect() Model.ConnectPorts gives the breakdown.
	Candidates int

	// Assumptions lists unobserved facts (Socket.Unknown) the verdict
	// rests on, in plain words.
	Assumptions []string
}

// OK reports whether the operation is predicted to succeed.
func (o Outcome) OK() bool { return o.Err == 0 }

// ErrName is the errno's C name ("EADDRINUSE"), or "ok".
func (o Outcome) ErrName() string { return ErrnoName(o.Err) }
