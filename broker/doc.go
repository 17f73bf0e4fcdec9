// Package broker hands bound sockets to processes of other users over a Unix
// socket (SCM_RIGHTS), by policy, with quotas and an audit trail.
//
// # Why
//
// Binding a privileged port needs root or CAP_NET_BIND_SERVICE, and
// SO_REUSEPORT shares a port only between sockets of one uid. A socket
// descriptor, though, works for whichever process holds it. A broker running
// as root creates and binds the socket and passes the descriptor on, so an
// unprivileged server can serve port 80, processes of different uids can be
// members of one reuseport group, and a host can hand out ports by policy
// with a quota per user instead of letting anyone bind anything.
//
// # Pieces
//
//   - ParsePolicy reads the TOML policy (pure; fuzzed). Policy.Decide applies
//     it to a request: deny by default, first matching grant wins.
//   - Server is the daemon: peer identity from SO_PEERCRED (and
//     SO_PEERGROUPS, /proc/PID/cgroup pinned by SO_PEERPIDFD), one audit
//     record per request through log/slog, live counts for quotas.
//   - Client, ListenConfig and Dialer are the client side: a *os.File, a
//     net.Listener or net.PacketConn, or a net.Conn connected from a
//     brokered source port.
//   - Collector exposes grants, denials and quota use to Prometheus.
//
// docs/broker.md describes the policy format and the wire protocol.
//
//	ln, err := broker.Listen(ctx, broker.DefaultSocket, "tcp", "127.0.0.1:80")
//
// # Release detection
//
// The broker keeps no copy of a socket it handed out. A socket counts as
// live while the kernel's socket table (sock_diag) still lists its inode,
// that is while any process anywhere holds a descriptor of it; when the last
// one is closed the inode disappears (a closed connection lingers only as an
// orphan or in TIME_WAIT, which have no inode). The broker checks every few
// seconds, before refusing a request for a quota, on list and on every
// metrics scrape.
//
// # Privileges and platforms
//
// The daemon needs root, or CAP_NET_BIND_SERVICE for privileged ports and
// CAP_SETUID to create each socket with its grantee's uid (setfsuid).
// Linux only; elsewhere the functions return an error wrapping
// ErrNotSupported. Server and Client are safe for concurrent use.
package broker
