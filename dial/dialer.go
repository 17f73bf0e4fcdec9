package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/sockopt"
)

// Dialer connects from a chosen source address with a source-port policy. Its
// zero value dials like net.Dialer{}: no bind, the kernel picks everything.
//
// A Dialer is safe for concurrent use once its fields are set.
type Dialer struct {
	// Source is the local address; the zero Addr leaves it to the kernel.
	Source netip.Addr
	// Policy decides the local port; the zero Policy is Shared when Source
	// is set and Kernel otherwise.
	Policy Policy
	// Timeout bounds each dial, as in net.Dialer; 0 means no limit beyond
	// the context's.
	Timeout time.Duration
	// KeepAlive is passed to net.Dialer (0: Go's default, negative: off).
	KeepAlive time.Duration
	// Options are extra socket options set with the policy's own (for
	// example Device); the policy's options win where both set one.
	Options sockopt.Options
	// Control, when set, runs after the options are set and before bind
	// and connect, as net.Dialer.Control does: for options a socket must
	// carry from its start (SO_LINGER, so that a connect completing while
	// the dial is cancelled closes with a reset).
	Control func(network, address string, c syscall.RawConn) error
}

// Dial connects to address on network with a background context.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address on network ("tcp", "tcp4", "tcp6", "udp",
// "udp4", "udp6") from d.Source with d.Policy. Errors are *net.OpError
// wrapping the errno, so errors.Is(err, syscall.EADDRNOTAVAIL) works.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	policy := d.Policy.resolve(d.Source.IsValid())
	nd, err := d.netDialer(network, policy)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Source: d.sourceAddr(network, 0), Err: err}
	}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, explain(err, policy)
	}
	return c, nil
}

// netDialer builds the net.Dialer that carries out policy.
func (d *Dialer) netDialer(network string, policy Policy) (*net.Dialer, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("network %q: want tcp, tcp4, tcp6, udp, udp4 or udp6", network)
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if policy.kind == KindKernel && d.Source.IsValid() {
		return nil, fmt.Errorf("policy kernel binds no source address, so it cannot use %s: leave Source unset or use shared", d.Source)
	}
	p := policy.plan(d.Source.IsValid())
	opts := merge(d.Options, p.opts)
	if err := opts.Check(); err != nil {
		return nil, fmt.Errorf("policy %s: %w", policy, err)
	}
	control := opts.Control
	if d.Control != nil {
		control = func(network, address string, c syscall.RawConn) error {
			if err := opts.Control(network, address, c); err != nil {
				return err
			}
			return d.Control(network, address, c)
		}
	}
	nd := &net.Dialer{
		Timeout:   d.Timeout,
		KeepAlive: d.KeepAlive,
		Control:   control,
	}
	if p.bind {
		nd.LocalAddr = d.sourceAddr(network, p.port)
	}
	return nd, nil
}

// merge returns base with the policy's options added on top.
func merge(base, policy sockopt.Options) sockopt.Options {
	base.ReuseAddr = base.ReuseAddr || policy.ReuseAddr
	base.ReusePort = base.ReusePort || policy.ReusePort
	base.BindAddressNoPort = base.BindAddressNoPort || policy.BindAddressNoPort
	if !policy.PortRange.IsZero() {
		base.PortRange = policy.PortRange
	}
	return base
}

// sourceAddr is the address net.Dialer binds: d.Source (or the wildcard of
// the socket's family when unset) and port.
func (d *Dialer) sourceAddr(network string, port uint16) net.Addr {
	var ip net.IP
	var zone string
	if d.Source.IsValid() {
		ip = d.Source.AsSlice()
		zone = d.Source.Zone()
	}
	switch network {
	case "udp", "udp4", "udp6":
		return &net.UDPAddr{IP: ip, Port: int(port), Zone: zone}
	}
	return &net.TCPAddr{IP: ip, Port: int(port), Zone: zone}
}

// explain adds what the policy means to the errors users meet: a Fixed
// policy whose four-tuple is taken, and port exhaustion. The errno stays
// wrapped.
func explain(err error, policy Policy) error {
	var op *net.OpError
	if !errors.As(err, &op) {
		return err
	}
	var why string
	switch {
	case policy.kind == KindFixed && errors.Is(err, syscall.EADDRNOTAVAIL):
		why = fmt.Sprintf("four-tuple already in use by another socket (policy %s)", policy)
	case policy.kind == KindBind && errors.Is(err, syscall.EADDRINUSE):
		why = "no free port to bind: bind() reserves a port per connection (policy shared shares ports across destinations)"
	case (policy.kind == KindShared || policy.kind == KindKernel || policy.kind == KindRange) &&
		errors.Is(err, syscall.EADDRNOTAVAIL):
		why = fmt.Sprintf("no local port left for this destination (policy %s)", policy)
	default:
		return err
	}
	out := *op
	out.Err = fmt.Errorf("%s: %w", why, op.Err)
	return &out
}
