package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/broker"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/syncio"
	"github.com/tuple-net/tuple/internal/unixsock"
	"github.com/tuple-net/tuple/sockopt"
)

// brokerOptions are the flags of `tuple broker`.
type brokerOptions struct {
	policy  string
	socket  string
	metrics string
	audit   string
}

func newBrokerCmd(s Streams) *cobra.Command {
	o := &brokerOptions{}
	cmd := &cobra.Command{
		Use:   "broker --policy FILE [--socket PATH]",
		Short: "Hand bound sockets to other users by policy, over a Unix socket (SCM_RIGHTS)",
		Long: `broker is a daemon (root, or CAP_NET_BIND_SERVICE and CAP_SETUID) that creates,
binds and, for listeners, listens sockets on request and passes them to the
asking process over SCM_RIGHTS, as the policy file allows: which uids, gids and
cgroups may get which protocol, address and ports, with which options, in
which reuseport group, and how many at once. Anything the policy does not
allow is denied. The peer's identity comes from the kernel (SO_PEERCRED).

Each request is one JSON line on stderr (or --audit FILE): time, peer
pid/uid/gid, request, decision, reason. SIGHUP re-reads the policy; sockets
already handed out stay with their holders. docs/broker.md has the policy
format and the protocol.`,
		Example: `  tuple broker --policy /etc/tuple/broker.toml
  tuple broker ls
  tuple listen --broker /run/tuple-broker.sock -k 127.0.0.1 80
  tuple broker exec --listen 0.0.0.0:80 -- /usr/sbin/nginx -g 'daemon off;'`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if o.policy == "" {
				return usageError("broker: --policy FILE is required")
			}
			return o.run(s)
		}),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&o.policy, "policy", "", "the policy `FILE` (TOML; see docs/broker.md)")
	f.StringVar(&o.socket, "socket", "", "listen on this socket `PATH` (default: the policy's [socket] path, else "+broker.DefaultSocket+")")
	f.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics of grants, denials and quota use on `ADDR:PORT`")
	f.StringVar(&o.audit, "audit", "", "append the audit trail to `FILE` instead of stderr")
	cmd.AddCommand(newBrokerLsCmd(s), newBrokerCheckCmd(s), newBrokerExecCmd(s), newBrokerActivateCmd(s))
	return cmd
}

func readPolicy(path string) (*broker.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := broker.ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %v", path, err)
	}
	// Names this host does not know, caught by check as by the broker.
	if _, _, err := broker.SocketFileIDs(p.Socket); err != nil && !errors.Is(err, inet.ErrUnsupported) {
		return nil, fmt.Errorf("policy %s: [socket]: %v", path, err)
	}
	return p, nil
}

func (o *brokerOptions) run(s Streams) error {
	if o.metrics != "" {
		if err := checkServeAddr("broker: --metrics", o.metrics); err != nil {
			return err
		}
		if services.ServeBrokerMetrics == nil {
			return forwardToTupled(s, "broker --metrics")
		}
	}
	p, err := readPolicy(o.policy)
	if err != nil {
		return usageError("broker: %v", err)
	}
	path := o.socket
	if path == "" {
		path = p.Socket.Path
	}
	if path == "" {
		path = broker.DefaultSocket
	}
	auditOut := s.Err
	if o.audit != "" {
		f, err := os.OpenFile(o.audit, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("broker: --audit %s: %s", o.audit, describeErr(err))
		}
		defer f.Close()
		auditOut = f
	}
	audit := slog.New(slog.NewJSONHandler(&syncio.Writer{W: auditOut}, nil))
	srv := broker.NewServer(p, broker.Config{Audit: audit})

	ln, err := broker.ListenUnix(path, p.Socket)
	var nse *unixsock.NotSocketError
	if errors.As(err, &nse) {
		// A file or directory where the socket goes: bad input, untouched.
		return usageError("broker: %v", nse)
	}
	if err != nil {
		return fmt.Errorf("broker: socket %s: %s", path, describeErr(err))
	}
	defer func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			warnf(s.Err, "tuple: broker: %v\n", err)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.metrics != "" {
		mln, err := net.Listen("tcp", o.metrics)
		if err != nil {
			ln.Close()
			return fmt.Errorf("broker: --metrics %s: %s", o.metrics, describeErr(err))
		}
		defer services.ServeBrokerMetrics(mln, srv, func(msg string) { warnf(s.Err, "tuple: broker: metrics: %s\n", msg) })()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				np, err := readPolicy(o.policy)
				if err == nil {
					err = broker.ApplySocketFile(path, np.Socket)
				}
				if err != nil {
					srv.ReloadFailed(err)
					continue
				}
				srv.Reload(np)
			}
		}
	}()
	audit.Info("start", "decision", "start", "socket", path, "grants", len(p.Grants), "pid", os.Getpid())
	return srv.Serve(ctx, ln)
}

func newBrokerCheckCmd(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Check a broker policy file and print its grants",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("broker check: want FILE, got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			p, err := readPolicy(args[0])
			if err != nil {
				return usageError("broker check: %v", err)
			}
			for i := range p.Grants {
				g := &p.Grants[i]
				if _, err := fmt.Fprintf(s.Out, "%s uids=%v gids=%v max_sockets=%d\n", g, g.UIDs, g.GIDs, g.MaxSockets); err != nil {
					return writeFailed(err)
				}
			}
			return nil
		}),
	}
}

func newBrokerLsCmd(s Streams) *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the sockets the broker handed out that are still held",
		Long: `ls lists live grants: sockets the broker handed out that some process still
holds (the broker checks with the kernel's socket table). Root sees every
grant, other users their own.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c := &broker.Client{Path: path}
			gs, err := c.List(ctx)
			if err != nil {
				return fmt.Errorf("broker ls: %v", err)
			}
			if asJSON {
				enc := json.NewEncoder(s.Out)
				for _, g := range gs {
					if err := enc.Encode(g); err != nil {
						return writeFailed(err)
					}
				}
				return nil
			}
			if err := writeGrants(s.Out, gs, time.Now()); err != nil {
				return writeFailed(err)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&path, "broker", broker.DefaultSocket, "the broker's socket `PATH`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per grant")
	return cmd
}

func writeGrants(out io.Writer, gs []broker.LiveGrant, now time.Time) error {
	w := bufio.NewWriter(out) // its error is sticky: the table's writes into it show in its Flush
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUID\tPID\tPROTO\tLOCAL\tKIND\tGROUP\tGRANT\tSINCE")
	for _, g := range gs {
		kind := "bound"
		if g.Listen {
			kind = "listen"
		}
		group := g.Group
		if group == "" {
			group = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t#%d\t%s (%s ago)\n", g.ID, g.UID, g.PID, g.Proto, formatAddrPort(g.Local),
			kind, group, g.Grant, g.Since.UTC().Format(time.RFC3339), now.Sub(g.Since).Round(time.Second))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return w.Flush()
}

// brokerExecOptions are the flags of `tuple broker exec`.
type brokerExecOptions struct {
	path      string
	listen    []string
	udp       []string
	names     []string
	reusePort bool
	group     string
}

func newBrokerExecCmd(s Streams) *cobra.Command {
	o := &brokerExecOptions{}
	cmd := &cobra.Command{
		Use:   "exec [flags] -- CMD [ARGS...]",
		Short: "Run CMD with sockets from the broker, passed the systemd way (LISTEN_FDS)",
		Long: `exec asks the broker for each --listen (TCP) and --udp socket and starts CMD with
them as descriptors 3, 4, ... in the systemd socket-activation convention:
LISTEN_FDS (how many), LISTEN_PID (CMD's own pid) and LISTEN_FDNAMES (--name,
default PROTO-PORT). A server that accepts systemd sockets (sd_listen_fds,
nginx, Go's go-systemd activation, ...) then serves a privileged port while
running as an unprivileged user. tuple stays as CMD's parent, passes on
SIGINT, SIGTERM and SIGHUP and exits with CMD's status.`,
		Example: `  tuple broker exec --listen 0.0.0.0:80 -- /usr/sbin/nginx -g 'daemon off;'
  tuple broker exec --listen 127.0.0.1:80 --name web -- ./server`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("broker exec: want -- CMD [ARGS...]")
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), s, args)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.path, "broker", broker.DefaultSocket, "the broker's socket `PATH`")
	f.StringArrayVar(&o.listen, "listen", nil, "a TCP listener on `ADDR:PORT` (repeatable)")
	f.StringArrayVar(&o.udp, "udp", nil, "a bound UDP socket on `ADDR:PORT` (repeatable)")
	f.StringArrayVar(&o.names, "name", nil, "LISTEN_FDNAMES entry for each socket, in order (repeatable)")
	f.BoolVar(&o.reusePort, "reuseport", false, "ask for SO_REUSEPORT")
	f.StringVar(&o.group, "group", "", "ask for members of this reuseport group")
	return cmd
}

// execSocket is one socket exec asks for.
type execSocket struct {
	network, addr, name string
}

func (o *brokerExecOptions) plan() ([]execSocket, error) {
	var socks []execSocket
	for _, a := range o.listen {
		socks = append(socks, execSocket{network: "tcp", addr: a})
	}
	for _, a := range o.udp {
		socks = append(socks, execSocket{network: "udp", addr: a})
	}
	if len(socks) == 0 {
		return nil, fmt.Errorf("want at least one --listen or --udp ADDR:PORT")
	}
	if len(o.names) > 0 && len(o.names) != len(socks) {
		return nil, fmt.Errorf("%d --name for %d sockets: give one per socket or none", len(o.names), len(socks))
	}
	for i := range socks {
		host, port, err := net.SplitHostPort(socks[i].addr)
		if err != nil {
			return nil, fmt.Errorf("%s: want ADDR:PORT", socks[i].addr)
		}
		a, err := parseIP(host)
		if err != nil {
			return nil, err
		}
		n, err := parsePort(socks[i].network, port, false)
		if err != nil {
			return nil, err
		}
		socks[i].addr = net.JoinHostPort(a.String(), strconv.Itoa(int(n)))
		socks[i].name = fmt.Sprintf("%s-%d", socks[i].network, n)
		if len(o.names) > 0 {
			name := o.names[i]
			if name == "" || len(name) > 255 || strings.ContainsAny(name, ":\n\x00") {
				return nil, fmt.Errorf("--name %q: want up to 255 characters without ':'", name)
			}
			socks[i].name = name
		}
	}
	return socks, nil
}

func (o *brokerExecOptions) run(ctx context.Context, s Streams, args []string) error {
	socks, err := o.plan()
	if err != nil {
		return usageError("broker exec: %v", err)
	}
	lc := &broker.ListenConfig{Client: broker.Client{Path: o.path}, Group: o.group}
	if o.reusePort {
		lc.Options = []string{"reuseport"}
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	names := make([]string, len(socks))
	for i, sk := range socks {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		f, err := lc.File(ctx, sk.network, sk.addr)
		cancel()
		if err != nil {
			return fmt.Errorf("broker exec: %s %s: %v", sk.network, sk.addr, err)
		}
		files = append(files, f)
		names[i] = sk.name
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("broker exec: cannot find tuple's own binary to start CMD: %v", err)
	}
	// A helper (this binary, `broker activate`) sets LISTEN_PID to its own
	// pid and execs CMD in place, so CMD sees its own pid there.
	child := exec.Command(self, append([]string{"broker", "activate", "--"}, args...)...)
	child.Stdin, child.Stdout, child.Stderr = s.In, s.Out, s.Err
	child.ExtraFiles = files
	child.Env = broker.ActivationEnv(os.Environ(), 0, names)
	if err := child.Start(); err != nil {
		return fmt.Errorf("broker exec: start %s: %v", args[0], err)
	}
	for _, f := range files {
		f.Close()
	}
	files = nil
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	for {
		select {
		case sig := <-sigs:
			// Passed on; a child that has exited already is reported
			// by its Wait below.
			_ = child.Process.Signal(sig)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code := ee.ExitCode()
				if code < 0 {
					code = 128 + signalNumber(ee)
				}
				return exitCode(code)
			}
			if err != nil {
				return fmt.Errorf("broker exec: %s: %v", args[0], err)
			}
			return nil
		}
	}
}

// newBrokerActivateCmd is the hidden second half of exec: it runs as the
// process that becomes CMD, so LISTEN_PID can name it.
func newBrokerActivateCmd(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:    "activate -- CMD [ARGS...]",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
			if err != nil || n < 1 {
				return usageError("broker activate: run by 'tuple broker exec', which passes the sockets")
			}
			path, err := exec.LookPath(args[0])
			if err != nil {
				return usageError("broker exec: %v", err)
			}
			names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
			env := broker.ActivationEnv(os.Environ(), os.Getpid(), names[:min(n, len(names))])
			return fmt.Errorf("broker exec: exec %s: %v", path, execve(path, args, env))
		}),
	}
}

// The --broker flag of connect and listen: the socket comes from the broker
// instead of socket()+bind(); everything after is unchanged.

// checkBroker rejects connect flags the broker cannot honour.
func (p *connectPlan) checkBroker() error {
	switch {
	case p.opts.scan:
		return fmt.Errorf("--broker hands out one socket; -z would need one per port")
	case p.opts.bindNoPort || !p.sockopt.PortRange.IsZero():
		return fmt.Errorf("--broker binds the source itself: --bind-no-port and --port-range do not apply")
	case p.sockopt.Mark != 0:
		return fmt.Errorf("--broker hands out a socket the broker made: --mark does not apply")
	}
	return nil
}

// brokerOptionNames spells the reuse options as the broker's protocol does.
func brokerOptionNames(o sockopt.Options) []string {
	var out []string
	if o.ReusePort {
		out = append(out, "reuseport")
	}
	if o.ReuseAddr {
		out = append(out, "reuseaddr")
	}
	return out
}

// brokerDial connects to addr from a source socket the broker hands out:
// the -s/-p address, or with neither any port the policy allows.
func (p *connectPlan) brokerDial(ctx context.Context, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	dest, err := netip.ParseAddr(host)
	if err != nil {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return nil, &net.OpError{Op: "dial", Net: p.network, Err: err}
		}
		dest = ips[0].Unmap()
		addr = net.JoinHostPort(dest.String(), port)
	}
	local := p.local
	if !local.IsValid() {
		local = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		if dest.Is6() {
			local = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
	}
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	d := &broker.Dialer{Client: broker.Client{Path: p.opts.broker}, Local: local.String(), Options: brokerOptionNames(p.sockopt)}
	return d.DialContext(ctx, p.network, addr)
}

// brokerConfig asks for --reuseport only: the broker sets SO_REUSEADDR on
// every TCP listener itself, as Go does, so listen's default is no request.
func (p *listenPlan) brokerConfig() *broker.ListenConfig {
	return &broker.ListenConfig{Client: broker.Client{Path: p.opts.broker},
		Options: brokerOptionNames(sockopt.Options{ReusePort: p.sockopt.ReusePort})}
}

// listenTCP listens on the plan's address, or gets the listener from the
// broker with --broker.
func (p *listenPlan) listenTCP(ctx context.Context) (net.Listener, error) {
	if p.opts.broker == "" {
		lc := net.ListenConfig{Control: p.sockopt.Control}
		return lc.Listen(ctx, p.network, p.addr)
	}
	return p.brokerConfig().Listen(ctx, p.network, p.local.String())
}

// listenUDP is listenTCP for a bound UDP socket.
func (p *listenPlan) listenUDP(ctx context.Context) (net.PacketConn, error) {
	if p.opts.broker == "" {
		lc := net.ListenConfig{Control: p.sockopt.Control}
		return lc.ListenPacket(ctx, p.network, p.addr)
	}
	return p.brokerConfig().ListenPacket(ctx, p.network, p.local.String())
}
