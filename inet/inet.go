// Package inet holds the few types every other package of tuple shares: the
// transport protocol, the address family, a port range, and the error for
// what the running platform cannot do. It is a leaf: it imports nothing of
// tuple and nothing that makes system calls, so the pure rules model can use
// it as freely as the packages that read the kernel.
package inet

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// Proto is the transport protocol. Its values are the IPPROTO numbers the
// kernel uses (sock_diag, /proc, BPF), so readers need no conversion. TCP
// and UDP have separate port tables; IPv4 and IPv6 share one per protocol.
type Proto uint8

const (
	TCP Proto = 6  // IPPROTO_TCP
	UDP Proto = 17 // IPPROTO_UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// ParseProto reads "tcp" or "udp", the way users, scenario files and JSON
// spell a protocol.
func ParseProto(s string) (Proto, error) {
	switch s {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp or udp", s)
}

// MarshalText spells p as "tcp" or "udp", so JSON and TOML carry the name,
// not the IPPROTO number.
func (p Proto) MarshalText() ([]byte, error) {
	if p != TCP && p != UDP {
		return nil, fmt.Errorf("protocol %d: not tcp or udp", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads what MarshalText wrote.
func (p *Proto) UnmarshalText(b []byte) error {
	v, err := ParseProto(string(b))
	if err == nil {
		*p = v
	}
	return err
}

// Family is a socket's address family: 4 (AF_INET) or 6 (AF_INET6); 0 means
// unset. An AF_INET6 socket may hold a v4-mapped address (::ffff:a.b.c.d).
type Family uint8

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// PortRange is an inclusive range of ports; the zero value means unset.
type PortRange struct{ Lo, Hi uint16 }

// IsZero reports whether r is unset.
func (r PortRange) IsZero() bool { return r.Lo == 0 && r.Hi == 0 }

// Contains reports whether p is in r.
func (r PortRange) Contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }

// Size is the number of ports in r.
func (r PortRange) Size() int {
	if r.IsZero() || r.Hi < r.Lo {
		return 0
	}
	return int(r.Hi) - int(r.Lo) + 1
}

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// ParsePortRange parses "LO-HI" (or a single port "P", meaning P-P), the
// way users and scenario files write a range.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		hi = lo
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || l == 0 || h == 0 {
		return PortRange{}, fmt.Errorf("port range %q: want LO-HI with ports 1-65535", s)
	}
	if l > h {
		return PortRange{}, fmt.Errorf("port range %q: low end %d is above high end %d", s, l, h)
	}
	return PortRange{uint16(l), uint16(h)}, nil
}

// ErrUnsupported is wrapped by every error about something the running
// platform (or kernel) cannot do. It wraps errors.ErrUnsupported, so callers
// may test for either.
var ErrUnsupported error = unsupported{}

type unsupported struct{}

func (unsupported) Error() string { return "not supported" }
func (unsupported) Unwrap() error { return errors.ErrUnsupported }

// Unsupported returns an error wrapping ErrUnsupported that says what is not
// supported on this GOOS/GOARCH.
func Unsupported(what string) error {
	return fmt.Errorf("%s is %w on %s/%s", what, ErrUnsupported, runtime.GOOS, runtime.GOARCH)
}
