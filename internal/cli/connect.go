package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

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
	reusePort  bool
	reuseAddr  bool
	bindNoPort bool
	portRange  string
	broker     string
}

// connectPlan is a connect invocation after parsing: everything checked,
// nothing opened yet.
type connectPlan struct {
	proto   string // "tcp" or "udp"
	network string // proto with the -4/-6 suffix
	host    string
	ports   sockopt.PortRange // one port, or a range with -z
	local   netip.AddrPort    // what we bind: zero when not binding
	bind    bool
	timeout time.Duration
	sockopt sockopt.Options
	opts    *connectOptions
}

func newConnectCmd(s Streams) *cobra.Command {
	o := &connectOptions{}
	cmd := &cobra.Command{
		Use:   "connect [flags] HOST PORT",
		Short: "Connect to HOST PORT and relay stdin/stdout (a netcat client)",
		Long: `Connect to HOST PORT and copy stdin to the connection and the connection to
stdout, binary-safe. When stdin ends, the socket's write side is shut down
(the peer sees EOF) and tuple keeps reading until the peer closes its side.
The session ends when both sides are done, or when the peer closed its side
and stdin then stays silent for a second (what keeps coming is still sent).
--no-shutdown keeps the write side open.

-s and -p choose the source address and port. A bind that fails is reported and
never retried on another port. --reuseport or --reuseaddr let several sockets
share a source port towards different destinations; every socket sharing the
port must set the same option.

With -z, PORT may be a range (20-30): each port is probed with a connection and
reported open or closed; the exit code is 0 when any port is open.`,
		Example: `  tuple connect -v example.test 80
  tuple connect -s 10.0.0.1 -p 12345 --reuseport 10.0.0.2 80
  tuple connect -z -w 1 10.0.0.2 20-30`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("connect: want HOST PORT, got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			plan, err := o.plan(args[0], args[1])
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
	f.StringVarP(&o.timeout, "wait", "w", "", "connect timeout: seconds or a duration (500ms); with -u also the idle time after stdin ends")
	f.BoolVar(&o.noShutdown, "no-shutdown", false, "keep the socket's write side open when stdin ends")
	f.BoolVar(&o.reusePort, "reuseport", false, "set SO_REUSEPORT: share the source port with other sockets of the same uid that set it")
	f.BoolVar(&o.reuseAddr, "reuseaddr", false, "set SO_REUSEADDR: share the source port with other non-listening sockets that set it")
	f.BoolVar(&o.bindNoPort, "bind-no-port", false, "with -s, choose the source port at connect time (IP_BIND_ADDRESS_NO_PORT), sharing it across destinations")
	f.StringVar(&o.portRange, "port-range", "", "choose the source port from `LO-HI` (IP_LOCAL_PORT_RANGE)")
	f.StringVar(&o.broker, "broker", "", "get the source socket from the tuple broker at `PATH` (see tuple broker)")
	return cmd
}

// plan checks the flags and arguments: every error it returns is bad input.
func (o *connectOptions) plan(host, port string) (*connectPlan, error) {
	p := &connectPlan{proto: "tcp", host: host, opts: o}
	if o.udp {
		p.proto = "udp"
	}
	fam, err := pickFamily(o.v4, o.v6)
	if err != nil {
		return nil, err
	}
	p.network = fam.network(p.proto)
	if host == "" {
		return nil, fmt.Errorf("empty HOST")
	}
	var dest netip.Addr
	if a, err := parseIP(host); err == nil {
		if ok, flag := fam.allows(a); !ok {
			return nil, fmt.Errorf("HOST %s is not allowed with %s", host, flag)
		}
		dest = a
		p.host = a.String()
	}
	if o.scan {
		if o.udp {
			return nil, fmt.Errorf("-z works with TCP only: UDP has no handshake to probe")
		}
		if p.ports, err = sockopt.ParsePortRange(port); err != nil {
			return nil, err
		}
	} else {
		n, err := parsePort(p.proto, port, false)
		if err != nil {
			return nil, err
		}
		p.ports = sockopt.PortRange{Lo: n, Hi: n}
	}
	if p.timeout, err = parseTimeout(o.timeout); err != nil {
		return nil, err
	}

	var srcPort uint16
	if o.sourcePort != "" {
		if srcPort, err = parsePort(p.proto, o.sourcePort, false); err != nil {
			return nil, fmt.Errorf("-p: %v", err)
		}
	}
	src := netip.Addr{}
	if o.sourceAddr != "" {
		if src, err = parseIP(o.sourceAddr); err != nil {
			return nil, fmt.Errorf("-s: %v", err)
		}
		if ok, flag := fam.allows(src); !ok {
			return nil, fmt.Errorf("-s %s is not allowed with %s", o.sourceAddr, flag)
		}
		if dest.IsValid() && dest.Is4() != src.Is4() {
			return nil, fmt.Errorf("-s %s and HOST %s are of different address families", src, dest)
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

	p.sockopt = sockopt.Options{ReuseAddr: o.reuseAddr, ReusePort: o.reusePort, BindAddressNoPort: o.bindNoPort}
	if o.bindNoPort {
		switch {
		case srcPort != 0:
			return nil, fmt.Errorf("--bind-no-port defers choosing the source port; it cannot be combined with -p")
		case o.sourceAddr == "":
			return nil, fmt.Errorf("--bind-no-port needs -s: without a source address there is no bind to defer")
		case o.udp:
			return nil, fmt.Errorf("--bind-no-port works with TCP only")
		}
	}
	if o.portRange != "" {
		if srcPort != 0 {
			return nil, fmt.Errorf("--port-range picks the source port; it cannot be combined with -p")
		}
		if p.sockopt.PortRange, err = sockopt.ParsePortRange(o.portRange); err != nil {
			return nil, fmt.Errorf("--port-range: %v", err)
		}
	}
	if err := p.sockopt.Check(); err != nil {
		return nil, err
	}
	if o.broker != "" {
		if err := p.checkBroker(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// dialer builds the net.Dialer for the plan. Happy Eyeballs racing is off:
// two parallel attempts would bind the same source port against each other.
func (p *connectPlan) dialer() *net.Dialer {
	d := &net.Dialer{Timeout: p.timeout, FallbackDelay: -1, Control: p.sockopt.Control}
	if p.bind {
		ip := net.IP(p.local.Addr().AsSlice())
		if p.proto == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: ip, Port: int(p.local.Port())}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: ip, Port: int(p.local.Port())}
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
	return formatAddrPort(addrPortOf(c.LocalAddr())) + " -> " + formatAddrPort(addrPortOf(c.RemoteAddr()))
}

// run connects and relays stdin/stdout until the session ends.
func (p *connectPlan) run(ctx context.Context, s Streams) error {
	conn, fail := p.dial(ctx, p.ports.Lo)
	if fail != nil {
		return reportNetFailure(s.Err, fail)
	}
	tuple := fourTuple(conn)
	if p.opts.verbose {
		fmt.Fprintf(s.Err, "connected %s (%s)\n", tuple, p.proto)
	}
	ropt := relay.Options{NoShutdown: p.opts.noShutdown}
	if p.proto == "udp" {
		ropt.IdleAfterInput = p.timeout
	}
	if _, err := relay.Run(ctx, conn, s.In, s.Out, ropt); err != nil {
		return fmt.Errorf("connection %s (%s): %s", tuple, p.proto, describeErr(err))
	}
	return nil
}

// scan probes each port of the range with a connection and closes it at
// once. A local failure (bind) stops the scan: it says nothing about ports.
func (p *connectPlan) scan(ctx context.Context, s Streams) error {
	anyOpen := false
	for port := int(p.ports.Lo); port <= int(p.ports.Hi); port++ {
		conn, fail := p.dial(ctx, uint16(port))
		if fail == nil {
			anyOpen = true
			fmt.Fprintf(s.Out, "%s %d/%s open\n", p.host, port, p.proto)
			if p.opts.verbose {
				fmt.Fprintf(s.Err, "connected %s (%s)\n", fourTuple(conn), p.proto)
			}
			conn.Close()
			continue
		}
		var errno syscall.Errno
		switch {
		case failedSyscall(fail.err) == "connect" && errors.As(fail.err, &errno) && errno == syscall.ECONNREFUSED:
			fmt.Fprintf(s.Out, "%s %d/%s closed (%s)\n", p.host, port, p.proto, errno.Error())
		case isTimeout(fail.err):
			fmt.Fprintf(s.Out, "%s %d/%s filtered (no answer)\n", p.host, port, p.proto)
		default:
			return reportNetFailure(s.Err, fail)
		}
	}
	if !anyOpen {
		return exitCode(exitFailure)
	}
	return nil
}
