package sockopt

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/tuple-net/tuple/inet"
)

// ID names one socket option, independent of the platform's constants.
type ID int

// The options tuple knows. The comments give the Linux name.
const (
	ReuseAddr         ID = iota // SO_REUSEADDR
	ReusePort                   // SO_REUSEPORT
	BindAddressNoPort           // IP_BIND_ADDRESS_NO_PORT: pick the port at connect(), not bind()
	LocalPortRange              // IP_LOCAL_PORT_RANGE: per-socket ephemeral range
	Freebind                    // IP_FREEBIND / IPV6_FREEBIND: bind to a non-local address
	V6Only                      // IPV6_V6ONLY
	BindToDevice                // SO_BINDTODEVICE (IP_BOUND_IF on macOS)
	ExclusiveAddrUse            // SO_EXCLUSIVEADDRUSE (Windows only)
	Mark                        // SO_MARK: the firewall mark policy routing (ip rule fwmark) matches
	numIDs
)

var idNames = [numIDs]string{
	ReuseAddr:         "SO_REUSEADDR",
	ReusePort:         "SO_REUSEPORT",
	BindAddressNoPort: "IP_BIND_ADDRESS_NO_PORT",
	LocalPortRange:    "IP_LOCAL_PORT_RANGE",
	Freebind:          "IP_FREEBIND",
	V6Only:            "IPV6_V6ONLY",
	BindToDevice:      "SO_BINDTODEVICE",
	ExclusiveAddrUse:  "SO_EXCLUSIVEADDRUSE",
	Mark:              "SO_MARK",
}

func (id ID) String() string {
	if id >= 0 && id < numIDs {
		return idNames[id]
	}
	return "option(" + strconv.Itoa(int(id)) + ")"
}

// kind says how an option's value is encoded.
type kind uint8

const (
	kindBool   kind = iota // int 0/1
	kindUint32             // a 32-bit value (IP_LOCAL_PORT_RANGE packs hi<<16|lo)
	kindDevice             // an interface name (Linux) or index (macOS)
)

// spec is where one option lives on one platform. Options whose IPv6 socket
// needs another level or name (IP_FREEBIND vs IPV6_FREEBIND) set level6/name6.
type spec struct {
	level, name   int
	level6, name6 int
	kind          kind
	v6Only        bool // only meaningful on an IPv6 socket
	setOnly       bool // tuple sets it and never reports it: Read skips it
}

func (s spec) levelName(ipv6 bool) (int, int) {
	if ipv6 && s.level6 != 0 {
		return s.level6, s.name6
	}
	return s.level, s.name
}

// Supported reports whether the running platform has option id.
func Supported(id ID) bool {
	_, ok := table[id]
	return ok
}

// V6OnlyMode is IPV6_V6ONLY as a three-way choice: leave the system default
// (net.ipv6.bindv6only, which Go overrides to off for dual-stack listeners),
// force it on, or force it off.
type V6OnlyMode uint8

const (
	V6OnlyDefault V6OnlyMode = iota
	V6OnlyOn
	V6OnlyOff
)

// Options are the options to set on a socket before it binds. The zero value
// sets nothing.
type Options struct {
	ReuseAddr         bool
	ReusePort         bool
	BindAddressNoPort bool
	PortRange         inet.PortRange // IP_LOCAL_PORT_RANGE when non-zero
	Freebind          bool
	V6Only            V6OnlyMode
	Device            string // SO_BINDTODEVICE interface name when non-empty
	ExclusiveAddrUse  bool   // Windows only
	Mark              uint32 // SO_MARK when non-zero (Linux; needs CAP_NET_ADMIN)
	// ClearReuseAddr sets SO_REUSEADDR to 0. Go's net package turns it
	// on for every listener on Unix; this is how a caller undoes that.
	ClearReuseAddr bool
}

// setting is one option with its value, in the order they are applied.
type setting struct {
	id    ID
	value int
	dev   string
}

// settings lists the options o asks for. Order matters only for readability
// of errors: the first failure is reported.
func (o Options) settings(ipv6 bool) ([]setting, error) {
	var out []setting
	add := func(on bool, id ID, v int) {
		if on {
			out = append(out, setting{id: id, value: v})
		}
	}
	if o.ReuseAddr && o.ClearReuseAddr {
		return nil, fmt.Errorf("%s: both set and cleared", ReuseAddr)
	}
	add(o.ReuseAddr, ReuseAddr, 1)
	add(o.ClearReuseAddr, ReuseAddr, 0)
	add(o.ReusePort, ReusePort, 1)
	add(o.ExclusiveAddrUse, ExclusiveAddrUse, 1)
	add(o.BindAddressNoPort, BindAddressNoPort, 1)
	add(!o.PortRange.IsZero(), LocalPortRange, int(uint32(o.PortRange.Hi)<<16|uint32(o.PortRange.Lo)))
	add(o.Freebind, Freebind, 1)
	add(o.Mark != 0, Mark, int(o.Mark))
	switch o.V6Only {
	case V6OnlyOn, V6OnlyOff:
		if !ipv6 {
			return nil, OnlyIPv6Error(V6Only)
		}
		add(true, V6Only, boolInt(o.V6Only == V6OnlyOn))
	}
	if o.Device != "" {
		out = append(out, setting{id: BindToDevice, dev: o.Device})
	}
	return out, nil
}

// Check returns an error wrapping inet.ErrUnsupported when the running platform
// lacks an option o asks for. Callers use it to reject flags before any
// socket exists.
func (o Options) Check() error {
	all, err := o.settings(true) // an IPv6 socket takes every option
	if err != nil {
		return err
	}
	for _, s := range all {
		if !Supported(s.id) {
			return notSupported(s.id)
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func notSupported(id ID) error { return inet.Unsupported(id.String()) }

// Apply sets o on the socket descriptor fd. ipv6 tells the address family,
// since a few options have family-specific names.
func (o Options) Apply(fd uintptr, ipv6 bool) error {
	settings, err := o.settings(ipv6)
	if err != nil {
		return err
	}
	for _, s := range settings {
		sp, ok := table[s.id]
		if !ok {
			return notSupported(s.id)
		}
		level, name := sp.levelName(ipv6)
		if sp.kind == kindDevice {
			err = setDevice(fd, level, name, s.dev)
		} else {
			err = setInt(fd, level, name, s.value)
		}
		if err != nil {
			// The failed call names the option: "setsockopt SO_MARK:
			// operation not permitted" says what to drop.
			var se *os.SyscallError
			if errors.As(err, &se) {
				return os.NewSyscallError(se.Syscall+" "+s.id.String(), se.Err)
			}
			return fmt.Errorf("set %s: %w", s.id, err)
		}
	}
	return nil
}

// Control applies o from inside net.Dialer.Control or net.ListenConfig.Control.
// The network ("tcp4", "udp6", ...) gives the family.
func (o Options) Control(network, address string, c syscall.RawConn) error {
	var applyErr error
	err := c.Control(func(fd uintptr) {
		applyErr = o.Apply(fd, IsIPv6Network(network, address))
	})
	if err != nil {
		return err
	}
	return applyErr
}

// IsIPv6Network reports whether a socket for network/address is AF_INET6.
// Go passes the resolved network ("tcp4"/"tcp6") to Control functions;
// for a bare "tcp" the address decides.
func IsIPv6Network(network, address string) bool {
	switch {
	case strings.HasSuffix(network, "6"):
		return true
	case strings.HasSuffix(network, "4"):
		return false
	}
	return strings.HasPrefix(address, "[")
}

// Value is a read option: its value, or why it could not be read.
type Value struct {
	Known bool
	On    bool   // for boolean options
	Int   int    // raw value
	Err   error  // why it is unknown, when !Known
	Text  string // BindToDevice: the interface name
}

// OnlyIPv6Error is why option id, which only IPv6 sockets have
// (IPV6_V6ONLY), is refused or unknown on an IPv4 socket: Read's reason,
// for callers that learn the other options elsewhere.
func OnlyIPv6Error(id ID) error { return fmt.Errorf("%s: only an IPv6 socket has it", id) }

// Read reads every option the platform has from descriptor fd, but those
// tuple only sets (SO_MARK). Options the platform lacks, or that the
// socket's family does not have, come back unknown with the reason.
func Read(fd uintptr, ipv6 bool) map[ID]Value {
	out := make(map[ID]Value, len(table))
	for id, sp := range table {
		if sp.setOnly {
			continue
		}
		if sp.v6Only && !ipv6 {
			out[id] = Value{Err: OnlyIPv6Error(id)}
			continue
		}
		level, name := sp.levelName(ipv6)
		var v Value
		if sp.kind == kindDevice {
			v.Text, v.Err = getDevice(fd, level, name)
		} else {
			v.Int, v.Err = getInt(fd, level, name)
			if sp.kind == kindUint32 {
				v.Int = int(uint32(v.Int)) // getsockopt returns a C int
			}
			v.On = v.Int != 0
		}
		v.Known = v.Err == nil
		out[id] = v
	}
	return out
}
