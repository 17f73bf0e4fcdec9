// Package dial connects from a chosen source address with a chosen
// source-port policy, so a client that picks its source address can still hold
// far more connections than there are ephemeral ports.
//
// # Why
//
// A TCP connection is its four-tuple; the kernel only needs that to be
// unique. But Go's net.Dialer with LocalAddr (even with port 0) calls bind()
// before connect(), and bind() must pick a port without knowing the
// destination, so it reserves the port for every destination: a client with a
// source address runs out at one connection per ephemeral port, about 28,000
// with the default range 32768-60999 (golang/go issues 9929 and 21404).
// connect() alone, or bind() with IP_BIND_ADDRESS_NO_PORT, lets the kernel
// pick the port at connect() time when it knows the destination, so one port
// serves every destination and the limit becomes the range times the number of
// distinct destinations. Cloudflare's write-ups ("How to stop running out of
// ephemeral ports and start to love long-lived connections", 2022; "connect()
// - why are you so slow?", 2024) describe these techniques; this package makes
// them a one-line choice.
//
// # Policies
//
//   - Kernel: plain connect(), no bind. The kernel picks the source address
//     (from the route) and a port shared across destinations. A Dialer with
//     a Source and this policy is an error, not a silent drop of the address.
//   - Bind: bind(src, 0) then connect(), exactly what net.Dialer.LocalAddr
//     does. One port per connection; exhaustion is EADDRINUSE at bind(). Kept
//     for comparison.
//   - Shared, the default when Source is set: IP_BIND_ADDRESS_NO_PORT, then
//     bind(src, 0) fixes only the address and connect() picks a port whose
//     four-tuple is free, sharing ports across destinations like Kernel.
//     Exhaustion for one destination is EADDRNOTAVAIL at connect().
//   - Fixed(port): SO_REUSEADDR + SO_REUSEPORT + bind(src, port): every
//     connection uses that port, one per destination. A four-tuple already
//     held is an error wrapping EADDRNOTAVAIL, never a silent fallback to
//     another port.
//   - Range(lo, hi): IP_LOCAL_PORT_RANGE on the socket (Linux 6.3+), so the
//     kernel picks from lo-hi; with a Source the address is bound with
//     IP_BIND_ADDRESS_NO_PORT so ports are still shared by four-tuple.
//     Range(p, p) pins the port to p.
//
// Policies are parsed from the flag syntax of tuple load with ParsePolicy:
// "kernel", "bind", "shared", "fixed:PORT", "range:LO-HI".
//
// # UDP
//
// The Dialer also makes connected UDP sockets, but the kernel checks no
// four-tuple for UDP: connect() on an unbound UDP socket binds a port of its
// own (no sharing across destinations, so Kernel, Shared and Bind all cost a
// port per socket; exhaustion is EAGAIN from connect(), EADDRINUSE from
// bind()), and two Fixed UDP sockets can hold the very same
// four-tuple without any error, the newer one receiving the peer's
// datagrams. Callers that need uniqueness must enforce it themselves.
//
// # Servers
//
// ListenGroup opens n listeners sharing one port with SO_REUSEPORT so the
// kernel spreads connections over goroutines or processes. Options steer
// the spread (SteerCPU: member i serves CPU i; SteerMap: a
// reuseport.Supervisor places, drains and replaces members by index) or
// make a closing member's connections move to a live one (Migrate). The
// group is plain TCP: Go's default MPTCP listener takes no reuseport
// program. Package handover moves listeners to a new process instead.
//
// # Platforms and privileges
//
// No privilege is needed beyond what bind() asks (ports below
// net.ipv4.ip_unprivileged_port_start). Shared and Range need Linux options;
// elsewhere those policies fail with an error wrapping sockopt.ErrNotSupported,
// as does Fixed on Windows (no SO_REUSEPORT). Errors are *net.OpError wrapping
// the errno, so errors.Is(err, syscall.EADDRNOTAVAIL) works.
//
// Example:
//
//	d := &dial.Dialer{Source: netip.MustParseAddr("192.0.2.10")} // Shared
//	conn, err := d.DialContext(ctx, "tcp", "198.51.100.1:443")
package dial
