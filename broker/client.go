package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/tuple-net/tuple/inet"
)

// DefaultSocket is where a broker listens unless told otherwise.
const DefaultSocket = "/run/tuple-broker.sock"

// ErrDenied is wrapped by the error of a request the broker refused.
var ErrDenied = errors.New("denied by the broker")

// DeniedError is a refusal with the broker's reason.
type DeniedError struct{ Reason string }

func (e *DeniedError) Error() string { return "broker: " + e.Reason }
func (e *DeniedError) Unwrap() error { return ErrDenied }

// UnreachableError is the failure to reach the broker at Path (no socket
// there, no broker behind it): not a failure of the socket asked for.
type UnreachableError struct {
	Path string
	Err  error
}

func (e *UnreachableError) Error() string { return "broker " + e.Path + ": " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// Client asks a broker for sockets. Each call opens its own connection, so
// a Client is safe for concurrent use.
type Client struct {
	// Path is the broker's socket file (DefaultSocket when empty).
	Path string
}

func (c *Client) path() string {
	if c == nil || c.Path == "" {
		return DefaultSocket
	}
	return c.Path
}

// Socket asks for the socket r describes and returns it as a file (the
// caller closes it) with the broker's answer.
func (c *Client) Socket(ctx context.Context, r *Request) (*os.File, *Response, error) {
	r.Op = OpSocket
	return c.socket(ctx, r)
}

// List returns the live grants the broker shows this caller: all of them
// for root, the caller's own uid's otherwise.
func (c *Client) List(ctx context.Context) ([]LiveGrant, error) {
	resp, err := c.roundTrip(ctx, &Request{Op: OpList})
	if err != nil {
		return nil, err
	}
	return resp.Grants, nil
}

// ListenConfig gets listening sockets from a broker.
type ListenConfig struct {
	Client
	Options []string // reuseport, reuseaddr, v6only
	Group   string   // ask for a member of this reuseport group
	Backlog int      // 0: the broker's default
}

// Listen asks the broker for a TCP listener on address ("127.0.0.1:80",
// "[::]:8080"); network is "tcp", "tcp4" or "tcp6".
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	f, _, err := lc.get(ctx, network, address, true)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return net.FileListener(f)
}

// ListenPacket asks the broker for a bound UDP socket.
func (lc *ListenConfig) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	f, _, err := lc.get(ctx, network, address, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return net.FilePacketConn(f)
}

func (lc *ListenConfig) get(ctx context.Context, network, address string, listen bool) (*os.File, *Response, error) {
	proto, ap, err := parseEndpoint(network, address)
	if err != nil {
		return nil, nil, err
	}
	if listen && proto != inet.TCP {
		return nil, nil, fmt.Errorf("broker: listen on %s: want tcp, tcp4 or tcp6", network)
	}
	r := &Request{Op: OpSocket, Proto: proto, Address: ap.Addr(), Port: ap.Port(), Listen: listen,
		Backlog: lc.Backlog, Options: lc.Options, Group: lc.Group}
	f, resp, err := lc.socket(ctx, r)
	if err != nil {
		return nil, nil, &net.OpError{Op: "listen", Net: network, Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	return f, resp, nil
}

// Listen asks the broker at path for a TCP listener on address.
func Listen(ctx context.Context, path, network, address string) (net.Listener, error) {
	lc := &ListenConfig{Client: Client{Path: path}}
	return lc.Listen(ctx, network, address)
}

// Dialer connects from a source address and port the broker handed out:
// the way to use a privileged or policed source port without the right to
// bind it.
type Dialer struct {
	Client
	// Local is the source "ADDR:PORT" to ask for; port 0 asks for any
	// port of the grant's range.
	Local   string
	Options []string
}

// DialContext connects to address (a literal "ADDR:PORT") from the socket
// the broker hands out.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	proto, remote, err := parseEndpoint(network, address)
	if err != nil {
		return nil, err
	}
	_, local, err := parseEndpoint(network, d.Local)
	if err != nil {
		return nil, fmt.Errorf("broker: source: %w", err)
	}
	if local.Addr().Is4() != remote.Addr().Is4() {
		return nil, fmt.Errorf("broker: source %s and destination %s are of different families", local, remote)
	}
	r := &Request{Op: OpSocket, Proto: proto, Address: local.Addr(), Port: local.Port(), Options: d.Options}
	f, resp, err := d.socket(ctx, r)
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Source: net.TCPAddrFromAddrPort(local), Addr: net.TCPAddrFromAddrPort(remote), Err: err}
	}
	if err != nil {
		return nil, opErr(err)
	}
	defer f.Close()
	if resp.Local.IsValid() {
		local = resp.Local
	}
	conn, err := connectFile(ctx, f, remote)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Source: net.TCPAddrFromAddrPort(local), Addr: net.TCPAddrFromAddrPort(remote), Err: err}
	}
	return conn, nil
}

// Dial connects to remote from the source local the broker at path hands
// out.
func Dial(ctx context.Context, path, network, local, remote string) (net.Conn, error) {
	d := &Dialer{Client: Client{Path: path}, Local: local}
	return d.DialContext(ctx, network, remote)
}

// parseEndpoint reads a network ("tcp", "udp6", ...) and a literal
// "ADDR:PORT", checking the family suffix.
func parseEndpoint(network, address string) (inet.Proto, netip.AddrPort, error) {
	var proto inet.Proto
	fam := byte(0)
	switch network {
	case "tcp", "tcp4", "tcp6":
		proto = inet.TCP
	case "udp", "udp4", "udp6":
		proto = inet.UDP
	default:
		return 0, netip.AddrPort{}, fmt.Errorf("broker: network %q: want tcp, tcp4, tcp6, udp, udp4 or udp6", network)
	}
	if len(network) == 4 {
		fam = network[3]
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("broker: address %q: %v", address, err)
	}
	if host == "" {
		host = "::"
		if fam == '4' {
			host = "0.0.0.0"
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("broker: address %q: want a literal IP address", address)
	}
	a = a.Unmap()
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("broker: address %q: port must be a number 0-65535", address)
	}
	if (fam == '4' && !a.Is4()) || (fam == '6' && !a.Is6()) {
		return 0, netip.AddrPort{}, fmt.Errorf("broker: address %s does not fit network %s", a, network)
	}
	return proto, netip.AddrPortFrom(a, uint16(n)), nil
}

// File asks for a TCP listener (network "tcp", "tcp4", "tcp6") or a bound
// UDP socket ("udp"...) and returns it as a file, as a server started with
// the socket would receive it. The caller closes it.
func (lc *ListenConfig) File(ctx context.Context, network, address string) (*os.File, error) {
	proto, _, err := parseEndpoint(network, address)
	if err != nil {
		return nil, err
	}
	f, _, err := lc.get(ctx, network, address, proto == inet.TCP)
	return f, err
}
