package sockfacts

import (
	"net/netip"

	"github.com/tuple-net/tuple/inet"
)

// Sock is what the kernel holds about one socket.
type Sock struct {
	Proto  inet.Proto
	Family inet.Family
	State  uint8 // kernel state number (TCP_ESTABLISHED=1 ... TCP_TIME_WAIT=6, TCP_LISTEN=10)
	Local  netip.AddrPort
	Remote netip.AddrPort
	Cookie uint64 // the socket cookie (the iterator assigns one where none was)
	UID    uint32 // sk_uid as inet_diag reports it (0 for TIME_WAIT entries)
	Dev    int    // skc_bound_dev_if: the SO_BINDTODEVICE ifindex, 0 for none
	Inode  uint64 // the socket's inode as inet_diag reports it, 0 for TIME_WAIT entries, sockets without a struct socket and readers with SkipInode

	ReuseAddr bool // sk_reuse != 0
	ReusePort bool // sk_reuseport
	V6Only    bool // sk_ipv6only

	TimeWait bool // a TIME_WAIT entry, not a full socket
	// ConnectBind: the local port was picked by connect() (TCP only;
	// known when ConnectBindKnown).
	ConnectBind      bool
	ConnectBindKnown bool
	// BindPortLock: bind() was given an explicit port (full sockets).
	BindPortLock bool
	// Timestamps: a TIME_WAIT entry's peer used TCP timestamps
	// (tw_ts_recent_stamp != 0).
	Timestamps bool
	// FinWait2: a TIME_WAIT entry standing for an orphan that never got
	// its peer's FIN (tw_substate TCP_FIN_WAIT2, which inet_diag reports
	// as the entry's state): connect() never takes it over.
	FinWait2 bool
	// BucketConnectOnly: the kernel's bind bucket of this TCP port says
	// connect() may share the port (no owner holds it through bind(); its
	// fastreuse and fastreuseport caches are both negative). This is what
	// connect() checks, history included (known when BucketKnown).
	BucketConnectOnly bool
	BucketKnown       bool
	// Bucket is the port's bind bucket as the kernel holds it (when
	// BucketKnown).
	Bucket Bucket
}

// Bucket is a TCP port's struct inet_bind_bucket reuse cache.
type Bucket struct {
	FastReuse     int8 // -1 connect()-only, 0, 1
	FastReusePort int8 // -1 connect()-only, 0 off, 1 any, 2 strict
	FastUID       uint32
	FastFamily    inet.Family // 0 when unset
	FastAddr      netip.Addr
	FastV6Only    bool
}

// Key identifies a socket across sources that lack cookies: protocol,
// local and remote endpoints (the four-tuple).
type Key struct {
	Proto         inet.Proto
	Local, Remote netip.AddrPort
}

// Key returns s's four-tuple key.
func (s Sock) Key() Key { return Key{s.Proto, s.Local, s.Remote} }

// Option changes what a Reader reads of every socket.
type Option struct {
	skipInode bool
	inodes    inet.PortRange // zero: every port's
}

// SkipInode leaves Sock.Inode 0. The inode is the one fact of a record in
// memory of its own (the socket's inode, beside struct socket): two
// dependent loads per socket, a large part of the program's time on a big
// table. A caller that does not join sockets to their owners by inode
// skips it.
func SkipInode() Option { return Option{skipInode: true} }

// InodesWithin reads the inode only of sockets whose local port is in r
// (0 for the others), for a caller that needs the owners of those only:
// the ephemeral-port budget, which ranks the holders of the ephemeral
// range, skips the inodes of a server's many accepted connections.
func InodesWithin(r inet.PortRange) Option { return Option{inodes: r} }

// join is the options of opts together (the last range given wins).
func join(opts []Option) Option {
	var o Option
	for _, op := range opts {
		o.skipInode = o.skipInode || op.skipInode
		if op.inodes != (inet.PortRange{}) {
			o.inodes = op.inodes
		}
	}
	return o
}
