package sockopt

import "golang.org/x/sys/unix"

// macOS binds a socket to an interface by index with IP_BOUND_IF or
// IPV6_BOUND_IF; it has no freebind, bind-no-port or per-socket port range.
// Its SO_REUSEPORT lets sockets share a port but does not balance listeners.
var table = map[ID]spec{
	ReuseAddr: {level: unix.SOL_SOCKET, name: unix.SO_REUSEADDR},
	ReusePort: {level: unix.SOL_SOCKET, name: unix.SO_REUSEPORT},
	V6Only:    {level: unix.IPPROTO_IPV6, name: unix.IPV6_V6ONLY, v6Only: true},
	BindToDevice: {level: unix.IPPROTO_IP, name: unix.IP_BOUND_IF,
		level6: unix.IPPROTO_IPV6, name6: unix.IPV6_BOUND_IF, kind: kindDevice},
}
