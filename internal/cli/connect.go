package cli

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/relay"
	"github.com/tuple-net/tuple/sockopt"
)

// connectOptions are the flags of `tuple connect`, as typed.
type connectOptions struct {
	sourcePort string
	sourceAddr string
	udp        bool
	v4, v6     bool
	verbose    bool
	scan       bool
	timeout    string
	noShutdown bool
	shutdown   bool   // -N: nc's flag for what tuple does by default
	quit       string // -q SECS: end this long after stdin ends
	numeric    bool   // -n: no name or service lookups
	reusePort  bool
	reuseAddr  bool
	bindNoPort bool
	portRange  string
	mark       markFlag
	broker     string
}

// connectPlan is a connect invocation after parsing: everything checked,
// nothing opened yet.
type connectPlan struct {
	proto   string // "tcp" or "udp"
	network string // proto with the -4/-6 suffix
	host    string
	ports   []inet.PortRange // one port; with -z ports and ranges
	local   netip.AddrPort   // what we bind: zero when not binding
	bind    bool
	timeout time.Duration
	quit    time.Duration // with hasQuit: -q
	hasQuit bool
	sockopt sockopt.Options
	opts    *connectOptions
}

func newConnectCmd(s Streams) *cobra.Command {
	o := &connectOptions{}
	cmd := &cobra.Command{
		Use:   "connect [flags] HOST PORT (with -z: HOST PORT|LO-HI...)",
		Short: "Connect to HOST PORT and relay stdin/stdout (a netcat client)",
		Long: `Connect to HOST PORT and copy stdin to the connection and the connection to
stdout, binary-safe. When stdin ends, the socket's write side is shut down
(the peer sees EOF; nc does this with -N, tuple by default) and tuple keeps
reading until the peer closes its side. The session ends when both sides are
done: a peer that closes first does not cut stdin short, everything stdin
still has is sent (as nc -N and socat do). -q SECS ends the session SECS after
stdin ended even if the peer has not closed (-q 0: at once; negative: wait
for the peer). --no-shutdown keeps the write side open.

-s and -p choose the source address and port. A bind that fails is reported and
never retried on another port. --reuseport or --reuseaddr let several sockets
share a source port towards different destinations; every socket sharing the
port must set the same option.

With -z, give one or more ports and ranges (20-30 443): each port is probed with
a connection and reported open or closed; the exit code is 0 when any port is
open. With -zu each port gets an empty datagram and is reported open (a datagram
came back), closed (the kernel's port-unreachable) or open|filtered (nothing
within -w, default 1s; a silent port is probed twice); the exit code is 0 when
any port is not closed. -n refuses names: HOST must be an address and PORT a
number.`,
		Example: `  tuple connect -v example.test 80
  tuple connect -s 10.0.0.1 -p 12345 --reuseport 10.0.0.2 80
  tuple connect -z -w 1 10.0.0.2 20-30 443
  tuple connect -zu -w 300ms 127.0.0.1 53 5353
  tar c dir | tuple connect -N -q 1 10.0.0.2 9000`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.scan && len(args) >= 2 {
				return nil
			}
			if len(args) != 2 {
				return usageError("connect: want HOST PORT, got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			plan, err := o.plan(args[0], args[1:]...)
			if err != nil {
				return usageError("connect: %v", err)
			}
			if plan.opts.scan {
				return plan.scan(cmd.Context(), s)
			}
			return plan.run(cmd.Context(), s)
		}),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&o.sourcePort, "source-port", "p", "", "source `PORT` (bind to it before connecting)")
	f.StringVarP(&o.sourceAddr, "source", "s", "", "source `ADDR`ess (bind to it before connecting)")
	f.BoolVarP(&o.udp, "udp", "u", false, "use UDP")
	f.BoolVarP(&o.v4, "ipv4", "4", false, "use IPv4 only")
	f.BoolVarP(&o.v6, "ipv6", "6", false, "use IPv6 only")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print the four-tuple the connection got to stderr")
	f.BoolVarP(&o.scan, "zero", "z", false, "zero-I/O mode: report whether each port (or range LO-HI) is open")
	f.StringVarP(&o.timeout, "wait", "w", "", "connect timeout: seconds or a duration (500ms); with -u also the idle time after stdin ends, with -zu each probe's wait for an answer")
	f.BoolVar(&o.noShutdown, "no-shutdown", false, "keep the socket's write side open when stdin ends")
	f.BoolVarP(&o.shutdown, "shutdown", "N", false, "shut down the socket's write side when stdin ends (the default; accepted for nc users)")
	f.StringVarP(&o.quit, "quit", "q", "", "end the session `SECS` after stdin ends, even if the peer has not closed (0: at once)")
	f.BoolVarP(&o.numeric, "numeric", "n", false, "no name or service lookups: HOST must be an address, PORT a number")
	f.BoolVar(&o.reusePort, "reuseport", false, "set SO_REUSEPORT: share the source port with other sockets of the same uid that set it")
	f.BoolVar(&o.reuseAddr, "reuseaddr", false, "set SO_REUSEADDR: share the source port with other non-listening sockets that set it")
	f.BoolVar(&o.bindNoPort, "bind-no-port", false, "with -s, choose the source port at connect time (IP_BIND_ADDRESS_NO_PORT), sharing it across destinations")
	f.StringVar(&o.portRange, "port-range", "", "choose the source port from `LO-HI` (IP_LOCAL_PORT_RANGE)")
	f.Var(&o.mark, "mark", "set firewall mark `MARK` (SO_MARK, needs CAP_NET_ADMIN), which policy routing may match (ip rule fwmark)")
	f.StringVar(&o.broker, "broker", "", "get the source socket from the tuple broker at `PATH` (see tuple broker)")
	return cmd
}

// plan checks the flags and arguments: every error it returns is bad input.
// Only -z takes more than one port.
func (o *connectOptions) plan(host string, ports ...string) (*connectPlan, error) {
	p := &connectPlan{proto: "tcp", host: host, opts: o}
	if o.udp {
		p.proto = "udp"
	}
	fam, err := pickFamily(o.v4, o.v6)
	if err != nil {
		return nil, err
	}
	p.network = fam.network(p.proto)
	dest, err := p.destination(fam, ports)
	if err != nil {
		return nil, err
	}
	if err := p.timing(); err != nil {
		return nil, err
	}
	srcPort, err := p.source(fam, dest)
	if err != nil {
		return nil, err
	}
	if err := p.socketOptions(srcPort); err != nil {
		return nil, err
	}
	if o.broker != "" {
		if err := p.checkBroker(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// destination checks HOST (an address of the family, or a name unless
// -n) and the PORT arguments (one, or several with -z), and returns
// HOST's address when it is one.
func (p *connectPlan) destination(fam family, ports []string) (netip.Addr, error) {
	o, host := p.opts, p.host
	if host == "" {
		return netip.Addr{}, fmt.Errorf("empty HOST")
	}
	var dest netip.Addr
	if a, err := parseIP(host); err == nil {
		if err := fam.check("HOST", host, a); err != nil {
			return netip.Addr{}, err
		}
		dest = a
		p.host = a.String()
	} else if o.numeric {
		return netip.Addr{}, fmt.Errorf("-n: HOST %q is not an IP address", host)
	} else if err := checkHostName("HOST", host); err != nil {
		return netip.Addr{}, err
	}
	if len(ports) == 0 || (!o.scan && len(ports) > 1) {
		return netip.Addr{}, fmt.Errorf("want HOST PORT, got %d port argument(s)", len(ports))
	}
	for _, port := range ports {
		r, err := o.parsePorts(p.proto, port)
		if err != nil {
			return netip.Addr{}, err
		}
		p.ports = append(p.ports, r)
	}
	return dest, nil
}

// timing checks -w, -q and how stdin's end shuts the socket down.
func (p *connectPlan) timing() error {
	o := p.opts
	var err error
	if p.timeout, err = parseTimeout(o.timeout); err != nil {
		return err
	}
	if o.quit != "" {
		if p.quit, p.hasQuit, err = parseQuit(o.quit); err != nil {
			return err
		}
	}
	if o.noShutdown && o.shutdown {
		return fmt.Errorf("-N and --no-shutdown exclude each other")
	}
	return nil
}

// source checks -s and -p; with either the socket binds before it
// connects, to the wildcard of dest's family when only -p is given. It
// returns the -p port (0: none).
func (p *connectPlan) source(fam family, dest netip.Addr) (uint16, error) {
	o := p.opts
	var srcPort uint16
	var err error
	if o.sourcePort != "" {
		if srcPort, err = o.parsePort(p.proto, o.sourcePort); err != nil {
			return 0, fmt.Errorf("-p: %v", err)
		}
	}
	src := netip.Addr{}
	if o.sourceAddr != "" {
		if src, err = parseIP(o.sourceAddr); err != nil {
			return 0, fmt.Errorf("-s: %v", err)
		}
		if err := fam.check("-s", o.sourceAddr, src); err != nil {
			return 0, err
		}
		if dest.IsValid() && dest.Is4() != src.Is4() {
			return 0, fmt.Errorf("-s %s and HOST %s are of different address families", src, dest)
		}
	}
	if srcPort != 0 || src.IsValid() {
		p.bind = true
		if !src.IsValid() {
			src = netip.IPv4Unspecified()
			if fam == ipv6Only || (dest.IsValid() && dest.Is6()) {
				src = netip.IPv6Unspecified()
			}
		}
		p.local = netip.AddrPortFrom(src, srcPort)
	}
	return srcPort, nil
}

// socketOptions checks the socket option flags against each other and -p
// (srcPort), and against what the platform supports.
func (p *connectPlan) socketOptions(srcPort uint16) error {
	o := p.opts
	p.sockopt = sockopt.Options{ReuseAddr: o.reuseAddr, ReusePort: o.reusePort, BindAddressNoPort: o.bindNoPort}
	if o.bindNoPort {
		switch {
		case srcPort != 0:
			return fmt.Errorf("--bind-no-port defers choosing the source port; it cannot be combined with -p")
		case o.sourceAddr == "":
			return fmt.Errorf("--bind-no-port needs -s: without a source address there is no bind to defer")
		case o.udp:
			return fmt.Errorf("--bind-no-port works with TCP only")
		}
	}
	if o.portRange != "" {
		if srcPort != 0 {
			return fmt.Errorf("--port-range picks the source port; it cannot be combined with -p")
		}
		var err error
		if p.sockopt.PortRange, err = inet.ParsePortRange(o.portRange); err != nil {
			return fmt.Errorf("--port-range: %v", err)
		}
	}
	p.sockopt.Mark = uint32(o.mark)
	return p.sockopt.Check()
}

// parsePort is parsePort with -n: numbers only.
func (o *connectOptions) parsePort(network, s string) (uint16, error) {
	if o.numeric {
		if _, err := strconv.ParseUint(s, 10, 16); err != nil {
			return 0, fmt.Errorf("-n: port %q is not a number 1-65535", s)
		}
	}
	return parsePort(network, s, false)
}

// parsePorts parses one PORT argument: with -z a port or a range LO-HI.
func (o *connectOptions) parsePorts(network, s string) (inet.PortRange, error) {
	if o.scan && strings.Contains(s, "-") {
		return inet.ParsePortRange(s)
	}
	n, err := o.parsePort(network, s)
	if err != nil {
		return inet.PortRange{}, err
	}
	return inet.PortRange{Lo: n, Hi: n}, nil
}

// dialer builds the net.Dialer for the plan. Happy Eyeballs racing is off:
// two parallel attempts would bind the same source port against each other.
func (p *connectPlan) dialer() *net.Dialer {
	d := &net.Dialer{Timeout: p.timeout, FallbackDelay: -1, Control: p.sockopt.Control}
	if p.bind {
		// The zone too: a link-local source (fe80::2%eth1) binds with
		// its scope id, or bind fails with EINVAL.
		ip, zone := net.IP(p.local.Addr().AsSlice()), p.local.Addr().Zone()
		if p.proto == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: ip, Port: int(p.local.Port()), Zone: zone}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: ip, Port: int(p.local.Port()), Zone: zone}
		}
	}
	return d
}

// dial connects to one port, reporting a failure the way users read it.
func (p *connectPlan) dial(ctx context.Context, port uint16) (net.Conn, *netFailure) {
	addr := net.JoinHostPort(p.host, strconv.Itoa(int(port)))
	var conn net.Conn
	var err error
	if p.opts.broker != "" {
		conn, err = p.brokerDial(ctx, addr)
	} else {
		conn, err = p.dialer().DialContext(ctx, p.network, addr)
	}
	if err != nil {
		var remote netip.AddrPort
		if a, perr := netip.ParseAddr(p.host); perr == nil {
			remote = netip.AddrPortFrom(a, port)
		}
		fail := newNetFailure("connect", p.proto, p.local, remote, err)
		fail.target = addr
		fail.opts = p.sockopt
		return nil, fail
	}
	return conn, nil
}

func fourTuple(c net.Conn) string {
	return formatAddrPort(sockaddr.OfNet(c.LocalAddr())) + " -> " + formatAddrPort(sockaddr.OfNet(c.RemoteAddr()))
}

// run connects and relays stdin/stdout until the session ends.
func (p *connectPlan) run(ctx context.Context, s Streams) error {
	warnPortRangeIgnored(s.Err, "--port-range "+p.opts.portRange, p.sockopt.PortRange)
	conn, fail := p.dial(ctx, p.ports[0].Lo)
	if fail != nil {
		return reportNetFailure(s.Err, fail)
	}
	tuple := fourTuple(conn)
	if p.opts.verbose {
		warnf(s.Err, "connected %s (%s)\n", tuple, p.proto)
	}
	// nc's rule: nothing of stdin is dropped because the peer closed first.
	ropt := relay.Options{NoShutdown: p.opts.noShutdown, Linger: relay.LingerUntilEOF,
		Quit: p.hasQuit, QuitAfterInput: p.quit}
	if p.proto == "udp" {
		ropt.IdleAfterInput = p.timeout
		ropt.BufferSize, ropt.InputChunk = relay.DatagramBufferSize, relay.MaxDatagramInput
	}
	if _, err := relay.Run(ctx, conn, s.In, s.Out, ropt); err != nil {
		return sessionFailed(fmt.Sprintf("connection %s (%s)", tuple, p.proto), err)
	}
	return nil
}

// scan probes each port of the range with a connection and closes it at
// once. A local failure (bind) stops the scan: it says nothing about ports.
func (p *connectPlan) scan(ctx context.Context, s Streams) error {
	if p.proto == "udp" {
		return p.scanUDP(ctx, s)
	}
	anyOpen := false
	for port := range p.scanPorts() {
		conn, fail := p.dial(ctx, port)
		if fail == nil {
			anyOpen = true
			_, err := fmt.Fprintf(s.Out, "%s %d/%s open\n", p.host, port, p.proto)
			if err != nil {
				conn.Close()
				return writeFailed(err)
			}
			if p.opts.verbose {
				warnf(s.Err, "connected %s (%s)\n", fourTuple(conn), p.proto)
			}
			if tc, ok := conn.(*net.TCPConn); ok && p.local.Port() != 0 {
				// From a fixed source port (-p) the probe ends with a
				// reset: a normal close would leave a TIME_WAIT entry
				// holding the port, and the next probe's bind of it
				// would fail with EADDRINUSE.
				_ = tc.SetLinger(0) // a failure leaves the normal close
			}
			conn.Close()
			continue
		}
		var errno syscall.Errno
		var err error
		switch {
		case failedSyscall(fail.err) == "connect" && errors.As(fail.err, &errno) && errno == syscall.ECONNREFUSED:
			_, err = fmt.Fprintf(s.Out, "%s %d/%s closed (%s)\n", p.host, port, p.proto, errno.Error())
		case isTimeout(fail.err):
			_, err = fmt.Fprintf(s.Out, "%s %d/%s filtered (no answer)\n", p.host, port, p.proto)
		default:
			return reportNetFailure(s.Err, fail)
		}
		if err != nil {
			return writeFailed(err)
		}
	}
	if !anyOpen {
		return exitCode(exitFailure)
	}
	return nil
}

// udpScanWait is how long a UDP probe waits for an answer without -w.
const udpScanWait = time.Second

// scanUDP probes each port with an empty datagram from a connected socket
// and reports what came back within -w: a datagram (open), the kernel's
// port-unreachable error (closed), or nothing (open|filtered: UDP has no
// handshake, so silence proves neither, as with nc -zu). The exit code is
// 0 when some port was not refused, as nc's.
//
// Linux rate-limits the ICMP errors that tell a closed port: all of them
// together (icmpBudget, which the probes keep within) and, towards one
// peer other than through loopback, 6 at once and then one per
// net.ipv4.icmp_ratelimit (a second). A closed port whose answer was
// dropped looks silent, so a silent port is probed once more after the
// wait, by when a second's wait has earned the peer a new answer.
func (p *connectPlan) scanUDP(ctx context.Context, s Streams) error {
	wait := p.timeout
	if wait == 0 {
		wait = udpScanWait
	}
	budget := newICMPBudget("/proc")
	anyOpen := false
	for port := range p.scanPorts() {
		if err := budget.take(ctx); err != nil {
			return err
		}
		conn, fail := p.dial(ctx, port)
		if fail != nil {
			return reportNetFailure(s.Err, fail)
		}
		if p.opts.verbose {
			warnf(s.Err, "probing %s (udp)\n", fourTuple(conn))
		}
		state, err := probeUDPTwice(ctx, conn, wait, budget)
		local, remote := sockaddr.OfNet(conn.LocalAddr()), sockaddr.OfNet(conn.RemoteAddr())
		conn.Close()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			return reportNetFailure(s.Err, newNetFailure("probe", p.proto, local, remote, err))
		}
		anyOpen = anyOpen || state != udpClosed
		if _, err := fmt.Fprintf(s.Out, "%s %d/udp %s\n", p.host, port, state); err != nil {
			return writeFailed(err)
		}
	}
	if !anyOpen {
		return exitCode(exitFailure)
	}
	return nil
}

// probeUDPTwice is probeUDP, once more within the budget when the port
// answered nothing.
func probeUDPTwice(ctx context.Context, conn net.Conn, wait time.Duration, budget *icmpBudget) (string, error) {
	state, err := probeUDP(conn, wait)
	if err != nil || state != udpSilent {
		return state, err
	}
	if err := budget.take(ctx); err != nil {
		return "", err
	}
	return probeUDP(conn, wait)
}

// The states of a port that answered nothing, and of one the kernel
// refused.
const (
	udpSilent = "open|filtered (no answer)"
	udpClosed = "closed (connection refused)"
)

// probeUDP sends an empty datagram on conn and waits up to wait for an
// answer. Errors other than the refusal are returned (a host or network
// unreachable, say).
func probeUDP(conn net.Conn, wait time.Duration) (state string, err error) {
	if _, err := conn.Write(nil); err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return udpClosed, nil
		}
		return "", err
	}
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return "", err
	}
	var b [1]byte
	_, err = conn.Read(b[:])
	switch {
	case err == nil:
		return "open", nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return udpClosed, nil
	case isTimeout(err):
		return udpSilent, nil
	}
	return "", err
}

// scanPorts yields each port of the -z arguments in the order given.
func (p *connectPlan) scanPorts() iter.Seq[uint16] {
	return func(yield func(uint16) bool) {
		for _, r := range p.ports {
			for port := int(r.Lo); port <= int(r.Hi); port++ {
				if !yield(uint16(port)) {
					return
				}
			}
		}
	}
}
