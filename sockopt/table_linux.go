package sockopt

import "golang.org/x/sys/unix"

var table = map[ID]spec{
	ReuseAddr: {level: unix.SOL_SOCKET, name: unix.SO_REUSEADDR},
	ReusePort: {level: unix.SOL_SOCKET, name: unix.SO_REUSEPORT},
	// IP_BIND_ADDRESS_NO_PORT and IP_LOCAL_PORT_RANGE live at SOL_IP for
	// both families: the kernel keeps them in inet_sock, shared by IPv6.
	BindAddressNoPort: {level: unix.SOL_IP, name: unix.IP_BIND_ADDRESS_NO_PORT},
	LocalPortRange:    {level: unix.SOL_IP, name: unix.IP_LOCAL_PORT_RANGE, kind: kindUint32},
	Freebind: {level: unix.SOL_IP, name: unix.IP_FREEBIND,
		level6: unix.SOL_IPV6, name6: unix.IPV6_FREEBIND},
	V6Only:       {level: unix.SOL_IPV6, name: unix.IPV6_V6ONLY, v6Only: true},
	BindToDevice: {level: unix.SOL_SOCKET, name: unix.SO_BINDTODEVICE, kind: kindDevice},
	Mark:         {level: unix.SOL_SOCKET, name: unix.SO_MARK, kind: kindUint32, setOnly: true},
}
