// Package socktab takes a snapshot of the host's TCP and UDP sockets: every
// state, IPv4 and IPv6, including TCP sockets that are bound but neither
// listening nor connected (inet_diag state 13, TCP_BOUND_INACTIVE, Linux 6.8+),
// which /proc/net/tcp and older ss never show.
//
// The table is what `tuple ls`, `tuple who`, the rules model and the port
// budgets stand on, so it reports only what the kernel says: an option that
// cannot be read is "unknown" with the reason, never a guess.
//
//	t, err := socktab.Snapshot(ctx, socktab.Query{TCP: true, LocalPort: 8080, Owners: true})
//	for _, s := range t.Sockets {
//		fmt.Println(s.State, s.Local, s.Remote, s.Owners)
//	}
//
// Sources. On Linux the sockets come from netlink sock_diag (inet_diag); the
// port and state filters of a Query are pushed into the kernel (a state mask
// and INET_DIAG_REQ_BYTECODE, as ss does), so a filtered snapshot costs little
// even on a host with many sockets. Where netlink is unavailable the package
// falls back to /proc/net/{tcp,tcp6,udp,udp6}; Table.Source says which was
// used. Other platforms return an error wrapping inet.ErrUnsupported.
//
// Owners (Query.Owners) map socket inodes to processes by reading the links
// in /proc/*/fd, in parallel. Options (Query.Options) are read from a live
// socket by duplicating one owner's descriptor with pidfd_getfd(2), except
// where Query.OptionsFrom (the BPF socket iterator's records, through
// hostmodel.Facts.Options) already knows them.
//
// Privileges. Any user can list sockets. Seeing the owners of other users'
// sockets and reading their options needs root (or CAP_SYS_PTRACE); without
// it those fields are missing or unknown with the reason.
//
// Namespaces. Snapshot reads the network namespace of the calling thread
// (netlink) and the procfs given in Query.ProcRoot. It is safe for concurrent
// use; a Table is plain data.
package socktab
