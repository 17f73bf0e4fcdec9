package lab

import "github.com/tuple-net/tuple/rules"

// extraErrnos are errno names a scenario may expect beyond those the rules
// model produces (rules.ParseErrno). A name outside both lists is a typo.
var extraErrnos = map[string]bool{
	"ENOENT": true, "ENOTCONN": true, "EHOSTUNREACH": true, "EMFILE": true, "ENFILE": true,
	"ENOBUFS": true, "ENOPROTOOPT": true, "EPROTONOSUPPORT": true, "ENOTSUP": true,
	"EPIPE": true, "ENOMEM": true, "ENOTSOCK": true, "EDESTADDRREQ": true, "ENOSPC": true,
}

func knownErrno(name string) bool {
	if _, ok := rules.ParseErrno(name); ok {
		return true
	}
	return extraErrnos[name]
}
