package sockopt

import "golang.org/x/sys/unix"

// FreeBSD's IP_BINDANY is the counterpart of IP_FREEBIND. Its SO_REUSEPORT
// shares a port without balancing (SO_REUSEPORT_LB balances); it has no
// bind-no-port, per-socket port range or device binding.
var table = map[ID]spec{
	ReuseAddr: {level: unix.SOL_SOCKET, name: unix.SO_REUSEADDR},
	ReusePort: {level: unix.SOL_SOCKET, name: unix.SO_REUSEPORT},
	Freebind: {level: unix.IPPROTO_IP, name: unix.IP_BINDANY,
		level6: unix.IPPROTO_IPV6, name6: unix.IPV6_BINDANY},
	V6Only: {level: unix.IPPROTO_IPV6, name: unix.IPV6_V6ONLY, v6Only: true},
}
