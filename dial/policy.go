package dial

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockopt"
)

// Kind names a source-port policy.
type Kind uint8

// The policies. The zero Kind is the default: Shared when the Dialer has a
// source address, Kernel otherwise.
const (
	KindDefault Kind = iota
	KindKernel       // plain connect(): no bind, the kernel picks address and port
	KindBind         // bind(src, 0) then connect(): what net.Dialer.LocalAddr does
	KindShared       // IP_BIND_ADDRESS_NO_PORT + bind(src, 0): port picked at connect()
	KindFixed        // SO_REUSEADDR + SO_REUSEPORT + bind(src, port)
	KindRange        // IP_LOCAL_PORT_RANGE on the socket, port picked at connect()
)

var kindNames = [...]string{
	KindDefault: "default",
	KindKernel:  "kernel",
	KindBind:    "bind",
	KindShared:  "shared",
	KindFixed:   "fixed",
	KindRange:   "range",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Policy decides how a Dialer gets its local port. Policies are small values,
// safe to copy and share. The zero Policy is the default (see KindDefault).
type Policy struct {
	kind  Kind
	port  uint16         // KindFixed
	ports inet.PortRange // KindRange
}

// The policies that take no argument.
var (
	Kernel = Policy{kind: KindKernel}
	Bind   = Policy{kind: KindBind}
	Shared = Policy{kind: KindShared}
)

// Fixed returns the policy that binds every socket to port, sharing it across
// destinations with SO_REUSEADDR and SO_REUSEPORT. A connection whose
// four-tuple is already taken fails with an error wrapping EADDRNOTAVAIL.
func Fixed(port uint16) Policy { return Policy{kind: KindFixed, port: port} }

// Range returns the policy that restricts the kernel's choice of local port to
// lo-hi for each socket (IP_LOCAL_PORT_RANGE), ports still shared across
// destinations. Range(p, p) pins the port to p.
func Range(lo, hi uint16) Policy {
	return Policy{kind: KindRange, ports: inet.PortRange{Lo: lo, Hi: hi}}
}

// Kind returns p's kind.
func (p Policy) Kind() Kind { return p.kind }

// Port returns the port of a Fixed policy, 0 for the others.
func (p Policy) Port() uint16 { return p.port }

// Ports returns the range of a Range policy, the zero range for the others.
func (p Policy) Ports() inet.PortRange { return p.ports }

// String returns p in the form ParsePolicy reads.
func (p Policy) String() string {
	switch p.kind {
	case KindFixed:
		return "fixed:" + strconv.Itoa(int(p.port))
	case KindRange:
		return "range:" + p.ports.String()
	}
	return p.kind.String()
}

// Validate reports whether p can be used: a Fixed port is not 0 and a Range
// is 1-65535 with lo <= hi.
func (p Policy) Validate() error {
	switch p.kind {
	case KindDefault, KindKernel, KindBind, KindShared:
		return nil
	case KindFixed:
		if p.port == 0 {
			return fmt.Errorf("policy fixed: port must be 1-65535")
		}
		return nil
	case KindRange:
		if p.ports.Lo == 0 || p.ports.Lo > p.ports.Hi {
			return fmt.Errorf("policy range:%s: want LO-HI with 1 <= LO <= HI <= 65535", p.ports)
		}
		return nil
	}
	return fmt.Errorf("unknown policy %s", p.kind)
}

// maxPolicyText bounds what ParsePolicy reads; the longest valid policy is
// "range:65535-65535".
const maxPolicyText = 64

// ParsePolicy reads a policy written as "kernel", "bind", "shared",
// "fixed:PORT" or "range:LO-HI" (the flag syntax of tuple load). It is pure
// and never panics.
func ParsePolicy(s string) (Policy, error) {
	if len(s) > maxPolicyText {
		return Policy{}, fmt.Errorf("policy %.20q...: too long", s)
	}
	name, arg, hasArg := strings.Cut(s, ":")
	switch name {
	case "kernel", "bind", "shared":
		if hasArg {
			return Policy{}, fmt.Errorf("policy %q: %s takes no argument", s, name)
		}
		return map[string]Policy{"kernel": Kernel, "bind": Bind, "shared": Shared}[name], nil
	case "fixed":
		port, err := strconv.ParseUint(arg, 10, 16)
		if !hasArg || err != nil || port == 0 {
			return Policy{}, fmt.Errorf("policy %q: want fixed:PORT with PORT 1-65535", s)
		}
		return Fixed(uint16(port)), nil
	case "range":
		lo, hi, ok := strings.Cut(arg, "-")
		l, err1 := strconv.ParseUint(lo, 10, 16)
		h, err2 := strconv.ParseUint(hi, 10, 16)
		if !hasArg || !ok || err1 != nil || err2 != nil || l == 0 || l > h {
			return Policy{}, fmt.Errorf("policy %q: want range:LO-HI with 1 <= LO <= HI <= 65535", s)
		}
		return Range(uint16(l), uint16(h)), nil
	}
	return Policy{}, fmt.Errorf("policy %q: want kernel, bind, shared, fixed:PORT or range:LO-HI", s)
}

// resolve turns the default policy into the one it stands for.
func (p Policy) resolve(hasSource bool) Policy {
	if p.kind != KindDefault {
		return p
	}
	if hasSource {
		return Shared
	}
	return Kernel
}

// plan is what a resolved policy does to a socket: the options set before
// bind, and whether and to which port it binds.
type plan struct {
	opts sockopt.Options
	bind bool
	port uint16
}

func (p Policy) plan(hasSource bool) plan {
	switch p.kind {
	case KindBind:
		return plan{bind: true}
	case KindShared:
		return plan{bind: true, opts: sockopt.Options{BindAddressNoPort: true}}
	case KindFixed:
		return plan{bind: true, port: p.port, opts: sockopt.Options{ReuseAddr: true, ReusePort: true}}
	case KindRange:
		// With a source address the socket binds it without a port, so the
		// range applies at connect() where ports are shared by four-tuple.
		return plan{bind: hasSource, opts: sockopt.Options{PortRange: p.ports, BindAddressNoPort: hasSource}}
	}
	return plan{} // Kernel
}
