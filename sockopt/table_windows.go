package sockopt

import "golang.org/x/sys/windows"

// soExclusiveAddrUse is ~SO_REUSEADDR, as winsock2.h defines it; x/sys/windows
// does not export it.
const soExclusiveAddrUse = ^windows.SO_REUSEADDR

// On Windows SO_REUSEADDR is what lets two sockets share a port (it even lets
// a later socket take over a bound one), SO_EXCLUSIVEADDRUSE forbids that,
// and there is no SO_REUSEPORT: asking for it is an error, not a silent
// mapping, so the user learns the semantics differ.
var table = map[ID]spec{
	ReuseAddr:        {level: windows.SOL_SOCKET, name: windows.SO_REUSEADDR},
	ExclusiveAddrUse: {level: windows.SOL_SOCKET, name: soExclusiveAddrUse},
	V6Only:           {level: windows.IPPROTO_IPV6, name: windows.IPV6_V6ONLY, v6Only: true},
}
