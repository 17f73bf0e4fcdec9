package lab

import "github.com/tuple-net/tuple/nat"

// The runner and its helpers speak JSON over a SOCK_SEQPACKET socketpair:
// one request or reply per packet, so no framing is needed and a descriptor
// handed over with SCM_RIGHTS travels with the packet it belongs to.

// maxPacket bounds one protocol message.
const maxPacket = 64 << 10

// request is one command to a helper.
type request struct {
	Op    string   `json:"op"` // setup, host, sysctl, socket, server, bind, listen, connect, close, give, take
	Sock  string   `json:"sock,omitempty"`
	Proto Proto    `json:"proto,omitempty"`
	Opts  Options  `json:"opts"`
	Addr  string   `json:"addr,omitempty"` // netip.AddrPort
	Addrs []string `json:"addrs,omitempty"`
	Key   string   `json:"key,omitempty"`
	Value string   `json:"value,omitempty"`
	// Wait is how long close waits for the state it implies, connect for
	// the handshake, accept for the connection and state for the state,
	// in milliseconds.
	Wait int `json:"wait,omitempty"`
	// Expect (close) is the state the closed connection must reach:
	// "TIME_WAIT", "FIN_WAIT2", "gone", or "" to not watch.
	Expect string `json:"expect,omitempty"`
	// State (state) is the kernel TCP state to wait for.
	State int `json:"state,omitempty"`
	// Topo (topo, topo-wait) configures a topology host.
	Topo *topoRequest `json:"topo,omitempty"`
	// All (host): every address of the namespace, not only lo's.
	All bool `json:"all,omitempty"`
}

// reply is a helper's answer.
type reply struct {
	Errno int    `json:"errno,omitempty"` // the system call's errno, 0 for success
	Fail  string `json:"fail,omitempty"`  // a failure that is not the kernel's answer
	// Where says which system call failed (bind, listen, ...), for errnos;
	// after accept, which server took the connection.
	Where   string            `json:"where,omitempty"`
	Sock    *sockState        `json:"sock,omitempty"`
	Sysctls map[string]string `json:"sysctls,omitempty"`
	Addrs   []string          `json:"addrs,omitempty"` // host: lo's addresses, "a/len"
	// After close: the TCP state the closed socket's four-tuple ended in
	// ("TIME_WAIT", "FIN_WAIT2", ...; empty when it is gone).
	Closed string `json:"closed,omitempty"`
	// TWSec is the monotonic clock's second at which the closed socket
	// entered TIME_WAIT, from the kernel's TIME_WAIT timer (0: unknown).
	TWSec int64 `json:"tw_sec,omitempty"`
	// TWEarliestSec is the kernel's coarse clock's second (which
	// ktime_get_seconds reads) before the close: the earliest second the
	// kernel can have stamped the TIME_WAIT entry with (0: unknown).
	TWEarliestSec int64 `json:"tw_earliest_sec,omitempty"`
	// TWLatestSec is the latest second the entry's dating allows, when
	// after TWSec: the bounds of the entry lie in two seconds (0: none).
	TWLatestSec int64 `json:"tw_latest_sec,omitempty"`
	// NAT (nat) is the namespace's NAT rules and conntrack table.
	NAT *nat.Snapshot `json:"nat,omitempty"`
}

// sockState is what the kernel says about a socket after an operation.
type sockState struct {
	Local     string `json:"local"`
	Remote    string `json:"remote,omitempty"`
	TCPState  int    `json:"tcpState"` // kernel TCP state number; 0 for UDP
	ReuseAddr bool   `json:"reuseaddr"`
	ReusePort bool   `json:"reuseport"`
	V6Only    bool   `json:"v6only"`
	NoPort    bool   `json:"bindNoPort"`
	Freebind  bool   `json:"freebind"`
	RangeLo   uint16 `json:"rangeLo,omitempty"`
	RangeHi   uint16 `json:"rangeHi,omitempty"`
	Dev       int    `json:"dev,omitempty"`
	UID       uint32 `json:"uid"` // the socket inode's owner: sk_uid's source
}

// Kernel TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpTimeWait    = 6
	tcpClose       = 7
	tcpListen      = 10
)

var tcpStateNames = map[int]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
	12: "NEW_SYN_RECV", 13: "BOUND_INACTIVE",
}
