package rules

import (
	"net/netip"

	"github.com/tuple-net/tuple/inet"
)

// class is how the kernel's address comparison (inet_rcv_saddr_equal and
// the bhash2 lookups) sees a socket's local address.
type class uint8

const (
	classV4        class = iota + 1 // specific IPv4: AF_INET a.b.c.d or AF_INET6 ::ffff:a.b.c.d
	classAny4                       // 0.0.0.0 on an AF_INET socket
	classAnyMapped                  // ::ffff:0.0.0.0 on an AF_INET6 socket
	classAny6                       // ::
	classV6                         // specific, non-mapped IPv6
)

// endpoint is a socket's local address after the kernel's normalisation.
type endpoint struct {
	class  class
	addr   netip.Addr // IPv4 for classV4, IPv6 without zone for classV6
	v6only bool
}

// familyOf returns s's family, inferring it from the address when unset.
func familyOf(f inet.Family, a netip.Addr) inet.Family {
	switch f {
	case inet.IPv4, inet.IPv6:
		return f
	}
	if a.Is4() {
		return inet.IPv4
	}
	return inet.IPv6
}

// normalise classifies a local address held by a socket of family f. An
// AF_INET6 socket's v4 address given unmapped (as some tables print it) is
// taken as v4-mapped; an invalid address is the family's wildcard.
func normalise(f inet.Family, a netip.Addr, v6only bool) endpoint {
	f = familyOf(f, a)
	if f == inet.IPv4 {
		a = a.Unmap()
		if !a.IsValid() || !a.Is4() || a.IsUnspecified() {
			return endpoint{class: classAny4}
		}
		return endpoint{class: classV4, addr: a}
	}
	if !a.IsValid() {
		return endpoint{class: classAny6, v6only: v6only}
	}
	if a.Is4() || a.Is4In6() {
		u := a.Unmap()
		if u.IsUnspecified() {
			return endpoint{class: classAnyMapped}
		}
		return endpoint{class: classV4, addr: u}
	}
	if a.IsUnspecified() {
		return endpoint{class: classAny6, v6only: v6only}
	}
	return endpoint{class: classV6, addr: a.WithZone(""), v6only: v6only}
}

// overlap is the overlap table of docs/kernel-rules.md: whether a new socket at
// n and an existing one at o claim a common address.
func overlap(n, o endpoint) bool {
	switch n.class {
	case classV4:
		switch o.class {
		case classV4:
			return n.addr == o.addr
		case classAny4, classAnyMapped:
			return true
		case classAny6:
			return !o.v6only
		}
		return false
	case classAny4, classAnyMapped:
		switch o.class {
		case classV4, classAny4, classAnyMapped:
			return true
		case classAny6:
			return !o.v6only
		case classV6:
			// Only the AF_INET wildcard compares by sk_rcv_saddr, which
			// a v6 socket without v6only leaves as a placeholder.
			return n.class == classAny4 && !o.v6only
		}
		return false
	case classAny6:
		switch o.class {
		case classV4, classAny4, classAnyMapped:
			return !n.v6only
		}
		return true
	case classV6:
		switch o.class {
		case classAny6:
			return true
		case classV6:
			return n.addr == o.addr
		}
	}
	return false
}

// isLoopback reports whether a (v4, mapped or v6) is a loopback address.
func isLoopback(a netip.Addr) bool {
	return a.Unmap().IsLoopback()
}

// describe names an address class in plain words.
func (e endpoint) describe() string {
	switch e.class {
	case classV4:
		return e.addr.String()
	case classAny4:
		return "0.0.0.0 (all IPv4 addresses)"
	case classAnyMapped:
		return "::ffff:0.0.0.0 (all IPv4 addresses)"
	case classAny6:
		if e.v6only {
			return ":: (all IPv6 addresses, v6only)"
		}
		return ":: (all IPv4 and IPv6 addresses)"
	case classV6:
		return e.addr.String()
	}
	return "?"
}
