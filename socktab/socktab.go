package socktab

import (
	"context"
	"net/netip"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/netns"
)

// Bool is a fact that may not be known. When Known is false, Reason says why
// (for example "no owning process: TIME_WAIT sockets belong to the kernel").
type Bool struct {
	Known  bool
	Value  bool
	Reason string
}

// Text is a string fact that may not be known; see Bool.
type Text struct {
	Known  bool
	Value  string
	Reason string
}

// Options are the options of a live socket that decide whether a port can be
// shared. BindAddressNoPort and Freebind come from the kernel's
// INET_DIAG_SOCKOPT for every socket the netlink source reports; the others
// are read from one owner's descriptor when Query.Options is set, or taken
// from Query.OptionsFrom where it knows the socket.
type Options struct {
	ReuseAddr         Bool // SO_REUSEADDR
	ReusePort         Bool // SO_REUSEPORT
	V6Only            Bool // IPV6_V6ONLY (unknown with a reason on IPv4 sockets)
	BindAddressNoPort Bool // IP_BIND_ADDRESS_NO_PORT
	Freebind          Bool // IP_FREEBIND
	Device            Text // SO_BINDTODEVICE interface name, "" when unbound
}

// KernelOptions are the options of a socket that INET_DIAG_SOCKOPT does
// not carry, as the kernel holds them (struct sock_common), for
// Query.OptionsFrom.
type KernelOptions struct {
	ReuseAddr bool // sk_reuse != 0: SO_REUSEADDR
	ReusePort bool // sk_reuseport: SO_REUSEPORT
	V6Only    bool // sk_ipv6only: IPV6_V6ONLY (IPv6 sockets)
	Dev       int  // sk_bound_dev_if: the SO_BINDTODEVICE ifindex, 0 for none
}

// Owner is one process holding a descriptor of the socket. A socket
// inherited through fork or passed with SCM_RIGHTS has several.
type Owner struct {
	PID  int
	Comm string // /proc/PID/comm
	FD   int
}

// NoteBoundOnlyMissing begins the table's note when bound-only TCP sockets
// were asked for and could not be listed (before Linux 6.8, where
// inet_diag does not report them, without root to look for them among
// processes' descriptors).
const NoteBoundOnlyMissing = "bound-only TCP sockets not listed"

// Socket is one kernel socket.
type Socket struct {
	Proto  inet.Proto
	Family inet.Family
	State  State
	Local  netip.AddrPort
	Remote netip.AddrPort // zero port and unspecified address when not connected
	UID    uint32
	Inode  uint64 // 0 for TIME_WAIT and request sockets, which have no file
	Cookie uint64 // the kernel's socket cookie (0 from procfs)
	RecvQ  uint32
	SendQ  uint32
	// Dev is the ifindex the socket is bound to (SO_BINDTODEVICE), 0 for none.
	Dev int
	// V6Only is IPV6_V6ONLY as the kernel reports it in INET_DIAG_SKV6ONLY,
	// which it sends for IPv6 sockets in LISTEN or CLOSE (bound) state only.
	V6Only Bool
	// TimeLeft is the time until the socket's timer fires: for TIME_WAIT,
	// when the socket goes away. 0 when no timer runs.
	TimeLeft time.Duration
	Options  Options
	Owners   []Owner // filled when Query.Owners
	// NetNS is the inode of the socket's network namespace when the table
	// was read across namespaces (Query.Namespaces), 0 otherwise.
	NetNS uint64
}

// Query says which sockets to list and what to add to them. The zero value
// lists every TCP and UDP socket without owners or options.
type Query struct {
	TCP, UDP bool     // neither set: both
	States   StateSet // zero: all states
	// LocalPort and RemotePort, when non-zero, keep only sockets with that
	// local or remote port. The netlink source filters in the kernel.
	LocalPort, RemotePort uint16
	// Family, when set, keeps only sockets of that family.
	Family inet.Family
	// Filter, when not nil, keeps only the sockets its expression
	// selects (its States are ANDed with States). The netlink source
	// runs it in the kernel.
	Filter  *Filter
	Owners  bool // find the processes holding each socket
	Options bool // read live options (implies Owners)
	// OptionsFrom, with Options, gives a socket's options as another
	// reader of the kernel holds them (the BPF socket iterator's records),
	// or false when it has no record of the socket. A socket it answers
	// for, whose other options the dump reported (INET_DIAG_SOCKOPT) and
	// whose device is named, is not read through its owner's descriptor
	// (pidfd_getfd and a getsockopt per option, a quarter of who's time
	// beside a busy port). It is called from one goroutine.
	OptionsFrom func(*Socket) (KernelOptions, bool)
	ProcRoot    string // procfs mount, "/proc" when empty
	// Namespaces, when set, are read instead of the caller's namespace:
	// each from a thread inside it, every socket tagged with its
	// namespace's inode (Socket.NetNS); owners come from one /proc scan for
	// all of them. A namespace that cannot be read is a note, not an error.
	Namespaces []netns.Namespace
	// BoundOnly, when set, is shared by the tables that take it: on
	// kernels whose inet_diag cannot list bound-only TCP sockets (before
	// 6.8) they are looked for among every process's descriptors, and one
	// pass serves every table read at about the same time (an exporter
	// scrape's namespaces, a table read again with owners). Nil: a table
	// that needs the pass makes its own.
	BoundOnly *BoundOnlySearch
}

// BoundOnlySearch is one search for bound-only TCP sockets among every
// process's descriptors, made at the first table that needs it and shared
// by the tables given it (Query.BoundOnly). Safe for concurrent use.
type BoundOnlySearch struct{ s boundOnlySearch }

// Table is one snapshot.
type Table struct {
	Sockets []Socket
	Source  string   // "netlink" or "procfs"
	Notes   []string // what could not be read and why (partial results)
	// Namespaces are the namespaces read (Query.Namespaces), for labels.
	Namespaces []netns.Namespace
}

// Snapshot lists the sockets q asks for.
func Snapshot(ctx context.Context, q Query) (*Table, error) {
	return snapshot(ctx, q.withDefaults())
}

// SnapshotAsync starts Snapshot of q on another thread in the calling
// thread's network namespace and returns, once it has started there, a
// function that waits for its result (netns.StartHere: the dump goes
// first). Where no thread can enter the namespace (no CAP_SYS_ADMIN), the
// waiting caller reads the snapshot itself.
func SnapshotAsync(ctx context.Context, q Query) (wait func() (*Table, error)) {
	var t *Table
	var err error
	w := netns.StartHere(func() error {
		t, err = Snapshot(ctx, q)
		return nil
	})
	return func() (*Table, error) {
		if ran, _ := w(); !ran {
			return Snapshot(ctx, q)
		}
		return t, err
	}
}

// withDefaults is q with its zero values spelled out.
func (q Query) withDefaults() Query {
	if !q.TCP && !q.UDP {
		q.TCP, q.UDP = true, true
	}
	if q.States == 0 {
		q.States = AllStates
	}
	if q.ProcRoot == "" {
		q.ProcRoot = "/proc"
	}
	if q.Options {
		q.Owners = true
	}
	return q
}

// Reasons used for unknown options.
const (
	reasonNotAsked          = "not read (options were not asked for: ls -o)"
	reasonIPv4              = "IPv4 socket"
	reasonV6OnlyNotReported = "not reported: the kernel reports IPV6_V6ONLY of listening and bound sockets only"
	reasonProcfs            = "not reported by /proc/net"
)
